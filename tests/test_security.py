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
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from typer.testing import CliRunner

from edgekit.adapters.base import CompiledModel, CompileOptions
from edgekit.adapters.null import NullAdapter
from edgekit.artifact import atomic_dir, sha256_file
from edgekit.cli import app
from edgekit.errors import BadInputError, EdgekitError
from edgekit.runtime import load
from edgekit.targets import TargetProfile
from tests._bench_helpers import FakeClock, FakeRunner, compile_bundle, edit_manifest, fake_loader, tiny_model

cli = CliRunner()


def cli_error(code: int | tuple[int, ...], *args: object) -> str:
    """Run `edgekit ARGS`; assert exit `code`, no traceback, and return the last stderr line (the one-line error)."""
    result = cli.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (code if isinstance(code, tuple) else (code,)), result.output
    last = (result.stderr.strip().splitlines() or [""])[-1]
    assert "Traceback" not in result.output and last.startswith(("error", "interrupted")), result.output
    return last


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
    if case == "info-list":
        return {**data, "info": [data["info"]]}
    spec = dict(data["inputs"][0])
    if case == "no-shape":
        spec.pop("shape")
    elif case == "dtype":
        spec["dtype"] = "float99"
    elif case == "shape-not-the-model's":  # x[batch,16] in the model: ORT refused 17 deep inside bench
        spec["shape"] = [1, 17]
    else:  # huge
        spec["shape"] = [100000, 100000, 100000]
    return {**data, "inputs": [spec]}


MALFORMED = ["list", "null", "no-kind", "files-list", "info-list", "no-shape", "dtype", "shape-not-the-model's", "huge"]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_manifest_is_one_line_exit_2(bundle: Path, case: str, capsys) -> None:
    """Every verb that reads a bundle: `edgekit bench|gate`, `python -m edgekit.runtime bench|gate`, `edgekit.load`."""
    from edgekit.runtime.__main__ import main

    write_manifest(bundle, _malformed(manifest(bundle), case))
    for verb in ("bench", "gate"):
        assert main([verb, str(bundle), "--warmup", "0", "--iters", "1"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "manifest" in err
        assert "manifest" in cli_error(2, verb, bundle, "--warmup", "0", "--iters", "1")
    with pytest.raises(BadInputError, match="manifest"):
        load(bundle)


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


# ------------------------------------------------------------------------------- crashes instead of one-line errors


def _model(tmp_path: Path, name: str, inputs: list, outputs: list, nodes: list, *, opset: int = 17,
           domains: tuple[str, ...] = ()) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    *(helper.make_opsetid(d, 1) for d in domains)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / f"{name}.onnx"))
    return tmp_path / f"{name}.onnx"


