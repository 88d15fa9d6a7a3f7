"""`edgekit gate BUNDLE`: stored budgets re-measured now; accuracy against the FP32 reference the bundle carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.checks.gate import gate
from edgekit.errors import BadInputError, ToolchainMissingError
from tests._bench_helpers import bundle_with_reference, compile_bundle


def test_gate_rechecks_stored_latency_and_accuracy_against_the_fp32_reference(tmp_path: Path) -> None:
    budgets = {"latency": ["p90<=10s"], "accuracy": {"min_cosine": 0.999, "min_sqnr_db": 40}}
    ok = bundle_with_reference(tmp_path, budgets)
    result = gate(ok, warmup=1, iters=10)
    assert result.exit_code == 0, [v.to_json() for v in result.verdicts]
    assert [v.kind for v in result.verdicts] == ["latency", "accuracy", "accuracy"]
    assert result.accuracy_source.startswith("re-run vs FP32 outputs on 6 stored eval sample(s)")
    assert result.verdicts[1].measured > 0.999 and result.verdicts[1].provenance == "measured"
    assert all(v.source == "manifest" for v in result.verdicts)


def test_gate_catches_a_bundle_that_drifted_from_its_fp32_reference(tmp_path: Path) -> None:
    # outputs 10 % off the reference: cosine stays 1.0 (same direction), SQNR falls to 20 dB
    drifted = bundle_with_reference(tmp_path, {"accuracy": {"min_sqnr_db": 30}}, perturb=0.1)
    result = gate(drifted)
    [sqnr] = result.verdicts
    assert sqnr.status == "fail" and sqnr.measured == pytest.approx(20.8, abs=0.5) and result.exit_code == 1


def test_gate_fails_an_impossible_stored_budget(tmp_path: Path) -> None:
    bad = bundle_with_reference(tmp_path, {"latency": ["p50<=1ns"], "accuracy": {"min_cosine": 0.99}})
    result = gate(bad, warmup=1, iters=10)
    assert result.exit_code == 1 and [v.status for v in result.verdicts] == ["fail", "pass"]


def test_gate_is_not_run_when_the_runner_cannot_run_here(tmp_path: Path) -> None:
    stored = bundle_with_reference(tmp_path, {"accuracy": {"min_cosine": 0.99, "max_drop": 0.01}})

    def no_device(*_a, **_k):
        raise ToolchainMissingError("device not present")

    result = gate(stored, loader=no_device)
    assert all(v.status == "not-run" for v in result.verdicts)
    assert "device not present" in result.accuracy_source and result.exit_code == 4  # never a silent pass


def test_gate_without_reference_data_never_passes_accuracy(tmp_path: Path) -> None:
    # a compile-only bundle has no eval data: re-running against source.onnx (maybe the INT8 model itself)
    # or on random inputs would be a number, not a check
    bare = bundle_with_reference(tmp_path, {"accuracy": {"min_cosine": 0.5}}, reference=False)
    result = gate(bare)
    [cosine] = result.verdicts
    assert cosine.status == "not-run" and "no FP32 reference data" in cosine.note and result.exit_code == 4


def test_gate_without_budgets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no budgets"):
        gate(compile_bundle(tmp_path))


@pytest.mark.parametrize("budgets", [
    {"latency": ["p0<=5ms"]}, {"latency": ["p90<=nanms"]}, {"accuracy": {"min_cosine": "high"}},
    {"accuracy": {"min_sqnr_db": float("nan")}}, {"accuracy": {"colour": 1}},
])
def test_malformed_stored_budgets_are_one_line_errors_naming_the_manifest(tmp_path: Path, budgets: dict) -> None:
    bundle = bundle_with_reference(tmp_path, budgets)
    with pytest.raises(BadInputError) as info:
        gate(bundle)
    assert "manifest.json: info.budgets" in info.value.one_line() and info.value.exit_code == 2
