"""Timing loop, statistics, stability and fingerprint of edgekit.checks.latency (no sleeps: fake clock)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.checks import latency
from edgekit.checks.latency import BenchConfig, LatencyStats, bench, measure_runner, time_runs
from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.specs import TensorSpec
from tests._bench_helpers import FakeClock, FakeRunner, compile_bundle, edit_manifest, fake_loader


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("lat"))


def test_statistics_follow_their_definitions() -> None:
    rng = np.random.default_rng(1)
    samples = rng.gamma(4.0, 0.5, size=333)
    s = LatencyStats.from_samples(samples, batch=8)
    assert s.n == 333
    assert s.min == pytest.approx(samples.min()) and s.max == pytest.approx(samples.max())
    for q, got in ((50, s.p50), (90, s.p90), (95, s.p95), (99, s.p99)):
        assert got == pytest.approx(np.percentile(samples, q))
    assert s.cv == pytest.approx(samples.std(ddof=1) / samples.mean())
    assert s.robust_cv == pytest.approx(1.4826 * np.median(np.abs(samples - np.median(samples))) / np.median(samples))
    assert s.throughput == pytest.approx(8 * 1000 / samples.mean())
    assert s.min <= s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max


def test_loop_times_only_the_runner_call_with_inputs_prepared_once() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [2.0])
    cold, samples, stability = measure_runner(runner, BenchConfig(warmup=3, iters=25), timer=clock)
    assert runner.calls == 1 + 3 + 25
    assert samples == [pytest.approx(2.0)] * 25 and cold == pytest.approx(2.0)
    assert len(set(runner.seen_inputs)) == 1  # the same prepared dict every run
    assert stability.stable and stability.rounds == 1


def test_cold_run_is_reported_apart_from_steady_state() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, lambda i: 50.0 if i == 0 else 1.0)
    cold, samples, _ = measure_runner(runner, BenchConfig(warmup=2, iters=10), timer=clock)
    assert cold == pytest.approx(50.0)
    assert max(samples) == pytest.approx(1.0)


def test_noisy_timer_extends_to_the_cap_and_warns() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [1.0, 9.0])  # alternating: spread ~ 100 %
    config = BenchConfig(warmup=0, iters=10, cv_threshold=0.1, max_extend_rounds=3)
    samples, stability = time_runs(lambda: runner.run({"x": np.zeros((1, 16), np.float32)}), config, timer=clock)
    assert not stability.stable
    assert stability.rounds == stability.max_rounds == 4
    assert len(samples) == stability.iterations == 40
    assert "noisy" in stability.warning and stability.cv > 0.1


def test_transient_noise_is_outgrown_by_extension() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, lambda i: (1.0, 9.0)[i % 2] if i < 8 else 2.0)  # a noisy start, then quiet
    config = BenchConfig(warmup=0, iters=10, cv_threshold=0.1, max_extend_rounds=5)
    samples, stability = time_runs(lambda: runner.run({"x": np.zeros((1, 16), np.float32)}), config, timer=clock)
    assert stability.stable
    assert 1 < stability.rounds < stability.max_rounds
    assert len(samples) == 10 * stability.rounds


def test_classic_cv_metric_flags_a_single_outlier_that_robust_cv_ignores() -> None:
    def durations(i: int) -> float:
        return 100.0 if i == 5 else 1.0

    robust = time_runs(lambda: None, BenchConfig(iters=50), timer=_clock_for(durations))[1]
    classic = time_runs(lambda: None, BenchConfig(iters=50, stability_metric="cv", max_extend_rounds=0),
                        timer=_clock_for(durations))[1]
    assert robust.stable and robust.rounds == 1
    assert not classic.stable and classic.metric == "cv"


def _clock_for(durations):  # a timer whose consecutive start/stop pairs differ by durations(i) ms
    state = {"calls": 0, "now": 0}

    def timer() -> int:
        call = state["calls"]
        state["calls"] += 1
        if call % 2 == 1:
            state["now"] += round(durations(call // 2) * 1e6)
        return state["now"]

    return timer


def test_duration_mode_stops_after_the_duration() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [3.0])
    samples, stability = time_runs(lambda: runner.run({"x": np.zeros((1, 16), np.float32)}),
                                   BenchConfig(duration=0.03), timer=clock)
    assert len(samples) == 10 and stability.stable


def test_batch_fills_the_dynamic_batch_dim_and_scales_throughput(bundle: Path) -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [2.0])
    result = bench(bundle, warmup=1, iters=5, batch=4, timer=clock, loader=fake_loader(runner))
    assert set(runner.shapes) == {(4, 16)}
    assert result.stats is not None and result.stats.throughput == pytest.approx(4 * 1000 / 2.0)


def test_batch_on_a_fixed_batch_model_is_refused() -> None:
    runner = FakeRunner(FakeClock(), [1.0], input_specs=[TensorSpec("x", (1, 16))])
    with pytest.raises(BadInputError, match="fixed batch"):
        latency.prepare_inputs(runner, batch=2)


def test_bad_config_is_refused() -> None:
    with pytest.raises(BadInputError):
        BenchConfig(iters=10, duration=1.0)
    with pytest.raises(BadInputError):
        BenchConfig(batch=0)


def test_cpu_flags_parsed_for_x86_and_arm() -> None:
    x86 = latency.cpu_info("model name\t: Some Xeon\nflags\t\t: fpu sse2 avx2 avx512_vnni amx_int8 amx_tile ht\n")
    assert x86["model"] == "Some Xeon" and x86["int8_flags"] == ["amx_int8", "amx_tile", "avx2", "avx512_vnni"]
    arm = latency.cpu_info("processor\t: 0\nFeatures\t: fp asimd evtstrm asimddp i8mm\nCPU part\t: 0xd0b\n")
    assert arm["int8_flags"] == ["asimd", "asimddp", "i8mm"]


def test_fingerprint_and_relevant_differences() -> None:
    a = latency.environment_fingerprint(threads=2, bundle={"target": "cpu", "adapter": "onnxruntime", "sha256": "x"})
    for key in ("cpu_model", "cpu_flags", "usable_cpus", "os", "python", "edgekit", "tool_versions", "bundle_sha256"):
        assert key in a
    b = dict(a, threads=4, bundle_sha256="y", governor=None)
    assert set(latency.fingerprint_differences(a, b)) == {"threads"}  # a new bundle is the point of comparing


def test_real_bundle_bench(bundle: Path) -> None:
    result = bench(bundle, warmup=2, iters=20, threads=1)
    assert result.provenance == "measured" and result.stats is not None and result.stats.n >= 20
    assert result.load_ms is not None and result.cold_ms is not None and result.compile_ms is None
    assert result.peak_rss_mb and result.peak_rss_mb > 0
    assert result.environment["bundle_sha256"] == result.bundle["sha256"]
    assert result.environment["threads"] == 1


def test_npu_bundle_without_device_reports_its_estimate(tmp_path: Path) -> None:
    npu = compile_bundle(tmp_path, backend="null")
    edit_manifest(npu, target="ascend310", run_provenance="emulated",
                  estimate={"latency_ms": 3.5, "assumptions": ["roofline, 22 TOPS int8"], "provenance": "estimated"})
    result = bench(npu, budgets=["p90<=5ms", "p99<3ms"], loader=_no_loader)
    assert result.provenance == "estimated" and result.stats is None
    assert [v.status for v in result.verdicts] == ["pass", "fail"]
    assert {v.provenance for v in result.verdicts} == {"estimated"}
    assert result.exit_code == 1


def test_emulated_time_is_never_device_latency(tmp_path: Path) -> None:
    npu = compile_bundle(tmp_path, backend="null")
    edit_manifest(npu, target="ascend310", run_provenance="emulated", estimate=None)
    with pytest.raises(ToolchainMissingError, match="emulated"):
        bench(npu, iters=5)
    result = bench(npu, warmup=1, iters=5, budgets=["p90<=10s"], allow_emulated=True)
    assert result.provenance == "emulated"
    assert any("host emulation time, not device latency" in w for w in result.warnings)
    assert result.verdicts[0].status == "not-run" and result.exit_code == 4


def test_tampered_bundle_is_refused(tmp_path: Path) -> None:
    tampered = compile_bundle(tmp_path)
    (tampered / "source.onnx").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match="sha256"):
        bench(tampered, iters=5)


def _no_loader(*_a, **_k):
    raise AssertionError("an estimated bench must not load the bundle")


def test_extension_stops_once_a_slow_run_has_taken_long_enough() -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [1000.0, 9000.0])  # seconds per run, noisy: extending would take minutes
    config = BenchConfig(warmup=0, iters=10, max_extend_rounds=4, max_extend_seconds=60.0)
    samples, stability = time_runs(lambda: runner.run({"x": np.zeros((1, 16), np.float32)}), config, timer=clock)
    assert stability.rounds == 2 and len(samples) == 20  # 50 s after round 1 (< 60 s), 100 s after round 2
    assert not stability.stable and stability.warning


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
    timed = latency.interleaved(calls, rounds=3, round_seconds=0.0, warmup=2, min_runs=2, clock=clock)
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
    timed = latency.interleaved(calls, rounds=2, round_seconds=0.02, warmup=1, max_runs=15, caps={"capped": 3},
                                clock=clock)
    assert [len(r) for r in timed["fast"].rounds] == [15, 15]  # 20 ms / 1 ms = 20, capped by max_runs
    assert [len(r) for r in timed["slow"].rounds] == [4, 4]  # 20 ms / 5 ms
    assert [len(r) for r in timed["capped"].rounds] == [3, 3]


def test_interleaved_rejects_a_hopeless_candidate_after_warm_up() -> None:
    clock, log = _Clock(), []
    calls = {"fast": _candidate(clock, log, "fast", 1.0), "tvm": _candidate(clock, log, "tvm", 500.0)}
    timed = latency.interleaved(calls, rounds=2, round_seconds=0.01, warmup=1, reject_ratio=10.0, clock=clock)
    assert "slower than the fastest" in timed["tvm"].rejected and not timed["fast"].rejected
    assert timed["tvm"].samples == [] and timed["tvm"].round_medians == [None, None]
    assert log.count("tvm") == 2  # cold + warm-up only
    assert timed["tvm"].warm_ms == 500.0


def test_interleaved_paired_ratios_and_time_budget() -> None:
    clock, log = _Clock(), []
    calls = {"a": _candidate(clock, log, "a", [1.0] * 3 + [1.0, 1.0, 4.0, 4.0] + [1.0] * 100),
             "b": _candidate(clock, log, "b", 2.0)}
    timed = latency.interleaved(calls, rounds=100, min_rounds=4, max_seconds=0.03, round_seconds=0.0,
                                warmup=2, min_runs=2, clock=clock)
    n = len(timed["a"].rounds)
    assert 4 <= n < 100 and n == len(timed["b"].rounds)  # stopped on the time budget, not the round cap
    ratios = latency.paired_ratios(timed["a"], timed["b"])
    assert ratios[:2] == [0.5, 2.0] and all(r == 0.5 for r in ratios[2:])
