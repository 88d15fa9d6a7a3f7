"""The A/B regression gate (edgekit.checks.regression): statistics, decision, contention, bench/gate wiring.

Deterministic: fake runners advance a fake clock, so rounds, ratios and the time cap are exact; no
assertion depends on this machine's speed.
"""

from __future__ import annotations

import json
import math
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.checks.budgets import (
    check_against_baseline,
    contention_differences,
    junit_xml,
    overall_status,
    validate_bench_json,
)
from edgekit.checks.latency import bench
from edgekit.checks.regression import (
    ABConfig,
    ContentionProbe,
    _proc_stat,
    _rank_of_lower_bound,
    compare_runners,
    decide,
    ratio_interval,
)
from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.specs import TensorSpec
from edgekit.timing import interleaved
from tests._bench_helpers import FakeClock, FakeRunner, compile_bundle, fake_loader

FEED = {"x": np.zeros((1, 16), np.float32)}
FAST = ABConfig(max_regression=0.10, min_seconds=1.0, max_seconds=20.0, round_seconds=0.01, seed=7)


def per_round(durations: Callable[[int], float], runs_per_round: int = 10) -> Callable[[int], float]:
    """Durations by round: call i belongs to round (i - 2) // runs (a cold and a warm-up call come first).

    Approximate (each batch adds a cold and a warm-up run), which is all these tests need: whole
    stretches of calls slow or fast.
    """
    return lambda i: durations(max(0, i - 2) // runs_per_round)


def test_sign_test_rank_matches_the_binomial_tail() -> None:
    for n in (6, 10, 20, 57, 200):
        k = _rank_of_lower_bound(n, 0.95)
        below = sum(math.comb(n, i) for i in range(k)) / 2**n  # P(Bin(n, 1/2) <= k-1)
        above = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
        assert below <= 0.025 < above
    assert _rank_of_lower_bound(5, 0.95) == 0  # too few rounds for any 95 % interval


def test_interval_is_the_median_with_order_statistics_and_ignores_outlier_rounds() -> None:
    ratios = [1.0 + 0.001 * i for i in range(-10, 10)] + [3.0, 3.0, 0.2]  # 3 rounds straddled a load change
    interval = ratio_interval(ratios)
    assert interval.rounds == 23
    assert interval.estimate == pytest.approx(float(np.median(ratios)))
    assert 0.99 < interval.low <= interval.estimate <= interval.high < 1.01
    few = ratio_interval([1.0, 1.2, 0.9])
    assert few.low == 0.0 and math.isinf(few.high)
    assert decide(few, 0.10)[0] is None


def test_decision_rule_pass_regression_and_undecided() -> None:
    make = lambda low, high: ratio_interval([low] * 10 + [(low + high) / 2] * 10 + [high] * 10)  # noqa: E731
    assert decide(make(0.98, 1.02), 0.10)[0] == "pass"
    assert decide(make(1.08, 1.16), 0.10)[0] == "regression"  # the issue's "1.12× (1.08–1.16): regression"
    status, why = decide(make(1.00, 1.16), 0.10)
    assert status is None and "straddles" in why
    assert decide(make(1.06, 1.09), 0.10)[0] == "pass"  # within the allowance, though slower


def test_unchanged_passes() -> None:
    clock = FakeClock()
    new, old = FakeRunner(clock, [1.0]), FakeRunner(clock, [1.0])
    comparison, timed_new, timed_old = compare_runners(new, old, FEED, FAST, clock=clock)
    assert comparison.status == "pass" and comparison.verdict().status == "pass"
    assert comparison.interval.estimate == pytest.approx(1.0)
    assert comparison.interval.rounds >= FAST.min_rounds and comparison.seconds >= FAST.min_seconds
    assert comparison.headline == "NEW is 1.00× OLD (95 % CI 1.00–1.00): pass"
    assert len(timed_new.rounds) == len(timed_old.rounds) == comparison.interval.rounds


def test_twenty_percent_slower_is_a_regression_with_the_interval_above_the_threshold() -> None:
    clock = FakeClock()
    jitter = np.random.default_rng(0).uniform(-0.02, 0.02, 100_000)
    new = FakeRunner(clock, lambda i: 1.2 * (1 + jitter[i]))
    old = FakeRunner(clock, lambda i: 1.0 * (1 + jitter[-i - 1]))
    comparison, _, _ = compare_runners(new, old, FEED, FAST, clock=clock)
    assert comparison.status == "regression"
    assert comparison.interval.low > 1.10  # the CI excludes the threshold
    assert comparison.interval.estimate == pytest.approx(1.2, abs=0.02)
    verdict = comparison.verdict()
    assert verdict.status == "fail" and verdict.kind == "regression" and verdict.limit == pytest.approx(1.10)
    assert comparison.headline.startswith("NEW is 1.20× OLD (95 % CI 1.") and comparison.headline.endswith(
        ": regression")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_but_equal_with_outlier_rounds_never_fails(seed: int) -> None:
    clock = FakeClock()
    rng = np.random.default_rng(seed)
    spikes_new, spikes_old = set(rng.choice(400, 40, replace=False)), set(rng.choice(400, 40, replace=False))
    noise = rng.uniform(-0.08, 0.08, 100_000)
    new = FakeRunner(clock, lambda i: (1 + noise[i]) * (4.0 if (i // 10) in spikes_new else 1.0))
    old = FakeRunner(clock, lambda i: (1 + noise[-i - 1]) * (4.0 if (i // 10) in spikes_old else 1.0))
    config = ABConfig(max_regression=0.10, min_seconds=1.0, max_seconds=10.0, round_seconds=0.01, seed=seed)
    comparison, _, _ = compare_runners(new, old, FEED, config, clock=clock)
    assert comparison.status in ("pass", "inconclusive")
    assert comparison.verdict().status != "fail"


def test_undecided_at_the_cap_is_inconclusive_with_the_reason() -> None:
    clock = FakeClock()
    # every other stretch of runs NEW is 16 % slower: ratios half 1.00, half 1.16, the interval straddles 1.10
    new = FakeRunner(clock, per_round(lambda r: 1.16 if r % 2 else 1.0))
    old = FakeRunner(clock, [1.0])
    config = ABConfig(max_regression=0.10, min_seconds=0.5, max_seconds=3.0, round_seconds=0.01, seed=3)
    comparison, _, _ = compare_runners(new, old, FEED, config, clock=clock)
    assert comparison.status == "inconclusive"
    assert "undecided at the cap (3 s)" in comparison.reason
    assert comparison.seconds >= 3.0
    assert comparison.verdict().status == "inconclusive"
    assert overall_status([comparison.verdict()]) == "inconclusive"


def test_round_order_is_shuffled_by_the_seed() -> None:
    def first_of_each_round(seed: int) -> list[str]:
        clock, log = FakeClock(), []

        def call(name: str) -> Callable[[], None]:
            def run() -> None:
                log.append(name)
                clock.advance_ms(1.0)

            return run

        interleaved({"new": call("new"), "old": call("old")}, rounds=40, round_seconds=0.0, warmup=1, min_runs=3,
                    max_runs=3, clock=clock, rng=random.Random(seed))
        rounds = log[4:]  # a cold and a warm-up run each first
        return [rounds[i] for i in range(0, len(rounds), 6)]

    a = first_of_each_round(11)
    assert a == first_of_each_round(11)  # same seed, same order
    assert a != first_of_each_round(12)
    assert {"new", "old"} == set(a)
    assert a != (["new", "old"] * 20) and a != (["old", "new"] * 20)  # not a fixed rotation
    clock = FakeClock()
    comparison, _, _ = compare_runners(FakeRunner(clock, [1.0]), FakeRunner(clock, [1.0]), FEED, FAST, clock=clock)
    assert comparison.seed == FAST.seed and comparison.to_json()["seed"] == FAST.seed  # recorded


def test_contention_is_read_from_proc_stat_and_summarised() -> None:
    text = "cpu  100 0 50 800 10 0 5 20 0 0\ncpu0 50 0 25 400 5 0 2 10 0 0\ncpu1 50 0 25 400 5 0 3 10 0 0\n"
    busy, steal, total = _proc_stat(text)
    assert (busy, steal, total) == (155.0, 20.0, 985.0)
    assert _proc_stat("intr 1 2 3\n") is None
    probe = ContentionProbe().start()
    contention = probe.stop()
    summary = contention.summary()
    assert "steal" in summary and ("MHz" in summary or "frequency n/a" in summary)
    assert set(contention.to_json()) >= {"load_start", "others_cpu_pct", "steal_pct", "freq_mhz_start", "round_cv"}


def test_contention_differences_name_what_changed() -> None:
    base = {"contention": {"others_cpu_pct": 3.0, "steal_pct": 0.0, "freq_mhz_start": 2100.0}}
    assert contention_differences(base, {"others_cpu_pct": 10.0, "steal_pct": 1.0, "freq_mhz_start": 2100.0}) == []
    diffs = contention_differences(base, {"others_cpu_pct": 52.0, "steal_pct": 9.0, "freq_mhz_start": 1500.0})
    assert len(diffs) == 3 and "52% of the CPUs now vs 3%" in diffs[0]
    old_style = {"environment": {"load_average": [0.1, 0.1, 0.1], "logical_cpus": 2}}  # no contention record
    assert "load 1.50 per CPU now vs 0.05" in contention_differences(old_style, {"load_start": [3.0], "cpus": 2})[0]
    assert contention_differences(base, None) == []
    assert contention_differences(base, {"others_cpu_pct": float("nan")}) == []


# ---------------------------------------------------------------------------------------------
# bench / gate / JSON baselines


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("ab")
    return compile_bundle(tmp, name="new"), compile_bundle(tmp, name="old")


def by_path(runners: dict[Path, FakeRunner]) -> Callable[..., FakeRunner]:
    def load(bundle: Path, *, threads: int | None = None) -> FakeRunner:
        return runners[Path(bundle)]

    return load


@pytest.mark.parametrize(("new_ms", "status", "code"), [(1.0, "pass", 0), (1.3, "fail", 1)])
def test_bench_with_a_baseline_bundle(bundles: tuple[Path, Path], tmp_path: Path, new_ms: float, status: str,
                                      code: int) -> None:
    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, [new_ms]), old_path: FakeRunner(clock, [1.0])})
    result = bench(new_path, baseline_bundle=old_path, max_regression="10%", ab=FAST, timer=clock, loader=loader,
                   budgets=["p90<=1s"])
    assert result.comparison is not None
    assert result.exit_code == code and result.status == status
    ab = [v for v in result.verdicts if v.kind == "regression"]
    assert len(ab) == 1 and ab[0].source == f"baseline bundle {old_path}"
    assert result.stats is not None and result.stats.p50 == pytest.approx(new_ms)  # NEW's samples from the rounds
    data = result.to_json()
    assert data["comparison"]["headline"] == result.comparison.headline
    assert data["comparison"]["rounds"] == result.comparison.interval.rounds and "rule" in data["comparison"]
    assert data["contention"] is not None and data["verdict"]["exit_code"] == code
    xml = junit_xml(result.verdicts)
    assert result.comparison.headline in xml and "rule: pass if" in xml
    pytest.importorskip("jsonschema")
    validate_bench_json(json.loads(json.dumps(data)))  # the shipped schema knows the new keys and statuses


def test_bench_inconclusive_is_exit_4_and_skipped_in_junit(bundles: tuple[Path, Path]) -> None:
    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, per_round(lambda r: 1.16 if r % 2 else 1.0)),
                      old_path: FakeRunner(clock, [1.0])})
    config = ABConfig(min_seconds=0.5, max_seconds=2.0, round_seconds=0.01, seed=1)
    result = bench(new_path, baseline_bundle=old_path, ab=config, timer=clock, loader=loader)
    assert result.status == "inconclusive" and result.exit_code == 4 and not result.passed
    root = ET.fromstring(junit_xml(result.verdicts).split("\n", 1)[1])
    case = root.find(".//testcase")
    assert case is not None and case.find("skipped") is not None and case.find("failure") is None
    assert "inconclusive" in case.find("skipped").get("message", "")  # type: ignore[union-attr]


def test_bundles_with_different_inputs_are_refused(bundles: tuple[Path, Path]) -> None:
    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, [1.0]),
                      old_path: FakeRunner(clock, [1.0], input_specs=[TensorSpec("x", ("batch", 32))])})
    with pytest.raises(BadInputError, match="different inputs") as err:
        bench(new_path, baseline_bundle=old_path, ab=FAST, timer=clock, loader=loader)
    assert err.value.exit_code == 2