def _vi(name: str, dims: list, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def _relu(tmp_path: Path, dims: list, name: str = "relu") -> Path:
    return _model(tmp_path, name, [_vi("x", dims)], [_vi("y", dims)], [helper.make_node("Relu", ["x"], ["y"])])


@pytest.mark.parametrize("case", ["env-list", "latency-string", "samples-mixed", "batch-string", "p50-nan"])
def test_baseline_with_the_right_schema_but_wrong_structure_is_one_line_exit_2(tmp_path: Path, case: str) -> None:
    from edgekit.checks.budgets import load_result_json

    good = {"schema": "edgekit.bench/1", "provenance": "measured", "config": {"batch": 1}, "environment": {},
            "latency_ms": {"p50": 1.0}, "samples_ms": [1.0, 1.1]}
    bad = {"env-list": {"environment": [1]}, "latency-string": {"latency_ms": {"p50": "fast"}},
           "samples-mixed": {"samples_ms": [1.0, "a"]}, "batch-string": {"config": {"batch": "x"}},
           "p50-nan": {"latency_ms": {"p50": float("nan")}}}[case]
    (tmp_path / "old.json").write_text(json.dumps({**good, **bad}))
    with pytest.raises(BadInputError, match="malformed bench result"):
        load_result_json(tmp_path / "old.json")


def test_baseline_that_is_a_folder_is_one_line_exit_2(ort_bundle: Path, tmp_path: Path) -> None:
    err = cli_error(2, "bench", ort_bundle, "--iters", "3", "--warmup", "0", "--baseline", tmp_path)
    assert "is a folder" in err and str(tmp_path) in err


@pytest.mark.parametrize("case", ["list", "string"])
def test_malformed_stored_budgets_in_gate_are_one_line_exit_2(bundle: Path, case: str) -> None:
    edit_manifest(bundle, budgets={"latency": "p90<=5ms"} if case == "string" else {"accuracy": [1]})
    assert "info.budgets" in cli_error(2, "gate", bundle, "--iters", "3", "--warmup", "0")


def test_huge_dims_declared_by_a_model_are_refused_before_allocating(tmp_path: Path) -> None:
    model = _relu(tmp_path, [1, 3, 100000, 100000])  # 112 GiB of float32 if random inputs were made for it
    err = cli_error(2, "compile", model, "-o", tmp_path / "out", "-b", "onnxruntime")
    assert "GiB" in err
    assert "GiB" in cli_error(2, "quantize", model, "-o", tmp_path / "q.onnx", "--calib", "synthetic")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.onnx"]


@pytest.mark.parametrize("shape", ["x:100000,100000000", "x:99999999999999999999,16"])
def test_huge_dims_in_input_shape_are_refused(tmp_path: Path, shape: str) -> None:
    model = tiny_model(tmp_path / "m.onnx")
    assert "--input-shape" in cli_error(2, "compile", model, "-o", tmp_path / "out", "-s", shape)
    assert "--input-shape" in cli_error(2, "bench", model, "-s", shape, "--iters", "1", "--warmup", "0")


def _image_model(tmp_path: Path) -> Path:
    return _relu(tmp_path, [1, 3, "h", "w"], name="img")


def test_image_size_too_large_is_refused_before_allocating(tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    err = cli_error(2, "quantize", _image_model(tmp_path), "-o", tmp_path / "q.onnx", "--calib", images,
                    "--size", "100000,100000")
    assert "--size" in err and "GiB" in err


@pytest.mark.parametrize("pixels", [5000, 2500], ids=["over-twice-the-limit", "over-the-limit"])
def test_png_decompression_bomb_in_an_image_folder_is_one_line_exit_2(tmp_path: Path, monkeypatch, pixels: int
                                                                       ) -> None:
    """Pillow raises DecompressionBombError past 2 x MAX_IMAGE_PIXELS and only warns between 1x and 2x."""
    from PIL import Image

    from edgekit.specs import Preprocess, TensorSpec
    from edgekit.stages.calibration import open_source

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # a small limit: the test needs no large image
    images = tmp_path / "images"
    images.mkdir()
    side = int(pixels ** 0.5)
    Image.new("L", (side, side)).save(images / "bomb.png")
    with pytest.raises(BadInputError, match="decompression bomb") as info:
        open_source(images, [TensorSpec("x", (1, 3, 8, 8))], preprocess=Preprocess(size=(8, 8))).validate()
    assert info.value.path == str(images / "bomb.png")


ORT_REFUSES = {
    "unknown-domain-op": lambda t: _model(t, "domain", [_vi("x", [1, 4])], [_vi("y", [1, 4])],
                                          [helper.make_node("Frob", ["x"], ["y"], domain="com.evil")],
                                          domains=("com.evil",)),
    "opset-99": lambda t: _model(t, "opset99", [_vi("x", [1, 4])], [_vi("y", [1, 4])],
                                 [helper.make_node("Relu", ["x"], ["y"])], opset=99),
    "zero-size-dim": lambda t: _relu(t, [1, 0], name="zero"),
    "no-outputs": lambda t: _model(t, "none", [_vi("x", [1, 4])], [], [helper.make_node("Relu", ["x"], ["y"])]),
    "string-io": lambda t: _model(t, "text", [_vi("x", [1, 4], TensorProto.STRING)],
                                  [_vi("y", [1, 4], TensorProto.STRING)], [helper.make_node("Identity", ["x"], ["y"])]),
}


@pytest.mark.parametrize("case", sorted(ORT_REFUSES))
def test_ort_errors_escaping_quantize_are_one_line_exit_2(tmp_path: Path, case: str) -> None:
    model = ORT_REFUSES[case](tmp_path)
    err = cli_error(2, "quantize", model, "-o", tmp_path / "q.onnx", "--calib", "synthetic", "--no-speed",
                    "--no-sensitivity")
    assert "onnxruntime cannot run the model" in err and str(model) in err
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("simplify", ["true", "false"])
@pytest.mark.parametrize("case", sorted(ORT_REFUSES))
def test_ort_errors_in_the_recipe_reference_stage_are_one_line_exit_2(tmp_path: Path, case: str, simplify: str
                                                                       ) -> None:
    model = ORT_REFUSES[case](tmp_path)
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nsimplify = {simplify}\n[model]\nonnx = "{model}"\n[data]\n'
                      'calibration = { source = "synthetic", samples = 4 }\n'
                      '[[targets]]\nname = "cpu"\nbackend = "onnxruntime"\nprecision = "int8"\n')
    err = cli_error(2, "run", recipe, "-o", tmp_path / "out", "--no-cache")
    assert "onnxruntime cannot run" in err or (case, simplify) == ("zero-size-dim", "false")  # then: "has no size"
    assert not (tmp_path / "out").exists()


def test_seed_minus_one_is_one_line_exit_2(tmp_path: Path) -> None:
    from edgekit.onnxio import random_inputs
    from edgekit.specs import TensorSpec

    model = tiny_model(tmp_path / "m.onnx")
    assert "--seed" in cli_error(2, "compile", model, "-o", tmp_path / "out", "--seed", "-1")
    assert "--seed" in cli_error(2, "compare", model, "--seed", "-1")
    with pytest.raises(BadInputError, match="seed"):
        random_inputs([TensorSpec("x", (1, 16))], seed=-1)


def test_an_npz_holding_pickled_objects_is_refused_unread(tmp_path: Path) -> None:
    from edgekit.pipeline.data import read_samples

    model = tiny_model(tmp_path / "m.onnx")
    folder = tmp_path / "samples"
    folder.mkdir()
    np.savez(folder / "0.npz", x=np.array([{"payload": 1}], dtype=object))
    assert "0.npz" in cli_error(2, "compare", model, "--inputs", folder / "0.npz")
    assert "0.npz" in cli_error(2, "quantize", model, "-o", tmp_path / "q.onnx", "--calib", folder)
    with pytest.raises(BadInputError, match="cannot read array file"):
        read_samples(folder)


def test_labels_shorter_than_samples_are_refused(tmp_path: Path) -> None:
    from edgekit.pipeline.data import load_data
    from edgekit.recipe import load_recipe
    from edgekit.specs import TensorSpec

    np.savez(tmp_path / "eval.npz", x=np.zeros((6, 16), np.float32), labels=np.array([1, 2]))
    model = tiny_model(tmp_path / "m.onnx")
    (tmp_path / "r.toml").write_text(f'name = "r"\n[model]\nonnx = "{model}"\n[data]\neval = "eval.npz"\n'
                                     '[[targets]]\nname = "cpu"\nbackend = "onnxruntime"\n')
    recipe = load_recipe(tmp_path / "r.toml")
    with pytest.raises(BadInputError, match="labels"):
        load_data(recipe.eval, [TensorSpec("x", ("batch", 16))], default_samples=100, allow_code=False,
                  recipe=recipe)


def test_string_labels_are_one_line_exit_2(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m.onnx", outputs=4)
    calib, evals = tmp_path / "calib", tmp_path / "eval"
    for folder in (calib, evals):
        folder.mkdir()
        for i in range(4):
            np.savez(folder / f"{i}.npz", x=np.random.default_rng(i).random((1, 16), np.float32),
                     labels=np.array(["cat"]))
    # labels that are not class ids are ignored with a note; a budget on them then cannot be judged (exit 1)
    cli_error((1, 2), "quantize", model, "-o", tmp_path / "q.onnx", "--calib", calib, "--eval", evals,
              "--max-drop", "1", "--no-speed", "--no-sensitivity")
    assert not (tmp_path / "q.onnx").exists()


# ------------------------------------------------------------------------------- NaN/inf accepted as numbers


@pytest.mark.parametrize("flag", ["--atol", "--rtol"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_atol_nan_is_one_line_exit_2(tmp_path: Path, flag: str, value: str) -> None:
    model = tiny_model(tmp_path / "m.onnx")
    assert flag in cli_error(2, "simplify", model, "-o", tmp_path / "s.onnx", "-s", "x:1,16", flag, value)
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_min_sqnr_nan_is_one_line_exit_2(tmp_path: Path, value: str) -> None:
    from edgekit.stages.quantize import QuantizeOptions

    model = tiny_model(tmp_path / "m.onnx")
    assert "--min-sqnr" in cli_error(2, "quantize", model, "-o", tmp_path / "q.onnx", "--calib", "synthetic",
                                     "--min-sqnr", value)
    with pytest.raises(BadInputError, match="--min-sqnr"):
        QuantizeOptions(min_sqnr=float(value)).validate()


@pytest.mark.parametrize("text", ["nan%", "inf%"])
def test_max_regression_nan_is_refused(text: str) -> None:
    from edgekit.checks.budgets import parse_budget, parse_regression

    with pytest.raises(BadInputError, match="--max-regression"):
        parse_regression(text)
    with pytest.raises(BadInputError, match="finite"):
        parse_budget("p90<=1e999ms")


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_duration_inf_is_one_line_exit_2(bundle: Path, value: str) -> None:
    edit_manifest(bundle, budgets={"latency": ["p90<=10s"]})
    assert "--duration" in cli_error(2, "bench", bundle, "--duration", value)
    assert "--duration" in cli_error(2, "gate", bundle, "--duration", value)


@pytest.mark.parametrize("std", ["0", "nan", "inf"])
def test_std_zero_or_nan_for_npu_preprocessing_is_bad_input_not_unsupported(tmp_path: Path, std: str) -> None:
    from edgekit.adapters.npu.plan_common import per_channel

    model = _relu(tmp_path, [1, 3, 8, 8])
    assert "--std" in cli_error(2, "compile", model, "-o", tmp_path / "out", "-t", "ascend310", "--std", std)
    if std != "0":  # a mean of 0 is fine
        assert "--mean" in cli_error(2, "compile", model, "-o", tmp_path / "out", "-t", "ascend310", "--mean", std)
    with pytest.raises(BadInputError, match="std"):
        per_channel((float(std),), 3, "std")  # one value for all channels: was 1/0 in the AIPP config
    assert not (tmp_path / "out").exists()


def test_std_nan_for_image_calibration_is_one_line_exit_2(tmp_path: Path) -> None:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    assert "--std" in cli_error(2, "quantize", _image_model(tmp_path), "-o", tmp_path / "q.onnx", "--calib", images,
                                "--size", "8,8", "--std", "nan")


@pytest.mark.parametrize("verb", ["compile", "inspect", "bench"])
def test_input_shape_dtype_that_contradicts_the_model_is_refused(tmp_path: Path, verb: str) -> None:
    model = tiny_model(tmp_path / "m.onnx")  # x is float32
    extra = {"compile": ["-o", tmp_path / "out"], "inspect": [], "bench": ["--iters", "1", "--warmup", "0"]}[verb]
    err = cli_error(2, verb, model, "-s", "x:1,16:int8", *extra)
    assert "--input-shape" in err and "float32" in err


# ------------------------------------------------------------------------------- Ctrl-C is exit 130, nothing written


class _CtrlC(NullAdapter):
    """A null adapter whose compile gets a real SIGINT, handled the way native toolchains do."""

    name = "ctrl-c"
    how = "swallowed"

    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        (out_dir / "half-built.so").write_bytes(b"partial")
        swallowed = False
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(100):  # the handler runs between bytecodes
                time.sleep(0.01)
        except KeyboardInterrupt:
            swallowed = True  # MetaSchedule logs it as a failed candidate; TVM's FFI re-raises a RuntimeError
        assert swallowed, "SIGINT did not arrive"
        if self.how == "wrapped":
            raise RuntimeError("")  # what tvm_ffi makes of a KeyboardInterrupt (no cause, no message)
        return super().compile(model, target, options, out_dir)


@pytest.mark.parametrize("backend", ["ctrl-c", "auto"])
@pytest.mark.parametrize("how", ["swallowed", "wrapped"])
def test_ctrl_c_during_tvm_compilation_is_exit_130_with_nothing_written(tmp_path: Path, how: str, backend: str
                                                                        ) -> None:
    from edgekit.adapters.registry import registered

    adapter = type("CtrlCAdapter", (_CtrlC,), {"how": how})
    profile = TargetProfile("ctrl-c-cpu", "a CPU whose compiler gets Ctrl-C", "cpu", ("ctrl-c",), ("fp32",))
    model = tiny_model(tmp_path / "m.onnx")
    with registered(adapter, profile=profile):
        err = cli_error(130, "compile", model, "-o", tmp_path / "out", "-t", "ctrl-c-cpu", "-b", backend)
    assert err.startswith("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_ctrl_c_in_the_device_runtime_is_exit_130_with_nothing_written(ort_bundle: Path, tmp_path: Path,
                                                                       monkeypatch, capsys) -> None:
    import edgekit.runtime
    from edgekit.runtime.__main__ import main

    def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(edgekit.runtime, "bench", interrupted)
    assert main(["bench", str(ort_bundle), "--json", str(tmp_path / "r.json")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_tvm_ffi_turns_ctrl_c_into_runtime_error_and_edgekit_turns_it_back() -> None:
    """The real wrapping: a KeyboardInterrupt raised inside a TVM packed function comes back as RuntimeError('')."""
    tvm_ffi = pytest.importorskip("tvm_ffi")
    from edgekit.errors import watch_interrupts

    def raises() -> None:
        raise KeyboardInterrupt

    def interrupted() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)

    with pytest.raises(RuntimeError) as info:
        tvm_ffi.convert(raises)()
    assert not isinstance(info.value.__cause__ or info.value.__context__, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt), watch_interrupts():
        tvm_ffi.convert(interrupted)()


# ------------------------------------------------------------------------------- fuzz: manifest and spec parsers

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
_MANIFEST_KEYS = ["schema", "kind", "files", "inputs", "outputs", "info", "stages", "created", "name", "shape",
                  "dtype", "layout", "model_file", "source_model", "threads", "adapter", "budgets", "signature"]


@st.composite
def _manifests(draw: st.DrawFn) -> object:
    """Manifest-shaped JSON: the real keys with arbitrary values, sometimes a valid-looking skeleton."""
    data = draw(st.dictionaries(st.sampled_from(_MANIFEST_KEYS), _JSON, max_size=6))
    if draw(st.booleans()):
        data.setdefault("schema", "edgekit.manifest")
        data.setdefault("kind", "bundle")
        data["inputs"] = draw(st.lists(st.fixed_dictionaries(
            {"name": st.text(max_size=4), "shape": st.lists(_JSON | st.integers(-3, 10**12), max_size=5)},
            optional={"dtype": st.sampled_from(["float32", "int8", "float99", ""]) | _JSON}), max_size=2))
    return draw(st.one_of(st.just(data), _JSON))


@settings(max_examples=300, deadline=None)
@given(_manifests())
def test_fuzz_manifest_parser_raises_only_edgekit_errors(data: object) -> None:
    from edgekit.artifact import Manifest

    try:
        Manifest.from_json(data)
    except EdgekitError as exc:
        assert exc.exit_code == 2 and "\n" not in exc.one_line()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_manifests())
def test_fuzz_bundle_verifier_on_a_written_bundle_raises_only_edgekit_errors(bundle: Path, data: object) -> None:
    from edgekit.bundle import verify_bundle

    try:
        (bundle / "manifest.json").write_text(json.dumps(data))
    except ValueError:  # NaN/inf are no JSON
        return
    try:
        verify_bundle(bundle)
    except EdgekitError as exc:
        assert exc.exit_code == 2


_SPEC_TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(lambda name, dims, dtype: f"{name}:{','.join(dims)}{dtype}",
              st.text(st.characters(blacklist_characters=":"), min_size=1, max_size=6),
              st.lists(st.one_of(st.integers(-5, 10**25).map(str), st.text("ab_1 ", max_size=4)), max_size=6),
              st.sampled_from(["", ":float32", ":int8", ":float99", ":"])))


@settings(max_examples=500, deadline=None)
@given(_SPEC_TEXT)
def test_fuzz_input_shape_parser_raises_only_edgekit_errors(text: str) -> None:
    from edgekit.specs import DTYPES, parse_input_shape

    try:
        spec = parse_input_shape(text)
    except EdgekitError as exc:
        assert exc.exit_code == 2 and exc.path == "--input-shape"
        return
    assert spec.dtype in DTYPES and spec.name
    assert all(isinstance(d, str) or d >= 1 for d in spec.shape)
