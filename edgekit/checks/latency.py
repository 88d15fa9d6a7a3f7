"""Latency that a CI can trust: timing loop, statistics, stability and the environment it ran in.

Only the runner call is inside the timed region (inputs are prepared before the loop), the clock
is monotonic (`time.perf_counter_ns`, injectable for tests), the first (cold) inference and the
load/compile time are reported apart from the steady state, and every result carries a
fingerprint of the machine so two results are only compared when they are comparable.

A bundle whose device is not here is never timed as if it were: with an estimate in its manifest
the result is that estimate (provenance `estimated`, no loop); host emulation is timed only when
asked for and is labelled "host emulation time, not device latency". This module imports no torch
and no CLI library: the standalone runtime (`python -m edgekit.runtime`) uses it as is.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import BadInputError, ToolchainMissingError

if TYPE_CHECKING:
    from edgekit.adapters.base import Runner
    from edgekit.artifact import Artifact
    from edgekit.checks.budgets import Budget, BudgetVerdict

SCHEMA = "edgekit.bench/1"
STATISTICS = ("min", "mean", "p50", "p90", "p95", "p99", "max")
EMULATION_NOTE = "host emulation time, not device latency"
DEFAULT_ITERS = 100
DEFAULT_MAX_SECONDS = 10.0  # without --iters/--duration: 100 runs, or this long if fewer fit
Timer = Callable[[], int]

# /proc/cpuinfo flags that decide how fast INT8 (and BF16) kernels can be on this CPU.
INT8_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
    "amx_bf16", "avxvnniint8",
    # ARM (`Features` line)
    "asimd", "asimddp", "asimdhp", "dotprod", "i8mm", "bf16", "sve", "sve2", "sme",
)


@dataclass(frozen=True)
class BenchConfig:
    """How a bench runs; stored with the result so a figure says how it was taken."""

    warmup: int = 10
    iters: int | None = None  # timed runs per round (None with duration None: 100, or ~10 s)
    duration: float | None = None  # seconds per round instead of a count
    threads: int | None = None
    batch: int = 1
    cv_threshold: float = 0.10  # spread above this is "noisy": extend the run
    stability_metric: str = "robust_cv"  # robust_cv (MAD/median, default) or cv (std/mean)
    max_extend_rounds: int = 4  # a noisy run grows to at most (1 + this) rounds
    max_extend_seconds: float = 60.0  # ... and no extra round starts once this much has been timed
    min_iters: int = 5
    max_iters: int = 100_000
    allow_emulated: bool = False

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise BadInputError("must be >= 0", path="--warmup")
        if self.iters is not None and self.iters < 1:
            raise BadInputError("must be >= 1", path="--iters")
        if self.iters is not None and self.duration is not None:
            raise BadInputError("give either --iters or --duration, not both", path="--iters")
        if self.duration is not None and not self.duration > 0:
            raise BadInputError("must be > 0 seconds", path="--duration")
        if self.batch < 1:
            raise BadInputError("must be >= 1", path="--batch")
        if self.threads is not None and self.threads < 1:
            raise BadInputError("must be >= 1", path="--threads")
        if not self.cv_threshold > 0:
            raise BadInputError("must be > 0", path="--cv-threshold")
        if self.stability_metric not in ("robust_cv", "cv"):
            raise BadInputError(f"unknown stability metric {self.stability_metric!r}", path="stability_metric",
                                hint="robust_cv or cv")
        if self.max_extend_rounds < 0:
            raise BadInputError("must be >= 0", path="max_extend_rounds")


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of timed runs, in milliseconds (throughput in items per second)."""

    n: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float
    cv: float  # std / mean: the classic coefficient of variation (one preemption can blow it up)
    robust_cv: float  # 1.4826 * MAD / median: spread of the bulk of the runs (outliers show in p99/max)
    throughput: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], *, batch: int = 1) -> LatencyStats:
        arr = np.asarray(samples_ms, dtype=np.float64)
        if arr.size == 0:
            raise BadInputError("no timed runs to summarise")
        mean = float(arr.mean())
        std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
        p50, p90, p95, p99 = (float(v) for v in np.percentile(arr, [50, 90, 95, 99]))
        mad = float(np.median(np.abs(arr - p50)))
        return cls(
            n=int(arr.size), min=float(arr.min()), mean=mean, p50=p50, p90=p90, p95=p95, p99=p99,
            max=float(arr.max()), std=std, cv=std / mean if mean > 0 else 0.0,
            robust_cv=1.4826 * mad / p50 if p50 > 0 else 0.0,
            throughput=batch * 1000.0 / mean if mean > 0 else math.inf,
        )

    def get(self, statistic: str) -> float:
        if statistic not in STATISTICS:
            raise BadInputError(f"unknown statistic {statistic!r}", hint=f"one of {', '.join(STATISTICS)}")
        return float(getattr(self, statistic))

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("n", *STATISTICS, "std", "cv", "robust_cv", "throughput")}


