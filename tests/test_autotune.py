"""precision auto: budget parsing, the search over (adapter × precision), fastest-within-budget choice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.autotune import (
    RULE_FASTEST,
    RULE_FLOAT_KEPT,
    RULE_INT8,
    choose_candidate,
    choose_side_by_side,
    compile_auto,
    parse_accuracy_budget,
)
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
    # the choice comes from timing the passing builds side by side (bench p50s were taken minutes apart)
    timed = [c for c in ok if c.interleaved_ms is not None]
    assert len(timed) == len(ok) and chosen[0].decision
    floats = [c for c in timed if c.precision not in ("int8", "mixed")]
    if chosen[0].decision.startswith("int8-clearly-faster"):
        assert chosen[0].interleaved_ms < 0.95 * min(c.interleaved_ms for c in floats)
    else:
        assert chosen[0].interleaved_ms == min(c.interleaved_ms for c in floats)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["info"]["adapter"] == chosen[0].adapter
    assert len(manifest["metrics"]["candidates"]) == len(result.candidates)
    assert (tmp_path / "report" / "figures" / "frontier-cpu.png").is_file()


# ------------------------------------------------------------------ side-by-side choice (fake runners, fake clock)

class _Clock:
    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def _runs(clock: _Clock, log: list[str], name: str, per_round_ms: list[float], warm_ms: float = 5.0):
    """Fake candidate: 3 warm-up calls (cold + 2) at `warm_ms`, then 2 calls per round at per_round_ms[r]."""
    count = [0]

    def call() -> None:
        k = count[0]
        count[0] += 1
        ms = warm_ms if k < 3 else per_round_ms[min((k - 3) // 2, len(per_round_ms) - 1)]
        clock.t += int(ms * 1e6)
        log.append(name)

    return call


def _choose(profiles: dict[str, list[float]], precisions: dict[str, str]):
    clock, log = _Clock(), []
    calls = {n: _runs(clock, log, n, p) for n, p in profiles.items()}
    choice = choose_side_by_side(calls, precisions, rounds=7, round_seconds=0.0, clock=clock)
    return choice, log


def test_side_by_side_is_interleaved_and_noise_in_some_rounds_does_not_decide() -> None:
    # fp32 is 5.0 ms but a busy spell hits it in two rounds; int8 is really 5.2 ms. Mean or one-shot timing
    # would crown int8 by luck; per-round medians in interleaved rounds keep fp32.
    fp32 = [20.0, 20.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    int8 = [5.2] * 7
    choice, log = _choose({"fp32": fp32, "int8": int8}, {"fp32": "fp32", "int8": "int8"})
    assert sum(fp32) / 7 > sum(int8) / 7
    timed = log[6:]
    assert timed[:8] == ["fp32", "fp32", "int8", "int8", "int8", "int8", "fp32", "fp32"]  # rounds alternate
    assert choice.name == "fp32" and choice.rule == RULE_FASTEST
    assert choice.medians_ms == {"fp32": 5.0, "int8": 5.2} and choice.rounds == 7


def test_int8_not_clearly_faster_than_fp32_is_not_chosen() -> None:
    # 2 % faster in every round: within noise, below the 5 % margin
    choice, _ = _choose({"fp32": [5.0] * 7, "int8": [4.9] * 7}, {"fp32": "fp32", "int8": "int8"})
    assert choice.name == "fp32" and choice.rule == RULE_FLOAT_KEPT and "not clearly faster" in choice.detail
    # 10 % faster median but faster in only 1 of 7 paired rounds: not a majority
    choice, _ = _choose({"fp32": [4.0, 4.0, 4.0, 5.0, 9.0, 9.0, 9.0], "mixed": [4.5, 4.5, 4.5, 4.5, 10.0, 10.0, 10.0]},
                        {"fp32": "fp32", "mixed": "mixed"})
    assert choice.name == "fp32" and choice.rule == RULE_FLOAT_KEPT and "1/7" in choice.detail


def test_int8_clearly_faster_wins_and_best_float_is_the_reference() -> None:
    profiles = {"fp32": [6.0] * 7, "bf16": [5.0] * 7, "int8": [4.0, 4.0, 6.0, 4.0, 4.0, 4.0, 4.0]}
    choice, _ = _choose(profiles, {"fp32": "fp32", "bf16": "bf16", "int8": "int8"})
    assert choice.name == "int8" and choice.rule == RULE_INT8 and "6/7" in choice.detail
    choice, _ = _choose({"fp32": [6.0] * 7, "bf16": [5.0] * 7}, {"fp32": "fp32", "bf16": "bf16"})
    assert choice.name == "bf16" and choice.rule == RULE_FASTEST


class _FakeRunner:
    def __init__(self, clock: _Clock, ms: float) -> None:
        self.clock, self.ms, self.input_specs = clock, ms, []

    def run(self, feed: dict) -> dict:
        self.clock.t += int(self.ms * 1e6)
        return {}


def test_choose_candidate_times_passing_builds_and_records_the_rule(tmp_path: Path) -> None:
    clock = _Clock()
    speeds = {"fp32": 5.0, "int8": 4.9, "bad": 1.0}
    cands = [Candidate("ort", p, latency_ms=ms, latency_provenance="measured", meets_budget=p != "bad",
                       bundle_entry=str(tmp_path / p)) for p, ms in (("fp32", 9.0), ("int8", 3.0), ("bad", 0.5))]
    loaded = []

    def loader(path: Path, *, threads: int | None = None) -> _FakeRunner:
        loaded.append(path.parent.name)
        return _FakeRunner(clock, speeds[path.parent.name])

    chosen = choose_candidate(cands, loader=loader, clock=clock, round_seconds=0.0)
    assert sorted(loaded) == ["fp32", "int8"]  # the build that fails the budget is not timed
    assert chosen.precision == "fp32" and chosen.decision.startswith(RULE_FLOAT_KEPT)
    assert cands[0].interleaved_ms == 5.0 and cands[1].interleaved_ms == 4.9 and cands[2].interleaved_ms is None
    # an estimate cannot be timed next to a measurement: the bench figures decide, and say so
    cands[1].latency_provenance = "estimated"
    for c in cands:
        c.decision = ""
    chosen = choose_candidate(cands, loader=loader, clock=clock)
    assert chosen.precision == "int8" and chosen.decision.startswith("fastest-bench")
