"""precision auto: budget parsing, the search over (adapter × precision), fastest-within-budget choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.autotune import compile_auto, parse_accuracy_budget
from edgekit.errors import BadInputError
from edgekit.pipeline import Candidate, _Run
from tests._pipeline_helpers import labelled_eval, tiny_classifier


def test_parse_accuracy_budget() -> None:
    budget = parse_accuracy_budget("sqnr>=20dB, cosine>=0.999")
    assert (budget.min_sqnr_db, budget.min_cosine, budget.max_drop) == (20.0, 0.999, None)
    assert parse_accuracy_budget(["drop<=1.5"]).max_drop == 1.5
    for bad in ("sqnr<=20", "accuracy>=0.9", ""):
        with pytest.raises(BadInputError):
            parse_accuracy_budget(bad)


def test_choose_fastest_within_budget() -> None:
    fast_bad = Candidate("a", "int8", latency_ms=1.0, meets_budget=False, sqnr_db=10.0)
    mid_ok = Candidate("b", "bf16", latency_ms=2.0, meets_budget=True, sqnr_db=30.0)
    slow_ok = Candidate("c", "fp32", latency_ms=5.0, meets_budget=True, sqnr_db=99.0)
    assert _Run._choose([fast_bad, slow_ok, mid_ok]) is mid_ok
    # nothing meets the budget: the most accurate one (the run then fails its budget)
    assert _Run._choose([fast_bad, Candidate("d", "fp32", latency_ms=9.0, sqnr_db=50.0)]).adapter == "d"


def test_compile_auto_searches_and_writes_chosen_bundle(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "tiny.onnx")
    data = labelled_eval(tmp_path / "eval.npz", model)
    result = compile_auto(model, output=tmp_path / "bundle", target="cpu", backend="onnxruntime,null",
                          accuracy_budget="cosine>=0.99", calib=data, eval=data, cache_dir=tmp_path / "cache",
                          report=tmp_path / "report")
    built = [c for c in result.candidates if c.bundle_entry]
    assert {(c.adapter, c.precision) for c in built} >= {("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                                         ("null", "fp32")}
    chosen = [c for c in result.candidates if c.chosen]
    assert len(chosen) == 1 and chosen[0].meets_budget
    ok = [c for c in built if c.meets_budget]
    assert chosen[0].latency_ms == min(c.latency_ms for c in ok)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["info"]["adapter"] == chosen[0].adapter
    assert len(manifest["metrics"]["candidates"]) == len(result.candidates)
    assert (tmp_path / "report" / "figures" / "frontier-cpu.png").is_file()