@dataclass(frozen=True)
class Stability:
    """Whether the run was quiet enough; a noisy run is extended, then flagged, never hidden."""

    cv: float  # the spread judged (`metric`)
    threshold: float
    stable: bool
    rounds: int
    max_rounds: int
    iterations: int
    warning: str = ""
    metric: str = "robust_cv"

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "cv": self.cv, "threshold": self.threshold, "stable": self.stable,
                "rounds": self.rounds, "max_rounds": self.max_rounds, "iterations": self.iterations,
                "warning": self.warning}


@dataclass
class BenchResult:
    """One bench: figures with their provenance, the environment, and the budget verdicts."""

    provenance: str  # measured | emulated | estimated
    bundle: dict[str, Any]
    config: BenchConfig
    environment: dict[str, Any]
    stats: LatencyStats | None = None
    samples_ms: list[float] = field(default_factory=list)
    stability: Stability | None = None
    cold_ms: float | None = None
    load_ms: float | None = None
    compile_ms: float | None = None
    peak_rss_mb: float | None = None
    memory_method: str = ""
    estimate: dict[str, Any] | None = None  # LatencyEstimate JSON when provenance is estimated
    verdicts: list[BudgetVerdict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))

    def value(self, statistic: str) -> float | None:
        """A statistic in ms; for an estimate, the single estimated figure stands for every statistic."""
        if self.stats is not None:
            if statistic in STATISTICS or statistic == "std":
                return float(getattr(self.stats, statistic))
            return statistic_value(self.samples_ms, statistic)
        if self.estimate is not None and statistic != "std":
            return float(self.estimate["latency_ms"])
        return None

    @property
    def status(self) -> str:
        from edgekit.checks.budgets import overall_status

        return overall_status(self.verdicts)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def exit_code(self) -> int:
        """0 every budget holds, 1 one failed, 4 a budget could not be checked here (no device)."""
        return {"pass": 0, "fail": 1, "not-run": 4}[self.status]

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({
            "schema": SCHEMA,
            "created_at": self.created_at,
            "provenance": self.provenance,
            "bundle": self.bundle,
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
            "latency_ms": self.stats.to_json() if self.stats else None,
            "samples_ms": self.samples_ms,
            "stability": self.stability.to_json() if self.stability else None,
            "cold_ms": self.cold_ms,
            "load_ms": self.load_ms,
            "compile_ms": self.compile_ms,
            "memory": {"peak_rss_mb": self.peak_rss_mb, "method": self.memory_method},
            "estimate": self.estimate,
            "environment": self.environment,
            "budgets": [v.to_json() for v in self.verdicts],
            "verdict": {"status": self.status, "passed": self.passed, "exit_code": self.exit_code},
            "warnings": self.warnings,
            "notes": self.notes,
        })


