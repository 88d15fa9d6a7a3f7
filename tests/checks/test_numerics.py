"""compare_outputs and the metrics every report shares."""

from __future__ import annotations

import math

import numpy as np

from edgekit.checks.numerics import (
    compare_outputs,
    cosine_similarity,
    max_rel_error,
    sqnr_db,
    tolerance_for,
    top1_agreement,
)


def test_identical_outputs_pass_with_infinite_sqnr() -> None:
    ref = {"y": np.arange(6, dtype=np.float32).reshape(2, 3)}
    result = compare_outputs(ref, {"y": ref["y"].copy()})
    assert result.passed and result.worst is None
    out = result.by_name()["y"]
    assert out.max_abs == 0 and math.isinf(out.sqnr_db) and out.cosine == 1.0
    assert out.top1_agreement == 1.0


def test_worst_output_is_named() -> None:
    ref = {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)}
    got = {"a": ref["a"] + 1e-3, "b": ref["b"] + 1e-1}
    result = compare_outputs(ref, got, atol=1e-4, rtol=1e-3)
    assert not result.passed and result.worst == "b"
    assert math.isclose(result.max_abs, 0.1, rel_tol=1e-5)


def test_tolerance_is_allclose_style() -> None:
    ref = {"y": np.array([100.0, 0.0], np.float32)}
    assert compare_outputs(ref, {"y": np.array([100.05, 0.0], np.float32)}, atol=1e-4, rtol=1e-3).passed
    assert not compare_outputs(ref, {"y": np.array([100.0, 0.01], np.float32)}, atol=1e-4, rtol=1e-3).passed


def test_missing_nan_shape_and_integer_outputs_fail() -> None:
    ref = {"y": np.zeros(3, np.float32)}
    assert "missing" in compare_outputs(ref, {}).notes[0]
    assert not compare_outputs(ref, {"y": np.zeros(4, np.float32)}).passed
    nan = compare_outputs(ref, {"y": np.array([0, np.nan, 0], np.float32)})
    assert not nan.passed and any("NaN" in n for n in nan.notes)
    ints = {"k": np.array([1, 2, 3])}
    assert compare_outputs(ints, {"k": np.array([1, 2, 3])}).passed
    assert not compare_outputs(ints, {"k": np.array([1, 2, 4])}).passed


def test_metric_helpers() -> None:
    ref = np.array([1.0, 2.0, 3.0])
    assert cosine_similarity(ref, 2 * ref) > 0.999999
    assert cosine_similarity(ref, -ref) < -0.999999
    assert math.isclose(sqnr_db(ref, ref * 1.1), 20.0, rel_tol=1e-6)  # noise = 10% of signal
    assert max_rel_error(np.array([0.0]), np.array([1e-7])) < 1.0  # floored denominator
    assert top1_agreement(np.eye(3), np.eye(3)[::-1]) == 1 / 3
    assert tolerance_for("fp32") == (1e-4, 1e-3) and tolerance_for("fp16")[0] > tolerance_for("fp32")[0]


def test_sqnr_is_infinite_only_when_bit_identical() -> None:
    ref = np.linspace(-1, 1, 1000).astype(np.float32)
    close = ref + np.float32(1e-7)
    from edgekit.checks.numerics import compare_outputs

    comparison = compare_outputs({"y": ref}, {"y": close})
    assert comparison.max_abs > 0 and np.isfinite(comparison.min_sqnr_db) and comparison.min_sqnr_db > 100
    assert sqnr_db(ref, ref.copy()) == float("inf")
