"""Manifests, hashes and atomic writes: what every stage relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.artifact import (
    Artifact,
    Manifest,
    StageRecord,
    atomic_dir,
    atomic_path,
    hash_tree,
    manifest_path_for,
    save_model_artifact,
    sha256_bytes,
    sha256_file,
    to_jsonable,
    tool_versions,
)
from edgekit.bundle import verify_bundle
from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    dest = tmp_path / "out.onnx"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "out.bin"
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"data")
    assert dest.read_bytes() == b"data"
    assert [p.name for p in dest.parent.iterdir()] == ["out.bin"]


def test_atomic_dir_keeps_old_bundle_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "bundle"
    with atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("v1")
        (tmp / "manifest.json").write_text(Manifest(kind="bundle").dumps())  # an edgekit output: replaceable
    with pytest.raises(ValueError), atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("v2")
        raise ValueError
    assert (dest / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_manifest_round_trip_with_history(tmp_path: Path) -> None:
    manifest = Manifest(kind="onnx", inputs=[TensorSpec("x", ("batch", 3))], info={"source": "zoo:lenet5"})
    manifest.add_stage(StageRecord("export", options={"opset": 17}, metrics={"max_abs": float("nan")}))
    path = tmp_path / "m.json"
    path.write_text(manifest.dumps())
    data = json.loads(path.read_text())
    assert data["schema"] == "edgekit.manifest" and data["schema_version"] == 1
    assert data["history"][0]["metrics"]["max_abs"] == "nan"  # JSON has no NaN
    assert "onnx" in data["history"][0]["tool_versions"]
    again = Manifest.read(path)
    assert again.inputs == manifest.inputs and again.history[0].stage == "export"


def test_newer_schema_and_garbage_manifest_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema": "edgekit.manifest", "schema_version": 99, "kind": "onnx"}))
    with pytest.raises(BadInputError, match="newer"):
        Manifest.read(path)
    path.write_text("{not json")
    with pytest.raises(BadInputError, match="not valid JSON"):
        Manifest.read(path)


def test_save_model_artifact_hashes_and_open_detects_mismatch(tmp_path: Path) -> None:
    manifest = Manifest(kind="onnx")
    manifest.add_stage(StageRecord("export"))
    art = save_model_artifact(b"model-bytes", tmp_path / "m.onnx", manifest)
    assert art.manifest.files == {"m.onnx": sha256_bytes(b"model-bytes")} == {"m.onnx": sha256_file(art.path)}
    assert manifest_path_for(art.path).exists()
    assert [r.stage for r in Artifact.open(art.path).manifest.history] == ["export"]
    art.path.write_bytes(b"changed")
    assert Artifact.open(art.path).manifest.history == []  # stale history dropped


def test_verify_bundle_refuses_tampering(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "model.bin").write_bytes(b"weights")
    (bundle / "source.onnx").write_bytes(b"onnx")
    manifest = Manifest(kind="bundle", files=hash_tree(bundle))
    (bundle / "manifest.json").write_text(manifest.dumps())
    assert verify_bundle(bundle).manifest.files == {"model.bin": sha256_bytes(b"weights"),
                                                    "source.onnx": sha256_bytes(b"onnx")}
    (bundle / "model.bin").write_bytes(b"weightz")
    with pytest.raises(BadInputError, match="sha256"):
        verify_bundle(bundle)


def test_to_jsonable_and_tool_versions() -> None:
    assert to_jsonable({"p": Path("a"), "t": (1, 2), "inf": float("inf")}) == {"p": "a", "t": [1, 2], "inf": "inf"}
    versions = tool_versions()
    assert "onnx" in versions and "numpy" in versions


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    """mkstemp/mkdtemp create private files; outputs must get the mode open()/mkdir would give."""
    import os

    from edgekit.artifact import atomic_dir, atomic_path

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"x")
        with atomic_dir(tmp_path / "bundle") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o755


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_dead_owners_on_this_host(tmp_path: Path) -> None:
    import os

    from edgekit.artifact import scratch_name, sweep_dead_scratch

    dead = scratch_name("out", "work").replace(f"-{os.getpid()}-", f"-{_dead_pid()}-") + "x"
    live = scratch_name("out", "work") + "y"
    host = scratch_name("out", "work").split("-")[2]
    other_host = dead.replace(f"-{host}-", "-00000000-")
    other_name = dead.replace(".out.", ".other.")
    for name in (dead, live, other_host, other_name, "out", ".hidden"):
        (tmp_path / name).mkdir()
    assert [p.name for p in sweep_dead_scratch(tmp_path, "out")] == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live, other_host, other_name, "out", ".hidden"])
    assert [p.name for p in sweep_dead_scratch(tmp_path)] == [other_name]  # any output's, when not named


def test_atomic_dir_replaces_empty_and_edgekit_folders_only(tmp_path: Path) -> None:
    from edgekit.artifact import is_edgekit_output

    empty = tmp_path / "empty"
    empty.mkdir()
    assert is_edgekit_output(empty)
    with atomic_dir(empty) as tmp:
        (tmp / "manifest.json").write_text(Manifest(kind="bundle").dumps())
    assert is_edgekit_output(empty)
    with atomic_dir(empty) as tmp:  # an edgekit output is replaced as before
        (tmp / "v2").write_text("2")
    assert sorted(p.name for p in empty.iterdir()) == ["v2"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"name": "a web app"}')  # a manifest.json that is not edgekit's
    assert not is_edgekit_output(foreign)
    with pytest.raises(BadInputError, match="not an edgekit output"), atomic_dir(foreign):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="not a folder"), atomic_dir(tmp_path / "file"):
        pass


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_atomic_path_refuses_the_working_folder(name: str) -> None:
    with pytest.raises(BadInputError, match="not a name"), atomic_path(Path(name)):
        pass