def statistic_value(samples_ms: Sequence[float], statistic: str) -> float | None:
    """Any statistic of raw samples: min/mean/max/std/median or a percentile `pNN` (linear interpolation)."""
    if not len(samples_ms):
        return None
    arr = np.asarray(samples_ms, dtype=np.float64)
    if statistic in ("min", "mean", "max"):
        return float(getattr(arr, statistic)())
    if statistic == "std":
        return float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    if statistic == "median":
        statistic = "p50"
    if statistic.startswith("p"):
        try:
            q = float(statistic[1:])
        except ValueError:
            q = -1.0
        if 0 < q < 100:
            return float(np.percentile(arr, q))
    raise BadInputError(f"unknown statistic {statistic!r}", hint="min, mean, max, std, median or pNN")


# ---------------------------------------------------------------------------------------------
# Environment fingerprint


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_info(cpuinfo_text: str | None = None) -> dict[str, Any]:
    """CPU model and the INT8/BF16-relevant flags (from /proc/cpuinfo where there is one)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    text = cpuinfo_text if cpuinfo_text is not None else (_read("/proc/cpuinfo") or "")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "int8_flags": sorted(f for f in flags if f in INT8_FLAGS)}


def environment_fingerprint(
    *, threads: int | None = None, bundle: Mapping[str, Any] | None = None, versions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What a latency figure depends on besides the model: CPU, threads, governor, OS, versions."""
    from edgekit import __version__
    from edgekit.artifact import tool_versions

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    physical = None
    with contextlib.suppress(Exception):
        import psutil

        physical = psutil.cpu_count(logical=False)
    cpu = cpu_info()
    bundle = dict(bundle or {})
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {
        "cpu_model": cpu["model"],
        "cpu_flags": cpu["int8_flags"],
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical,
        "usable_cpus": usable,
        "threads": threads,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "load_average": load,  # 1/5/15-min load when the bench started: a busy host explains noise
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "os": platform.platform(),
        "python": platform.python_version(),
        "edgekit": __version__,
        "tool_versions": dict(versions) if versions is not None else tool_versions(),
        "bundle_tool_versions": bundle.get("tool_versions", {}),
        "target": bundle.get("target"),
        "adapter": bundle.get("adapter"),
        "precision": bundle.get("precision_used") or bundle.get("precision"),
        "bundle_sha256": bundle.get("sha256"),
    }


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS", "KMP_AFFINITY",
              "OMP_PROC_BIND", "GOMP_CPU_AFFINITY")

# Fields that make two latency figures incomparable when they differ (a new bundle sha is the point).
RELEVANT_FIELDS = ("cpu_model", "cpu_flags", "machine", "threads", "usable_cpus", "target", "adapter", "governor")


def fingerprint_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Relevant fields that differ between two fingerprints (an unreadable governor is not a difference)."""
    diffs = {}
    for key in RELEVANT_FIELDS:
        va, vb = a.get(key), b.get(key)
        if key == "governor" and (va is None or vb is None):
            continue
        if va != vb:
            diffs[key] = (va, vb)
    return diffs


# ---------------------------------------------------------------------------------------------
# Memory


def peak_rss_mb() -> tuple[float | None, str]:
    """Peak resident memory of this process (includes Python and the backend), with the method."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return peak * scale / 2**20, "getrusage ru_maxrss (process peak)"
    except (ImportError, OSError):
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20, "psutil rss at end (not a peak)"
    except Exception:
        return None, "not measurable here"


# ---------------------------------------------------------------------------------------------
# Timing loop


