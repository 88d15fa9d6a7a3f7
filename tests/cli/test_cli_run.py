"""`edgekit run`: exit codes (0 pass, 1 budget failed, 2 bad recipe), JSON on stdout, cache flags."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgekit.cli import app
from tests._pipeline_helpers import write_recipe

runner = CliRunner()


def _run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_run_passes_and_reports(tmp_path):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "out"
    result = _run("run", recipe, "-o", out, "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output and "report.html" in result.output
    assert (out / "cpu" / "manifest.json").is_file() and (out / "report.md").is_file()


def test_run_json_on_stdout_and_cache_hits(tmp_path):
    recipe = write_recipe(tmp_path)
    args = ("run", recipe, "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--json")
    _run(*args)
    result = _run(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["exit_code"] == 0
    built = [s["stage"] for s in data["stages"] if not s["hit"]]
    assert built == ["bench", "checks"]  # nothing changed: latency is re-measured, the budgets re-checked
    assert "stages from cache" in result.stderr


def test_run_budget_failure_exits_1(tmp_path):
    recipe = write_recipe(tmp_path, latency="p90<=1us")
    result = _run("run", recipe, "-o", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert result.exit_code == 1, result.output
    assert "budget failed" in result.output and "p90<=1us" in result.output


def test_run_bad_recipe_exits_2_with_key_path(tmp_path):
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace("iterations = 10", "iterations = 'ten'"))
    result = _run("run", recipe, "-o", tmp_path / "out", "--no-cache")
    assert result.exit_code == 2
    assert "bench.iterations: Input should be a valid integer, got 'ten'" in result.stderr
    assert "Traceback" not in result.output


def test_run_code_needs_trust_code_flag(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('trust_code = true\ntargets = ["cpu"]\n[model]\nfactory = "nosuchpkg.models:build"\n'
                      'inputs = ["x:1,16"]\n')
    result = _run("run", recipe, "-o", tmp_path / "out", "--no-cache")
    assert result.exit_code == 2
    assert "--trust-code" in result.stderr


def test_run_unknown_target_exits_2(tmp_path):
    recipe = write_recipe(tmp_path)
    result = _run("run", recipe, "--target", "gpu", "-o", tmp_path / "out", "--no-cache")
    assert result.exit_code == 2 and "recipe has no target 'gpu'" in result.stderr


def test_compile_precision_auto(tmp_path):
    from tests._pipeline_helpers import labelled_eval, tiny_classifier

    model = tiny_classifier(tmp_path / "tiny.onnx")
    data = labelled_eval(tmp_path / "eval.npz", model)
    result = _run("compile", model, "-o", tmp_path / "bundle", "--precision", "auto", "-b", "onnxruntime",
                  "--calib", data, "--eval", data, "--accuracy-budget", "drop<=1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    [target] = data["targets"]
    assert {c["precision"] for c in target["candidates"]} >= {"fp32", "int8"}
    assert sum(c["chosen"] for c in target["candidates"]) == 1
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    assert "precision auto candidates" in result.stderr


def test_compile_precision_auto_bad_budget_exits_2(tmp_path):
    from tests._pipeline_helpers import tiny_classifier

    model = tiny_classifier(tmp_path / "tiny.onnx")
    result = _run("compile", model, "-o", tmp_path / "bundle", "--precision", "auto", "--accuracy-budget", "fast")
    assert result.exit_code == 2 and "--accuracy-budget" in result.stderr


def test_a_task_metric_is_shown_with_its_fp32_value_drop_and_mode():
    from edgekit.cli.run import metric_text

    text = metric_text({"name": "map50", "unit": "%", "mode": "agreement", "fp32": 1.0, "value": 0.9951,
                        "drop": 0.49, "drop_unit": "points"})
    assert text == "map50 99.51 % (FP32 100.00 %, drop 0.49 points; agreement)"
