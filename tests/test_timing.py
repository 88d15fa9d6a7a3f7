"""The core timing loop (edgekit.timing): interleaved rounds, paired ratios, and side-by-side runners.

No sleeps: a fake clock moves only when a candidate runs, so the loop's logic is tested exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from edgekit import timing
from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec
from tests._bench_helpers import FakeClock, FakeRunner

# ------------------------------------------------------------------ interleaved (shared side-by-side loop)

class _Clock:
    """ns clock that only moves when a fake candidate runs (no sleeps)."""

    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def _candidate(clock: _Clock, log: list[str], name: str, ms: float | list[float]):
    """A call costing `ms` (or ms[i] on its i-th call) of fake time, logging its name."""
    count = [0]

    def call() -> None:
        cost = ms if isinstance(ms, (int, float)) else ms[min(count[0], len(ms) - 1)]
        count[0] += 1
        clock.t += int(cost * 1e6)
        log.append(name)

    return call


def test_interleaved_rotates_order_and_keeps_rounds() -> None:
    clock, log = _Clock(), []
    calls = {n: _candidate(clock, log, n, 1.0) for n in ("a", "b", "c")}
    timed = timing.interleaved(calls, rounds=3, round_seconds=0.0, warmup=2, min_runs=2, clock=clock)
    rounds_log = log[3 * 3:]  # cold + 2 warm-up runs each come first
    assert rounds_log == ["a"] * 2 + ["b"] * 2 + ["c"] * 2 + ["b"] * 2 + ["c"] * 2 + ["a"] * 2 \
        + ["c"] * 2 + ["a"] * 2 + ["b"] * 2
    for t in timed.values():
        assert [len(r) for r in t.rounds] == [2, 2, 2] and t.samples == [1.0] * 6
        assert t.cold_ms == 1.0 and t.warm_ms == 1.0 and t.median_ms == 1.0


def test_interleaved_runs_per_round_follow_warm_time_and_caps() -> None:
    clock, log = _Clock(), []
    calls = {"fast": _candidate(clock, log, "fast", 1.0), "slow": _candidate(clock, log, "slow", 5.0),
             "capped": _candidate(clock, log, "capped", 1.0)}
    timed = timing.interleaved(calls, rounds=2, round_seconds=0.02, warmup=1, max_runs=15, caps={"capped": 3},
                                clock=clock)
    assert [len(r) for r in timed["fast"].rounds] == [15, 15]  # 20 ms / 1 ms = 20, capped by max_runs
    assert [len(r) for r in timed["slow"].rounds] == [4, 4]  # 20 ms / 5 ms
    assert [len(r) for r in timed["capped"].rounds] == [3, 3]


def test_interleaved_rejects_a_hopeless_candidate_after_warm_up() -> None:
    clock, log = _Clock(), []
    calls = {"fast": _candidate(clock, log, "fast", 1.0), "tvm": _candidate(clock, log, "tvm", 500.0)}
    timed = timing.interleaved(calls, rounds=2, round_seconds=0.01, warmup=1, reject_ratio=10.0, clock=clock)
    assert "slower than the fastest" in timed["tvm"].rejected and not timed["fast"].rejected
    assert timed["tvm"].samples == [] and timed["tvm"].round_medians == [None, None]
    assert log.count("tvm") == 2  # cold + warm-up only
    assert timed["tvm"].warm_ms == 500.0


def test_interleaved_paired_ratios_and_time_budget() -> None:
    clock, log = _Clock(), []
    calls = {"a": _candidate(clock, log, "a", [1.0] * 3 + [1.0, 1.0, 4.0, 4.0] + [1.0] * 100),
             "b": _candidate(clock, log, "b", 2.0)}
    timed = timing.interleaved(calls, rounds=100, min_rounds=4, max_seconds=0.03, round_seconds=0.0,
                                warmup=2, min_runs=2, clock=clock)
    n = len(timed["a"].rounds)
    assert 4 <= n < 100 and n == len(timed["b"].rounds)  # stopped on the time budget, not the round cap
    ratios = timing.paired_ratios(timed["a"], timed["b"])
    assert ratios[:2] == [0.5, 2.0] and all(r == 0.5 for r in ratios[2:])


# ------------------------------------------------------------------ time_side_by_side (runners on their feeds)


class _Counting(FakeRunner):
    """Counts how often the input check ran (`check_inputs=True`) versus the hot path."""

    checked = 0

    def run(self, inputs: Mapping[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        self.checked += int(check_inputs)
        return super().run(inputs, check_inputs)


def test_side_by_side_validates_each_feed_once_then_times_the_hot_path() -> None:
    clock = FakeClock()
    fast, slow = _Counting(clock, [1.0]), _Counting(clock, [3.0], input_specs=[TensorSpec("x", (2, 16))])
    feeds = {"fast": {"x": np.zeros((1, 16), np.float32)}, "slow": {"x": np.zeros((2, 16), np.float32)}}
    timed = timing.time_side_by_side({"fast": fast, "slow": slow}, feeds, rounds=3, round_seconds=0.0,
                                     warmup=1, min_runs=2, clock=clock)
    assert fast.checked == 1 and slow.checked == 1  # the input check once per runner, outside the timed loop
    assert fast.calls > 3 and slow.calls > 3
    assert timed["fast"].median_ms == 1.0 and timed["slow"].median_ms == 3.0
    assert [len(r) for r in timed["fast"].rounds] == [2, 2, 2]
    assert set(slow.shapes) == {(2, 16)} and set(fast.shapes) == {(1, 16)}  # each runner on its own feed
    assert timing.paired_ratios(timed["fast"], timed["slow"]) == pytest.approx([1 / 3] * 3)


def test_side_by_side_refuses_a_feed_that_does_not_fit_before_timing() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [1.0], input_specs=[TensorSpec("x", (1, 16))])
    with pytest.raises(BadInputError, match="has shape"):
        timing.time_side_by_side({"a": runner}, {"a": {"x": np.zeros((1, 8), np.float32)}}, clock=clock)
    assert runner.calls == 0


def test_side_by_side_rejects_a_hopeless_runner_after_warm_up() -> None:
    clock = FakeClock()
    runners = {"fast": FakeRunner(clock, [1.0]), "untuned": FakeRunner(clock, [500.0])}
    feed = {"x": np.zeros((1, 16), np.float32)}
    timed = timing.time_side_by_side(runners, {n: feed for n in runners}, rounds=2, round_seconds=0.01,
                                     reject_ratio=10.0, clock=clock)
    assert "slower than the fastest" in timed["untuned"].rejected and not timed["fast"].rejected
    assert timed["untuned"].samples == [] and timed["untuned"].warm_ms == 500.0


class _Overriding(FakeRunner):
    """A runner whose `run` does more than check inputs and takes no flag: it is timed through `run`."""

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:  # type: ignore[override]
        return super().run(inputs)


def test_hot_call_skips_only_the_input_check() -> None:
    clock = FakeClock()
    plain, custom = _Counting(clock, [1.0]), _Overriding(clock, [1.0])
    feed = {"x": np.zeros((1, 16), np.float32)}
    timing.hot_call(plain)(feed)
    assert plain.calls == 1 and plain.checked == 0
    assert timing.hot_call(custom) == custom.run

    class Bare:
        def run(self, inputs: Mapping[str, np.ndarray]) -> str:
            return "ran"

    assert timing.hot_call(Bare())({}) == "ran"  # anything with run(feed) can be timed


def test_settle_runs_open_each_turn_untimed():
    # several runtimes in one process: the first run after a switch pays for the other's threads and caches
    calls = {"a": 0, "b": 0}

    def make(name):
        def call():
            calls[name] += 1
        return call

    timed = timing.interleaved({"a": make("a"), "b": make("b")}, rounds=3, round_seconds=0.0, warmup=0, min_runs=2,
                        max_runs=2, settle=1)
    for name in ("a", "b"):
        assert [len(r) for r in timed[name].rounds] == [2, 2, 2]  # timed runs only
        assert calls[name] == 1 + 3 * (1 + 2)  # cold run, then per round: one settle run + two timed