def test_an_emulated_runner_is_not_ab_timed(bundles: tuple[Path, Path]) -> None:
    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, [1.0]), old_path: FakeRunner(clock, [1.0], provenance="emulated")})
    with pytest.raises(ToolchainMissingError, match="OLD runs as emulated"):
        bench(new_path, baseline_bundle=old_path, ab=FAST, timer=clock, loader=loader)


@pytest.mark.parametrize("kwargs", [
    {"max_seconds": float("nan")}, {"max_seconds": float("inf")}, {"max_seconds": -1.0}, {"max_seconds": 0},
    {"max_seconds": 1e9}, {"max_seconds": "10"}, {"max_seconds": True}, {"max_regression": float("nan")},
    {"max_regression": float("inf")}, {"max_regression": -0.1}, {"max_regression": 1e6}, {"max_regression": 0.0},
    {"max_regression": "10%"}, {"confidence": 1.0}, {"confidence": float("nan")}, {"min_rounds": 0},
    {"max_rounds": 10**9}, {"min_rounds": 2.5}, {"seed": "x"}, {"round_seconds": -0.1}, {"min_seconds": float("inf")},
])
def test_hostile_ab_settings_are_one_line_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(BadInputError) as err:
        ABConfig(**kwargs)
    assert err.value.exit_code == 2 and "\n" not in err.value.one_line()