def prepare_inputs(runner: Runner, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for the runner, outside the timed loop; `batch` fills dynamic batch dims."""
    from edgekit.onnxio import random_inputs

    dims: dict[str, int] = {}
    for spec in runner.input_specs:
        if not spec.shape:
            continue
        first = spec.shape[0]
        if isinstance(first, int) and first >= 0:
            if batch != 1 and first != batch:
                raise BadInputError(
                    f"input {spec.name!r} has a fixed batch of {first}; --batch {batch} needs a dynamic batch dim",
                    path="--batch", hint="recompile with a dynamic batch or use --input-shape to fix it to the batch",
                )
        else:
            dims[str(first)] = batch
    return random_inputs(runner.input_specs, seed=seed, dims=dims)


def _time_once(call: Callable[[], Any], timer: Timer) -> float:
    start = timer()
    call()
    return (timer() - start) / 1e6


def time_runs(
    call: Callable[[], Any],
    config: BenchConfig,
    *,
    timer: Timer = time.perf_counter_ns,
    per_run_ms: float | None = None,
) -> tuple[list[float], Stability]:
    """Timed runs in rounds; while the CV stays above the threshold, add rounds up to the cap."""
    iters, duration = config.iters, config.duration
    if iters is None and duration is None:
        if per_run_ms is not None and per_run_ms * DEFAULT_ITERS > DEFAULT_MAX_SECONDS * 1000:
            duration = DEFAULT_MAX_SECONDS
        else:
            iters = DEFAULT_ITERS
    max_rounds = 1 + config.max_extend_rounds
    samples: list[float] = []
    rounds = 0
    cv = 0.0
    while True:
        rounds += 1
        round_ms = 0.0
        count = 0
        while len(samples) < config.max_iters:
            if iters is not None and count >= iters:
                break
            if duration is not None and round_ms >= duration * 1000 and count >= config.min_iters:
                break
            sample = _time_once(call, timer)
            samples.append(sample)
            round_ms += sample
            count += 1
        cv = getattr(LatencyStats.from_samples(samples), config.stability_metric)
        if cv <= config.cv_threshold or rounds >= max_rounds or len(samples) >= config.max_iters:
            break
        if sum(samples) >= config.max_extend_seconds * 1000:
            break  # a slow model: more rounds would cost minutes; say it is noisy instead
    stable = cv <= config.cv_threshold
    warning = ""
    if not stable:
        warning = (f"noisy run: {config.stability_metric} {cv:.1%} > {config.cv_threshold:.0%} after {rounds} "
                   f"round(s), {len(samples)} runs; treat the figures with care (quiet the machine, pin threads)")
    return samples, Stability(cv, config.cv_threshold, stable, rounds, max_rounds, len(samples), warning,
                              config.stability_metric)


def measure_runner(
    runner: Runner, config: BenchConfig, *, timer: Timer = time.perf_counter_ns
) -> tuple[float, list[float], Stability]:
    """Cold first run, untimed warm-up, then timed rounds. Returns (cold_ms, samples_ms, stability)."""
    from edgekit.adapters.base import Runner

    inputs = prepare_inputs(runner, config.batch)
    cold = _time_once(lambda: runner.run(inputs), timer)  # `run` validates names/shapes: once, here
    # Later runs skip the ~2 µs validation (it is edgekit's, not the model's) unless `run` is overridden.
    run = runner._run_impl if type(runner).run is Runner.run else runner.run

    def call() -> Any:
        return run(inputs)

    warm_total = 0.0
    for _ in range(config.warmup):
        warm_total += _time_once(call, timer)
    per_run = warm_total / config.warmup if config.warmup else cold
    samples, stability = time_runs(call, config, timer=timer, per_run_ms=per_run)
    return cold, samples, stability


# ---------------------------------------------------------------------------------------------
# Side by side: several callables timed in interleaved rounds (compile --backend auto, precision
# auto, quantize's speed verdict and benchmarks/ all use this one loop)


@dataclass
class InterleavedTiming:
    """Samples (ms) of one candidate, kept per round so paired per-round ratios can be computed."""

    rounds: list[list[float]] = field(default_factory=list)
    cold_ms: float | None = None
    warm_ms: float | None = None
    rejected: str = ""  # why it was not timed in the rounds (too slow after warm-up)

    @property
    def samples(self) -> list[float]:
        return [s for r in self.rounds for s in r]

    @property
    def round_medians(self) -> list[float | None]:
        """Median of each round (None where the candidate did not run in that round)."""
        return [float(np.median(r)) if r else None for r in self.rounds]

    @property
    def median_ms(self) -> float | None:
        samples = self.samples
        return float(np.median(samples)) if samples else None


def paired_ratios(a: InterleavedTiming, b: InterleavedTiming) -> list[float]:
    """a/b of the per-round medians, for every round both ran in (< 1: a was faster in that round)."""
    pairs = zip(a.round_medians, b.round_medians, strict=False)
    return [x / y for x, y in pairs if x is not None and y is not None and y > 0]


def interleaved(
    calls: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 5,
    round_seconds: float = 0.3,
    warmup: int = 2,
    min_runs: int = 1,
    max_runs: int = 50,
    caps: Mapping[str, int] | None = None,
    reject_ratio: float | None = None,
    min_rounds: int | None = None,
    max_seconds: float | None = None,
    clock: Timer = time.perf_counter_ns,
) -> dict[str, InterleavedTiming]:
    """Time several callables side by side: a cold run, `warmup` runs, then rounds of every candidate in turn.

    Why: on a shared machine, timing candidates one after another hands a busy spell to whichever ran
    then; in rounds (order rotating each round) the spell hurts every candidate alike, and per-round
    medians give paired ratios. In a round a candidate runs `round_seconds / warm-up time` times, kept
    within [`min_runs`, `max_runs`] and its `caps` entry (untuned TVM: a run or two). With
    `reject_ratio`, a candidate that many times slower than the fastest after warm-up is not timed in
    the rounds (`rejected` says why). Up to `rounds` rounds; with `max_seconds`, rounds stop once that
    much time has passed and at least `min_rounds` (default: `rounds`) have run. `clock` returns ns.
    """
    caps = dict(caps or {})
    timed = {name: InterleavedTiming() for name in calls}
    for name, call in calls.items():
        t0 = clock()
        call()
        t = timed[name]
        t.cold_ms = (clock() - t0) / 1e6
        n_warm = max(0, min(warmup, caps.get(name, warmup)))
        if n_warm:
            t0 = clock()
            for _ in range(n_warm):
                call()
            t.warm_ms = (clock() - t0) / 1e6 / n_warm
        else:
            t.warm_ms = t.cold_ms
    active = list(calls)
    if reject_ratio is not None and active:
        fastest = max(min(timed[n].warm_ms or 0.0 for n in active), 1e-9)
        for name in list(active):
            ratio = (timed[name].warm_ms or 0.0) / fastest
            if ratio > reject_ratio:
                timed[name].rejected = f"{ratio:.0f}x slower than the fastest in warm-up (not timed further)"
                active.remove(name)
    floor = rounds if min_rounds is None else min(min_rounds, rounds)
    start = clock()
    for r in range(rounds):
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        ran = {name: [] for name in calls}
        for name in order:
            per_run = max(timed[name].warm_ms or 0.0, 1e-3)
            n = max(min_runs, min(int(round_seconds * 1000 / per_run), max_runs))
            if name in caps:
                n = max(1, min(n, caps[name]))
            call = calls[name]
            for _ in range(n):
                t0 = clock()
                call()
                ran[name].append((clock() - t0) / 1e6)
        for name in calls:
            timed[name].rounds.append(ran[name])
        if max_seconds is not None and r + 1 >= floor and (clock() - start) / 1e9 >= max_seconds:
            break
    return timed


# ---------------------------------------------------------------------------------------------
# Bundles: loading, deciding what can be measured here


def _bundle_summary(artifact: Artifact) -> dict[str, Any]:
    info = artifact.manifest.info
    versions: dict[str, str] = {}
    for record in artifact.manifest.history:
        versions.update(record.tool_versions or {})
    return {
        "path": str(artifact.path),
        "sha256": artifact.sha256,
        "target": info.get("target"),
        "adapter": info.get("adapter"),
        "precision": info.get("precision"),
        "precision_used": info.get("precision_used"),
        "run_provenance": info.get("run_provenance"),
        "tool_versions": versions,
    }


def _device_here(artifact: Artifact) -> tuple[bool | None, str]:
    """Ask the bundle's adapter whether its device is usable here (None = could not tell)."""
    info = artifact.manifest.info
    try:
        from edgekit.adapters.registry import get_adapter
        from edgekit.targets import get_profile

        caps = get_adapter(str(info.get("adapter"))).capabilities(get_profile(str(info.get("target"))))
    except Exception as exc:  # unknown adapter/profile here: fall back to the manifest
        return None, f"{type(exc).__name__}: {exc}"
    measured = caps.device.available and str(caps.run_provenance) == "measured"
    return measured, caps.device.reason


def _stored_estimate(artifact: Artifact) -> dict[str, Any] | None:
    """The bundle's latency estimate: `info["estimate"]`, else the adapter's `estimate` on source.onnx."""
    info = artifact.manifest.info
    est = info.get("estimate")
    if isinstance(est, Mapping) and "latency_ms" in est:
        return dict(est)
    source = artifact.path / str(info.get("source_model", "source.onnx"))
    with contextlib.suppress(Exception):
        from edgekit.adapters.registry import get_adapter
        from edgekit.artifact import to_jsonable
        from edgekit.targets import get_profile

        result = get_adapter(str(info.get("adapter"))).estimate(source, get_profile(str(info.get("target"))))
        if result is not None:
            return to_jsonable(result)
    return None


def default_loader(bundle: Path, *, threads: int | None = None) -> Runner:
    """`edgekit.stages.compile.load` when present (the full install), else the runtime's loader."""
    import importlib.util

    if importlib.util.find_spec("edgekit.stages.compile") is not None:
        from edgekit.stages.compile import load

        return load(bundle, threads=threads)
    from edgekit.runtime import load

    return load(bundle, threads=threads)


def _looks_like_model(path: Path) -> bool:
    return path.suffix.lower() == ".onnx" or (path.is_file() and not path.is_dir())


def bench(
    target_or_bundle: str | Path | Artifact,
    model: str | Path | None = None,
    *,
    target: str | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    warmup: int = 10,
    iters: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    batch: int = 1,
    budgets: Sequence[str | Budget] = (),
    baseline: str | Path | Mapping[str, Any] | None = None,
    max_regression: str | float | None = None,
    force: bool = False,
    cv_threshold: float = 0.10,
    stability_metric: str = "robust_cv",
    max_extend_rounds: int = 4,
    allow_emulated: bool = False,
    timer: Timer = time.perf_counter_ns,
    loader: Callable[..., Runner] | None = None,
) -> BenchResult:
    """Benchmark a bundle (or compile an .onnx for a target first) and check latency budgets.

    `edgekit.bench("out/bundle")`, `edgekit.bench("model.onnx", target="cpu")` or
    `edgekit.bench("cpu", "model.onnx", backend="onnxruntime")`. Budgets like "p90<=25ms" and a
    baseline JSON with `max_regression="10%"` become verdicts on the result (`.exit_code`).
    """
    from edgekit.checks.budgets import check_against_baseline, evaluate_budgets, load_result_json, parse_budgets

    config = BenchConfig(warmup=warmup, iters=iters, duration=duration, threads=threads, batch=batch,
                         cv_threshold=cv_threshold, stability_metric=stability_metric,
                         max_extend_rounds=max_extend_rounds,
                         allow_emulated=allow_emulated)
    parsed = parse_budgets(budgets)  # bad budgets fail before any work
    if max_regression is not None and baseline is None:
        raise BadInputError("--max-regression needs --baseline", path="--max-regression")
    baseline_data = load_result_json(baseline) if baseline is not None else None  # a bad file fails before work
    if hasattr(target_or_bundle, "path") and not isinstance(target_or_bundle, (str, Path)):
        target_or_bundle = target_or_bundle.path  # an Artifact (e.g. `compile(...).bundle`)
    first = Path(target_or_bundle)
    with contextlib.ExitStack() as stack:
        compile_ms = None
        if first.is_dir():
            if model is not None:
                raise BadInputError("a bundle was given; do not also give a model", path=str(model))
            bundle_path = first
        else:
            if model is None and _looks_like_model(first):
                model, target_name = first, target or "cpu"
            elif model is not None:
                target_name = target or str(target_or_bundle)
                if target is not None and str(target_or_bundle) != target:
                    raise BadInputError(f"two targets given ({target_or_bundle!r} and --target {target!r})",
                                        path="--target")
            else:
                raise BadInputError("not a bundle directory or an .onnx model", path=str(target_or_bundle),
                                    hint="give BUNDLE/, MODEL.onnx --target T, or TARGET MODEL.onnx")
            if not Path(model).exists():
                raise BadInputError("no such file", path=str(model))
            from edgekit.stages.compile import compile as compile_model

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgekit-bench-")))
            start = timer()
            compiled = compile_model(Path(model), target=target_name, backend=backend or "auto",
                                     precision=precision, output=tmp / "bundle", threads=threads)
            compile_ms = (timer() - start) / 1e6
            bundle_path = Path(compiled.bundle.path)
        result = _bench_bundle(bundle_path, config, timer=timer, loader=loader or default_loader)
        result.compile_ms = compile_ms
        if compile_ms is not None:
            result.notes.append(f"compiled {model} for {target_name} into a temporary bundle first")
            result.bundle["path"] = None  # the temp bundle is gone after this call
    result.verdicts = evaluate_budgets(result, parsed)
    if baseline_data is not None:
        label = "baseline" if isinstance(baseline, Mapping) else f"baseline {baseline}"
        result.verdicts += check_against_baseline(result, baseline_data, max_regression=max_regression,
                                                  statistics=[b.statistic for b in parsed] or None, force=force,
                                                  label=label)
    return result


def _bench_bundle(
    bundle_path: Path, config: BenchConfig, *, timer: Timer, loader: Callable[..., Runner]
) -> BenchResult:
    from edgekit.artifact import verify_bundle

    artifact = verify_bundle(bundle_path)
    summary = _bundle_summary(artifact)
    env = environment_fingerprint(threads=config.threads, bundle=summary)
    result = BenchResult(provenance="measured", bundle=summary, config=config, environment=env)
    device, reason = _device_here(artifact)
    if device is None:
        device = summary["run_provenance"] in (None, "measured")
    estimate = _stored_estimate(artifact)

    def from_estimate(why: str) -> BenchResult:
        result.provenance = "estimated"
        result.estimate = dict(estimate or {})
        result.notes.append(f"no timing loop: {why}; the figure is the bundle's estimate (provenance estimated)")
        result.peak_rss_mb, result.memory_method = None, "not measured (estimate)"
        return result

    if not device and estimate is not None:
        return from_estimate(f"the {summary['target']} device is not available here ({reason or 'no device'})")
    start = timer()
    try:
        runner = loader(bundle_path, threads=config.threads)
    except ToolchainMissingError as exc:
        if estimate is not None:
            return from_estimate(f"the bundle cannot run here ({exc.message})")
        raise
    load_ms = (timer() - start) / 1e6
    with runner:
        provenance = str(getattr(runner, "provenance", "measured"))
        if provenance != "measured":
            if estimate is not None:
                return from_estimate(f"the runner here is {provenance}, not the device")
            if not config.allow_emulated:
                raise ToolchainMissingError(
                    f"the {summary['target']} device is not available here and the bundle has no estimate",
                    path=str(bundle_path),
                    hint="bench on the device (python -m edgekit.runtime bench BUNDLE/), or pass --emulated "
                         f"to time host emulation ({EMULATION_NOTE})",
                )
            result.provenance = provenance
            result.warnings.append(f"{provenance} run: {EMULATION_NOTE}")
        result.load_ms = load_ms
        result.cold_ms, samples, result.stability = measure_runner(runner, config, timer=timer)
    result.samples_ms = samples
    result.stats = LatencyStats.from_samples(samples, batch=config.batch)
    if result.stability.warning:
        result.warnings.append(result.stability.warning)
    result.peak_rss_mb, result.memory_method = peak_rss_mb()
    return result
