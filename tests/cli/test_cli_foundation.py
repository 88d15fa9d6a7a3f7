"""CLI verbs export/simplify/inspect/zoo through Typer's CliRunner: output, --json, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_import_edgekit_and_help_do_not_import_heavy_libraries() -> None:
    code = ("import sys, edgekit; from edgekit.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'tvm', 'openvino', 'onnxsim', 'onnxslim') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_zoo_lists_models_as_table_and_json() -> None:
    result = invoke("zoo")
    assert result.exit_code == 0 and "zoo:resnet18" in result.stdout
    data = json.loads(invoke("zoo", "--json").stdout)
    resnet = next(e for e in data if e["name"] == "resnet18")
    assert resnet["params"] == 11_689_512 and resnet["inputs"][0]["shape"] == [1, 3, 224, 224]


def test_export_simplify_inspect_chain(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    onnx_path, sim_path = tmp_path / "l.onnx", tmp_path / "l.sim.onnx"
    result = invoke("export", "zoo:lenet5", "--input-shape", "input:1,1,32,32", "-o", onnx_path, "--dynamic-batch",
                    "--json")
    assert result.exit_code == 0, result.stderr
    exported = json.loads(result.stdout)  # human tables went to stderr
    assert exported["verification"]["passed"] and exported["inputs"][0]["shape"][0] == "batch"
    assert "onnxruntime vs torch" in result.stderr

    result = invoke("simplify", onnx_path, "-o", sim_path, "--input-shape", "input:4,1,32,32")
    assert result.exit_code == 0, result.stderr
    assert "before" in result.stdout and "Conv" in result.stdout

    result = invoke("inspect", sim_path, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["inputs"][0]["shape"] == [4, 1, 32, 32] and info["macs"] == 4 * 416_520
    assert info["history"] == ["export", "simplify"] and info["quantization"]["quantized"] is False
    out_json = tmp_path / "info.json"
    assert invoke("inspect", sim_path, "--json", out_json).exit_code == 0
    assert json.loads(out_json.read_text())["node_count"] == info["node_count"]


def test_inspect_renders_table(tmp_path: Path, zoo_onnx) -> None:
    result = invoke("inspect", zoo_onnx("lenet5"))
    assert result.exit_code == 0
    assert "MACs" in result.stdout and "estimated" in result.stdout and "parameters" in result.stdout


@pytest.fixture
def bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "notes.onnx").write_text("not a model\n")
    (tmp_path / "cut.onnx").write_bytes(b"\x08\x08\x12\x07pytorch\x1a")  # a valid start, then cut off
    (tmp_path / "badmod.py").write_text("def factory():\n    raise ValueError('no weights here')\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("args", "words"), [
    (["inspect", "missing.onnx"], "missing.onnx: no such file"),
    (["inspect", "notes.onnx"], "notes.onnx: not a valid ONNX file"),
    (["inspect", "cut.onnx"], "cut.onnx"),
    (["simplify", "notes.onnx", "-o", "o.onnx"], "notes.onnx"),
    (["simplify", "missing.onnx", "-o", "o.onnx"], "no such file"),
    (["export", "zoo:resnet19"], "unknown zoo model 'resnet19'"),
    (["export", "nosuchpkg_abc.models:build", "--input-shape", "x:1,3"], "cannot import module"),
    (["export", "badmod:factory", "--input-shape", "x:1,3"], "factory raised ValueError: no weights here"),
    (["export", "zoo:lenet5", "--input-shape", "input:1x1x32x32"], "--input-shape"),
    (["export", "zoo:lenet5", "--input-shape", "input:1,32,32"], "rank 3"),
    (["export", "model.pt", "--input-shape", "x:1,3"], "model.pt: no such file"),
])
def test_bad_inputs_one_line_exit_2(bad_files: Path, args: list[str], words: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert "Traceback" not in result.output
    assert not list(bad_files.glob("o.onnx"))


def test_debug_shows_the_traceback(bad_files: Path) -> None:
    result = invoke("--debug", "export", "badmod:factory", "--input-shape", "x:1,3")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "no weights here" in result.stderr


@pytest.mark.slow
def test_yolov5n_at_640_export_simplify_inspect(tmp_path: Path) -> None:
    """The issue's "done when": export zoo:yolov5n at 640, simplify, inspect --json, and they agree."""
    pytest.importorskip("torch")
    onnx_path, sim_path = tmp_path / "yolov5n.onnx", tmp_path / "yolov5n.sim.onnx"
    result = invoke("export", "zoo:yolov5n", "--input-shape", "images:1,3,640,640", "-o", onnx_path, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verification"]["passed"]
    result = invoke("simplify", onnx_path, "-o", sim_path, "--json")
    assert result.exit_code == 0, result.stderr
    simplified = json.loads(result.stdout)
    assert simplified["verification"]["passed"] and simplified["after"]["node_count"] < simplified["before"][
        "node_count"]
    info = json.loads(invoke("inspect", sim_path, "--json").stdout)
    assert info["outputs"][0] == {"name": "detections", "shape": [1, 25200, 85], "dtype": "float32", "layout": None}
    from edgekit import zoo

    assert info["macs"] == zoo.get_entry("yolov5n").macs
    assert info["history"] == ["export", "simplify"]