@pytest.mark.parametrize("value", ["nan%", "inf%", "-5%", "1e9%", "ten", "0%"])
def test_hostile_max_regression_with_a_baseline_bundle(bundles: tuple[Path, Path], value: str) -> None:
    new_path, old_path = bundles
    with pytest.raises(BadInputError) as err:
        bench(new_path, baseline_bundle=old_path, max_regression=value,
              loader=fake_loader(FakeRunner(FakeClock(), [1])))
    assert err.value.exit_code == 2 and "--max-regression" in err.value.one_line()


def test_baseline_bundle_must_be_a_bundle_and_not_with_a_json(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    new_path, _ = bundles
    with pytest.raises(BadInputError, match="no such bundle"):
        bench(new_path, baseline_bundle=tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="not a bundle directory"):
        bench(new_path, baseline_bundle=tmp_path / "file")
    with pytest.raises(BadInputError, match="a bundle must be a path"):
        bench(new_path, baseline_bundle=42)  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="either --baseline"):
        bench(new_path, baseline_bundle=new_path, baseline={"schema": "edgekit.bench/1"})


def test_json_baseline_under_other_contention_is_inconclusive_unless_forced(bundles: tuple[Path, Path]) -> None:
    new_path, _ = bundles
    clock = FakeClock()
    result = bench(new_path, iters=20, warmup=0, timer=clock, loader=fake_loader(FakeRunner(clock, [1.0])))
    base = json.loads(json.dumps(result.to_json()))
    base["contention"] = {**(base["contention"] or {}), "others_cpu_pct": 0.0}
    now = {**(result.contention.to_json() if result.contention else {}), "others_cpu_pct": 60.0}
    [verdict] = check_against_baseline(result, base, max_regression="10%", contention=now)
    assert verdict.status == "inconclusive" and "contention differs" in verdict.note
    assert "60% of the CPUs now vs 0%" in verdict.note
    [forced] = check_against_baseline(result, base, max_regression="10%", contention=now, force=True)
    assert forced.status == "pass" and "forced despite different contention" in forced.note
    [same] = check_against_baseline(result, base, max_regression="10%", contention={**now, "others_cpu_pct": 5.0})
    assert same.status == "pass"


