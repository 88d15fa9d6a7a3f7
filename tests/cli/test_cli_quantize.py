"""`edgekit quantize` through the CLI: a really trained model, exit codes, JSON, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from tests._quant_helpers import (
    OUTLIER_NODES,
    digits_assets,
    labelled_by_reference,
    outlier_model,
    random_samples,
    write_npz,
)

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    return digits_assets(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-outlier")
    model = outlier_model(root / "outlier.onnx")
    return {"model": model, "calib": write_npz(root / "calib", random_samples((1, 4, 8, 8), 16)),
            "eval": write_npz(root / "eval", labelled_by_reference(model, random_samples((1, 4, 8, 8), 32, seed=1)))}


def test_trained_digits_cnn_keeps_its_accuracy_in_int8(digits, tmp_path):
    out, report = tmp_path / "digits_int8.onnx", tmp_path / "report.json"
    result = _run("quantize", digits["model"], "-o", out, "--calib", digits["calib"], "--eval", digits["eval"],
                  "--eval-samples", 1000, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    acc = data["accuracy"]
    assert acc["samples"] == 449 and acc["valid_for_accuracy"]
    assert acc["fp32_accuracy"] >= 0.95
    assert acc["accuracy_drop_points"] <= 1.0
    assert acc["min_sqnr_db"] > 20 and acc["outputs"][0]["top1_agreement"] >= 0.98
    assert data["sensitivity"] and data["speed"]["provenance"] == "measured"
    assert "task accuracy" in result.output and "sensitivity" in result.output and "INT8" in result.output
    assert out.is_file() and (tmp_path / "digits_int8.onnx.manifest.json").is_file()


def test_accuracy_aware_mode_through_cli(outlier, tmp_path):
    result = _run("quantize", outlier["model"], "-o", tmp_path / "q.onnx", "--calib", outlier["calib"],
                  "--eval", outlier["eval"], "--max-drop", 1, "--no-speed", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["excluded"]) == set(OUTLIER_NODES)
    assert data["accuracy"]["accuracy_drop_points"] <= 1.0 < data["full_int8_accuracy"]["accuracy_drop_points"]
    assert "kept 2 node(s) in float" in result.stderr


def test_unmeetable_budget_exits_1_and_writes_nothing(outlier, tmp_path):
    out = tmp_path / "q.onnx"
    result = _run("quantize", outlier["model"], "-o", out, "--calib", outlier["calib"], "--eval", outlier["eval"],
                  "--min-sqnr", 200, "--no-speed")
    assert result.exit_code == 1
    assert "no INT8 setting meets the budget" in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_shape_mismatch_exits_2_naming_the_file(outlier, tmp_path):
    bad = write_npz(tmp_path / "bad", random_samples((1, 4, 8, 8), 2) + random_samples((1, 4, 7, 8), 1))
    result = _run("quantize", outlier["model"], "-o", tmp_path / "q.onnx", "--calib", bad)
    assert result.exit_code == 2
    assert "0002.npz" in result.stderr and "(1, 4, 8, 8)" in result.stderr and "(1, 4, 7, 8)" in result.stderr


def test_all_zero_int8_exits_1_whatever_the_speed(outlier, tmp_path):
    """Naive INT8 of the outlier model outputs exactly 0.0: that is never a result with exit 0."""
    out = tmp_path / "q.onnx"
    result = _run("quantize", outlier["model"], "-o", out, "--calib", outlier["calib"], "--eval", outlier["eval"],
                  "--no-sensitivity")
    assert result.exit_code == 1, result.output
    assert "no longer works" in result.stderr and "all zeros" in result.stderr and "where FP32 varies" in result.stderr
    assert "pays off" not in result.output and not out.exists()


def test_refusals_exit_2(outlier, tmp_path):
    out = tmp_path / "q.onnx"
    assert _run("quantize", outlier["model"], "-o", out, "--calib", outlier["calib"], "--no-speed",
                "--no-sensitivity", "--exclude", ",".join(OUTLIER_NODES)).exit_code == 0
    again = _run("quantize", out, "-o", tmp_path / "q2.onnx", "--calib", outlier["calib"])
    assert again.exit_code == 2 and "already quantized" in again.stderr
    code = _run("quantize", outlier["model"], "-o", out, "--calib", "py:os:listdir")
    assert code.exit_code == 2 and "--trust-code" in code.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run("quantize", outlier["model"], "-o", out, "--calib", empty).exit_code == 2


def test_image_folder_with_preprocessing(tmp_path):
    from PIL import Image

    from tests._quant_helpers import small_conv_model

    model = small_conv_model(tmp_path / "m.onnx", opset=13, shape=(1, 3, 8, 8))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    result = _run("quantize", model, "-o", tmp_path / "q.onnx", "--calib", folder, "--size", "8,8",
                  "--mean", "127.5", "--std", "64", "--no-speed", "--no-sensitivity", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["calibration"]["samples"] == 10  # 2 of 12 held out for the report
    (folder / "zz.jpg").write_bytes(b"garbage")
    broken = _run("quantize", model, "-o", tmp_path / "q2.onnx", "--calib", folder, "--size", "8")
    assert broken.exit_code == 2 and "zz.jpg" in broken.stderr


def test_python_callable_source_with_trust_code(outlier, tmp_path):
    code = tmp_path / "calib_data.py"
    code.write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    rng = np.random.default_rng(0)\n"
        "    return [{'x': rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(10)]\n"
    )
    result = _run("quantize", outlier["model"], "-o", tmp_path / "q.onnx", "--calib", f"py:{code}:samples",
                  "--trust-code", "--no-speed", "--no-sensitivity", "--json", "--exclude", ",".join(OUTLIER_NODES))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["calibration"]["samples"] == 8  # 2 of 10 held out


@pytest.mark.parametrize("flags, words", [
    (["--max-drop", "bleu:1"], "unknown metric 'bleu'"),
    (["--max-drop", "map50:1", "--metric", "dice"], "name one metric"),
    (["--metric-option", "conf=5"], "0 to 1"),
    (["--metric", "py:os:getcwd"], "--trust-code"),
    (["--max-drop", "map50:nan"], "finite"),
])
def test_metric_flags_are_checked_before_any_work(outlier, tmp_path, flags, words):
    out = tmp_path / "q.onnx"
    result = _run("quantize", outlier["model"], "-o", out, "--calib", outlier["calib"], *flags)
    assert result.exit_code == 2 and words in result.stderr and "Traceback" not in result.output
    assert not out.exists()
