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


IMAGE = [TensorSpec("x", ("batch", 3, "height", "width"))]  # a detector exported without sizes (PP-OCR det)


def test_a_dynamic_dim_without_a_size_is_refused_never_filled_with_1(bundle: Path) -> None:
    runner = FakeRunner(FakeClock(), [1.0], input_specs=IMAGE)
    with pytest.raises(BadInputError) as info:
        bench(bundle, warmup=1, iters=5, timer=FakeClock(), loader=fake_loader(runner))
    assert info.value.exit_code == 2 and runner.calls == 0
    assert "input 'x' dim 2 ('height'); input 'x' dim 3 ('width') have no size" in str(info.value)
    assert "--input-shape x:1,3,<height>,<width>" in str(info.value)


def test_the_shapes_fed_are_part_of_the_figure(bundle: Path) -> None:
    clock = FakeClock()
    runner = FakeRunner(clock, [13.7], input_specs=IMAGE)
    result = bench(bundle, warmup=1, iters=5, timer=clock, loader=fake_loader(runner),
                   input_shapes=["x:1,3,320,320"], budgets=["p90<=200ms"])
    assert set(runner.shapes) == {(1, 3, 320, 320)}
    assert result.input_shapes == {"x": [1, 3, 320, 320]}
    data = result.to_json()
    assert data["input_shapes"] == {"x": [1, 3, 320, 320]} and data["latency_ms"]["p50"] == pytest.approx(13.7)


def test_given_shapes_must_fit_the_model() -> None:
    runner = FakeRunner(FakeClock(), [1.0], input_specs=IMAGE)
    with pytest.raises(BadInputError, match="--input-shape: the model has no input 'images'"):
        latency.prepare_inputs(runner, shapes=["images:1,3,8,8"])
    with pytest.raises(BadInputError, match="dim 1 is fixed at 3"):
        latency.prepare_inputs(runner, shapes=["x:1,4,8,8"])
    feed = latency.prepare_inputs(runner, batch=2, shapes=["x:batch,3,8,16"])  # batch left to --batch
    assert latency.feed_shapes(feed) == {"x": [2, 3, 8, 16]}


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
