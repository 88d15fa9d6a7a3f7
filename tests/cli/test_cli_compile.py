"""`edgekit compile`, `compare` and `targets`: exit codes, one-line errors, JSON on stdout."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from tests._adapters_helpers import tiny_conv_model

runner = CliRunner()


@pytest.fixture
def model(tmp_path):
    return tiny_conv_model(tmp_path / "tiny.onnx")


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_compile_auto_prints_the_candidates_table(model, tmp_path):
    result = _run("compile", model, "--target", "cpu", "--backend", "auto", "-o", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert "backend auto: candidates" in result.output and "chosen" in result.output
    assert (tmp_path / "b" / "manifest.json").is_file()
    # the shapes the candidates were timed at are printed and stored with the figures
    shapes = json.loads((tmp_path / "b" / "manifest.json").read_text())["info"]["auto"]["input_shapes"]
    assert shapes and all(d >= 1 for dims in shapes.values() for d in dims)
    assert "timed side by side at " + " ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in shapes.items()) \
        in " ".join(result.output.split())


def test_compile_json_goes_to_stdout(model, tmp_path):
    result = _run("compile", model, "-b", "onnxruntime", "-o", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["adapter"] == "onnxruntime" and data["verification"]["passed"] is True
    assert "compiled" in result.stderr


def test_compile_adapter_options_are_typed(model, tmp_path):
    result = _run("compile", model, "-b", "onnxruntime", "-O", "optimization=basic", "-O", "save_optimized=false",
                  "-o", tmp_path / "b", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"].keys() == {"source.onnx"}


@pytest.mark.parametrize("args, code, text", [
    (["--backend", "tflite"], 2, "unknown backend 'tflite'"),
    (["--target", "tpu9000"], 2, "unknown target 'tpu9000'"),
    (["--target", "cuda", "--backend", "onnxruntime"], 4, "unavailable"),
    (["--precision", "int8", "--backend", "onnxruntime"], 2, "--calib"),
    (["--backend", "onnxruntime", "-O", "turbo=1"], 2, "unknown option 'turbo'"),
    (["--mean", "1,x"], 2, "--mean"),
    (["--precision", "fp32", "--exhaustive"], 2, "--exhaustive only applies to --precision auto"),
    (["--exhaustive"], 2, "--exhaustive only applies to --precision auto"),
])
def test_compile_errors_are_one_line_with_exit_codes(model, tmp_path, args, code, text):
    if "cuda" in args:
        from edgekit.adapters.onnxruntime import available_providers

        if "CUDAExecutionProvider" in available_providers():
            pytest.skip("CUDA present")
    result = _run("compile", model, "-o", tmp_path / "b", *args)
    assert result.exit_code == code, result.output
    assert text in result.stderr and "Traceback" not in result.output
    # the error is one line; anything else on stderr is timestamped progress of the steps that ran
    lines = result.stderr.strip().splitlines()
    [error] = [line for line in lines if not re.match(r"\[\d\d:\d\d:\d\d\] ", line)]
    assert error.startswith("error: ") and text in error
    assert not (tmp_path / "b").exists()


def test_compile_missing_model_is_bad_input(tmp_path):
    result = _run("compile", tmp_path / "nope.onnx", "-o", tmp_path / "b")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_compare_table_and_json(model):
    result = _run("compare", model, "--backends", "onnxruntime,null", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [b["backend"] for b in data["backends"]] == ["onnxruntime", "null"]
    assert data["backends"][0]["outputs"][0]["cosine"] > 0.9999
    assert "logits" in result.stderr


def test_targets_lists_profiles_and_adapters():
    result = _run("targets", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = {t["name"] for t in data["targets"]}
    assert {"cpu", "cuda"} <= names
    cpu = next(t for t in data["targets"] if t["name"] == "cpu")
    for adapter in cpu["adapters"]:
        assert adapter["available"] or adapter["reason"]
    assert any(a["name"] == "null" for a in data["adapters"])


def test_targets_show_and_unknown():
    shown = _run("targets", "show", "cuda")
    assert shown.exit_code == 0 and "onnxruntime" in shown.output
    missing = _run("targets", "show", "tpu9000")
    assert missing.exit_code == 2 and "available:" in missing.stderr


def test_compile_precision_auto_prints_the_figures_the_choice_was_made_on(model, tmp_path):
    out = tmp_path / "auto.json"
    result = _run("compile", model, "-p", "auto", "-b", "onnxruntime", "-o", tmp_path / "b", "--accuracy-budget",
                  "cosine>=0.9", "--calib", "synthetic", "--json", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    target = data["targets"][0]
    [chosen] = [c for c in target["candidates"] if c["chosen"]]
    timed = [c for c in target["candidates"] if c["latency_kind"] == "side-by-side median"]
    text = " ".join(result.output.split())
    assert "side-by-side medians the choice was made on" in text
    for c in timed:  # every figure in the table is the one the choice used (p50, with p99 of the same samples) ...
        assert f"{c['latency_ms']:.3f}" in text
        assert c["latency_p99_ms"] is None or f"{c['latency_p99_ms']:.3f}" in text
    # ... and the line with ★ gives the rule with the chosen build's own figure
    assert f"★ onnxruntime {chosen['precision_used']}: {target['decision'].split(':')[0]}" in text
    assert f"{chosen['latency_ms']:.3f} ms" in target["decision"]
    # the JSON names the bundle where it now is (the search's work folder is gone)
    assert data["output"] == data["bundle"] == target["bundle"] == str(tmp_path / "b")


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_a_bundle_output_named_like_a_model_file_is_refused(model, tmp_path, precision):
    result = _run("compile", model, "-p", precision, "-b", "onnxruntime", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2 and "a bundle is a folder" in result.stderr and "out.bundle/" in result.stderr
    assert not (tmp_path / "out.onnx").exists()
