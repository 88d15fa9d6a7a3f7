"""Hostile bundles and outputs (issue #13): each case here was accepted, run or destroyed data before.

A bundle is data from someone else (docs/security.md): paths stay inside it, every file is listed
and verified, native code needs trust, bundle numbers and properties are bounded, and outputs
never replace a folder that is not edgekit's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgekit.artifact import atomic_dir, sha256_file
from edgekit.errors import BadInputError
from edgekit.runtime import load
from tests._bench_helpers import FakeClock, FakeRunner, compile_bundle, edit_manifest, fake_loader, tiny_model


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("ort"))


@pytest.fixture
def bundle(ort_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of a real onnxruntime bundle, to attack."""
    return Path(shutil.copytree(ort_bundle, tmp_path / "bundle"))


def manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def write_manifest(bundle: Path, data: object) -> None:
    (bundle / "manifest.json").write_text(json.dumps(data))


def evil_model(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    return tiny_model(outside / "evil.onnx", features=16, outputs=8)


# ------------------------------------------------------------------------------- path traversal


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_model_file_outside_the_bundle_is_refused(bundle: Path, tmp_path: Path, how: str) -> None:
    evil = evil_model(tmp_path)
    data = manifest(bundle)
    data["info"]["model_file"] = "../outside/evil.onnx" if how == "relative" else str(evil)
    write_manifest(bundle, data)
    with pytest.raises(BadInputError, match="outside the bundle"):
        load(bundle)


@pytest.mark.parametrize("key", ["source_model", "config_file"])
def test_other_named_paths_outside_the_bundle_are_refused(bundle: Path, tmp_path: Path, key: str) -> None:
    evil_model(tmp_path)
    data = manifest(bundle)
    data["info"][key] = "../outside/evil.onnx"
    write_manifest(bundle, data)
    with pytest.raises(BadInputError, match="outside the bundle"):
        load(bundle)


def test_the_verifier_is_no_hash_oracle_on_host_files(bundle: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    data = manifest(bundle)
    data["files"]["../secret.txt"] = sha256_file(secret)  # a right guess used to load fine
    write_manifest(bundle, data)
    with pytest.raises(BadInputError, match="outside the bundle"):
        load(bundle)
    data["files"] = {"/etc/passwd": "0" * 64, **manifest(bundle)["files"]}
    write_manifest(bundle, data)
    with pytest.raises(BadInputError, match="outside the bundle"):
        load(bundle)


# ------------------------------------------------------------------------------- integrity bypasses


def test_empty_file_list_with_a_replaced_model_is_refused(bundle: Path, tmp_path: Path) -> None:
    shutil.copyfile(evil_model(tmp_path), bundle / "source.onnx")
    data = manifest(bundle)
    data["files"] = {}
    write_manifest(bundle, data)
    with pytest.raises(BadInputError, match="sha256 list"):
        load(bundle)


def test_a_deleted_manifest_entry_is_refused(bundle: Path, tmp_path: Path) -> None:
    data = manifest(bundle)
    victim = next(rel for rel in data["files"] if rel != "source.onnx")
    del data["files"][victim]
    write_manifest(bundle, data)
    (bundle / victim).write_bytes((bundle / victim).read_bytes() + b"\0")
    with pytest.raises(BadInputError, match=f"{victim}'? is not in the manifest"):
        load(bundle)


def test_an_unlisted_extra_file_is_refused(bundle: Path) -> None:
    (bundle / "extra.bin").write_bytes(b"payload")
    with pytest.raises(BadInputError, match=r"extra\.bin is not in the manifest"):
        load(bundle)


def test_a_member_symlinked_outside_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(bundle / "source.onnx", outside)  # same bytes: the sha256 still matches
    (bundle / "source.onnx").unlink()
    (bundle / "source.onnx").symlink_to(outside)
    with pytest.raises(BadInputError, match="outside the bundle"):
        load(bundle)


def test_manifest_symlinked_outside_is_refused(bundle: Path, tmp_path: Path) -> None:
    outside = tmp_path / "manifest.json"
    shutil.move(bundle / "manifest.json", outside)
    (bundle / "manifest.json").symlink_to(outside)
    with pytest.raises(BadInputError, match="outside the bundle"):
        load(bundle)


# ------------------------------------------------------------------------------- native code


HOSTILE_SO = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void edgekit_test_payload(void) {
    const char *marker = getenv("EDGEKIT_TEST_MARKER");
    FILE *f = marker ? fopen(marker, "w") : NULL;
    if (f) { fputs("constructor ran", f); fclose(f); }
}
"""


def test_tvm_library_from_an_untrusted_bundle_is_not_loaded(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("tvm")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    from edgekit.artifact import Manifest, hash_tree
    from edgekit.runtime.__main__ import main

    bundle = tmp_path / "tvm-bundle"
    bundle.mkdir()
    (tmp_path / "payload.c").write_text(HOSTILE_SO)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(bundle / "model.so"), str(tmp_path / "payload.c")], check=True)
    tiny_model(bundle / "source.onnx")
    (bundle / "tvm_target.json").write_text(json.dumps({"target": {"kind": "llvm"}, "kind": "cpu"}))
    data = Manifest(kind="bundle", files=hash_tree(bundle), info={"adapter": "tvm", "target": "cpu"})
    (bundle / "manifest.json").write_text(data.dumps())
    marker = tmp_path / "marker"
    monkeypatch.setenv("EDGEKIT_TEST_MARKER", str(marker))
    with pytest.raises(BadInputError, match="native code") as info:
        load(bundle)
    assert "--trust-bundle" in info.value.one_line()
    assert main(["bench", str(bundle), "--warmup", "0", "--iters", "1"]) == 2
    assert not marker.exists(), "the bundle's library constructor ran"


def test_cli_verbs_that_load_bundles_offer_trust_bundle() -> None:
    from edgekit.runtime.__main__ import _parser

    for verb in ("bench", "gate"):
        assert _parser().parse_args([verb, "b", "--trust-bundle"]).trust_bundle is True


# ------------------------------------------------------------------------------- OpenVINO properties


def test_bundle_openvino_properties_cannot_write_outside(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    bundle = compile_bundle(tmp_path / "ov", backend="openvino")
    cache = tmp_path / "written-by-bench"
    config_path = bundle / manifest(bundle)["info"]["config_file"]
    config = json.loads(config_path.read_text())
    config["properties"]["CACHE_DIR"] = str(cache)
    config_path.write_text(json.dumps(config))
    data = manifest(bundle)
    data["files"][config_path.name] = sha256_file(config_path)  # whoever wrote the bundle re-lists it
    write_manifest(bundle, data)
    with pytest.raises(BadInputError, match="CACHE_DIR"):
        load(bundle)
    assert not cache.exists()


# ------------------------------------------------------------------------------- untrusted numbers


def test_gate_refuses_a_huge_thread_count_from_the_manifest(bundle: Path) -> None:
    from edgekit.checks.gate import gate

    edit_manifest(bundle, threads=1_000_000, budgets={"latency": ["p90<=10s"]})
    clock = FakeClock()
    with pytest.raises(BadInputError, match="threads"):
        gate(bundle, iters=5, warmup=0, timer=clock, loader=fake_loader(FakeRunner(clock, [1.0])))


def test_bench_refuses_a_huge_thread_count(bundle: Path) -> None:
    from edgekit.checks.latency import bench

    clock = FakeClock()
    with pytest.raises(BadInputError, match="threads"):
        bench(bundle, threads=99_999_999, iters=5, warmup=0, timer=clock,
              loader=fake_loader(FakeRunner(clock, [1.0])))


# ------------------------------------------------------------------------------- malformed manifests


def _malformed(data: dict, case: str) -> object:
    if case == "list":
        return [data]
    if case == "null":
        return None
    if case == "no-kind":
        return {k: v for k, v in data.items() if k != "kind"}
    if case == "files-list":
        return {**data, "files": list(data["files"])}
    spec = dict(data["inputs"][0])
    if case == "no-shape":
        spec.pop("shape")
    elif case == "dtype":
        spec["dtype"] = "float99"
    else:  # huge
        spec["shape"] = [100000, 100000, 100000]
    return {**data, "inputs": [spec]}


@pytest.mark.parametrize("case", ["list", "null", "no-kind", "files-list", "no-shape", "dtype", "huge"])
def test_malformed_manifest_is_one_line_exit_2(bundle: Path, case: str, capsys) -> None:
    from edgekit.runtime.__main__ import main

    write_manifest(bundle, _malformed(manifest(bundle), case))
    for verb in ("bench", "gate"):
        assert main([verb, str(bundle), "--warmup", "0", "--iters", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "manifest" in err


# ------------------------------------------------------------------------------- outputs never destroy data


def test_compile_refuses_a_folder_of_user_files(tmp_path: Path) -> None:
    from edgekit.stages.compile import compile as compile_model

    model = tiny_model(tmp_path / "m.onnx")
    mine = tmp_path / "mydir"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(BadInputError, match="not an edgekit output") as info:
        compile_model(model, output=mine, backend="onnxruntime")
    assert str(mine) in info.value.one_line()
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "mydir"]


def test_run_output_target_folder_of_user_files_is_refused(tmp_path: Path) -> None:
    """`edgekit run -o OUT` writes OUT/<target>/ through atomic_dir: a user's OUT/cpu survives."""
    target_dir = tmp_path / "OUT" / "cpu"
    target_dir.mkdir(parents=True)
    (target_dir / "notes.txt").write_text("keep")
    with pytest.raises(BadInputError, match="not an edgekit output"), atomic_dir(target_dir) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert (target_dir / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("name", [".", ""])
def test_output_to_the_working_folder_is_refused(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(BadInputError, match="not a name edgekit can write"), atomic_dir(Path(name)) as tmp:
        (tmp / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_symlinked_output_is_replaced_without_a_stray_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    with atomic_dir(real) as tmp:
        (tmp / "manifest.json").write_text(json.dumps({"schema": "edgekit.manifest"}))
        (tmp / "v").write_text("1")
    link = tmp_path / "link"
    link.symlink_to(real)
    with atomic_dir(link) as tmp:
        (tmp / "manifest.json").write_text(json.dumps({"schema": "edgekit.manifest"}))
        (tmp / "v").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
    assert not link.is_symlink() and (link / "v").read_text() == "2"
    assert (real / "v").read_text() == "1"


def _killed_midway(script: str, *args: str) -> None:
    """Run `script` until it prints `ready`, then SIGKILL it (no `finally`, no cleanup)."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_leftovers_of_a_killed_atomic_write_are_removed_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _killed_midway("""
        import sys, time
        from pathlib import Path
        from edgekit.artifact import atomic_dir
        with atomic_dir(Path(sys.argv[1])) as tmp:
            (tmp / "half").write_text("x")
            print("ready", flush=True)
            time.sleep(120)
    """, str(out))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")], "the child left nothing behind"
    with atomic_dir(out) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_a_killed_compile_are_removed_by_the_next(tmp_path: Path) -> None:
    from edgekit.stages.compile import compile as compile_model

    model = tiny_model(tmp_path / "m.onnx")
    out = tmp_path / "out"
    _killed_midway("""
        import sys, time
        from edgekit.stages.compile import compile

        class Sleepy:  # a calibration reader that hangs: the compile is killed inside its work folder
            def __iter__(self):
                print("ready", flush=True)
                time.sleep(120)
                yield {}

            def __len__(self):
                return 1

        compile(sys.argv[1], output=sys.argv[2], backend="onnxruntime", precision="int8", calib=Sleepy())
    """, str(model), str(out))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")], "the child left nothing behind"
    compile_model(model, output=out, backend="onnxruntime")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "out"]


def test_leftovers_of_a_killed_cache_build_are_removed_by_the_next(tmp_path: Path) -> None:
    from edgekit.cache import StageCache

    key = "ab" * 32
    _killed_midway("""
        import sys, time
        from edgekit.cache import StageCache

        def build(tmp):
            (tmp / "half").write_text("x")
            print("ready", flush=True)
            time.sleep(120)

        StageCache(sys.argv[1]).get_or_build("stage", sys.argv[2], build)
    """, str(tmp_path / "cache"), key)
    folder = tmp_path / "cache" / "v1" / "stage" / key[:2]
    assert [p for p in folder.iterdir() if p.name.startswith(".")], "the child left nothing behind"

    def build(tmp: Path) -> None:
        (tmp / "f").write_text("ok")

    StageCache(tmp_path / "cache").get_or_build("stage", key, build)
    assert sorted(p.name for p in folder.iterdir()) == [key]
    assert sorted(os.listdir(folder / key)) == ["entry.json", "f"]