def test_gate_runs_the_ab_check_on_a_bundle_without_stored_budgets(bundles: tuple[Path, Path]) -> None:
    from edgekit.checks.gate import gate

    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, [1.5]), old_path: FakeRunner(clock, [1.0])})
    result = gate(new_path, baseline_bundle=old_path, max_regression="10%", ab=FAST, timer=clock, loader=loader)
    assert result.status == "fail" and result.exit_code == 1
    assert result.bench is not None and result.bench.comparison is not None
    assert result.bench.comparison.status == "regression"
    clock2 = FakeClock()
    loader2 = by_path({new_path: FakeRunner(clock2, per_round(lambda r: 1.16 if r % 2 else 1.0)),
                       old_path: FakeRunner(clock2, [1.0])})
    undecided = gate(new_path, baseline_bundle=old_path, ab=ABConfig(min_seconds=0.2, max_seconds=1.0,
                                                                     round_seconds=0.01, seed=2),
                     timer=clock2, loader=loader2)
    assert undecided.status == "inconclusive" and undecided.exit_code == 4
    assert undecided.to_json()["verdict"]["passed"] is False


@pytest.mark.parametrize("value", ["nan%", "inf%", "-1%", "0%", "1e9%", 10, "ten"])
def test_recipe_target_max_regression_is_checked(value: Any) -> None:
    from edgekit.recipe import TargetSettings

    assert TargetSettings(name="cpu", baseline_bundle="main/cpu", max_regression="10%").max_regression == "10%"
    with pytest.raises(BadInputError, match="max_regression") as err:
        TargetSettings(name="cpu", baseline_bundle="main/cpu", max_regression=value)
    assert err.value.exit_code == 2


def test_baseline_bundle_with_a_remote_device_is_refused_not_run_here(bundles: tuple[Path, Path]) -> None:
    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, [1.0]), old_path: FakeRunner(clock, [1.0])})
    with pytest.raises(BadInputError, match="not supported with --device") as err:
        bench(new_path, baseline_bundle=old_path, device="ssh://ci@board", ab=FAST, timer=clock, loader=loader)
    assert err.value.exit_code == 2 and clock.now == 0  # nothing timed on this host instead


@pytest.mark.parametrize(("threads", "warned"), [(None, True), (2, True), (1, False)])
def test_ab_warns_about_multi_thread_sessions(bundles: tuple[Path, Path], threads: int | None, warned: bool) -> None:
    new_path, old_path = bundles
    clock = FakeClock()
    loader = by_path({new_path: FakeRunner(clock, [1.0]), old_path: FakeRunner(clock, [1.0])})
    result = bench(new_path, baseline_bundle=old_path, ab=FAST, timer=clock, loader=loader, threads=threads)
    assert any("pass --threads 1" in w for w in result.warnings) is warned
