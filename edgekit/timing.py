"""The one timing loop: statistics, stability-driven rounds, and candidates timed side by side.

Only the call is inside the timed region, the clock is monotonic (`time.perf_counter_ns`, injectable
for tests, returning ns), and side-by-side timing interleaves candidates in rounds so a busy spell
on a shared machine hurts every candidate alike. Core layer: no adapters, checks or stages; a
runner is anything with `run(feed)` (see `Runnable`).
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgekit.errors import BadInputError
from edgekit.progress import emit

STATISTICS = ("min", "mean", "p50", "p90", "p95", "p99", "max")
DEFAULT_ITERS = 100
DEFAULT_MAX_SECONDS = 10.0  # without --iters/--duration: 100 runs, or this long if fewer fit
Timer = Callable[[], int]
Feed = Mapping[str, np.ndarray]


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
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise BadInputError(f"must be a finite number of seconds > 0, got {self.duration}", path="--duration")
        if self.batch < 1:
            raise BadInputError("must be >= 1", path="--batch")
        if self.threads is not None and self.threads < 1:
            raise BadInputError("must be >= 1", path="--threads")
        if not (self.cv_threshold > 0 and math.isfinite(self.cv_threshold)):
            raise BadInputError(f"must be a finite number > 0, got {self.cv_threshold}", path="--cv-threshold")
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
        shown_ms = 0.0
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
            if round_ms - shown_ms >= 500:  # between timed runs, at most twice a second of model time
                shown_ms = round_ms
                emit("timing", count, iters, f"round {rounds}/{max_rounds}, {sample:.3g} ms last run")
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
    def round_median(self) -> float | None:
        """Median of the per-round medians: the figure side-by-side choices compare (None: never timed)."""
        per_round = [m for m in self.round_medians if m is not None]
        return float(np.median(per_round)) if per_round else None

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
    rng: random.Random | None = None,
    settle: int = 0,
) -> dict[str, InterleavedTiming]:
    """Time several callables side by side: a cold run, `warmup` runs, then rounds of every candidate in turn.

    Why: on a shared machine, timing candidates one after another hands a busy spell to whichever ran
    then; in rounds (order rotating each round) the spell hurts every candidate alike, and per-round
    medians give paired ratios. In a round a candidate runs `round_seconds / warm-up time` times, kept
    within [`min_runs`, `max_runs`] and its `caps` entry (untuned TVM: a run or two). With
    `reject_ratio`, a candidate that many times slower than the fastest after warm-up is not timed in
    the rounds (`rejected` says why). Up to `rounds` rounds; with `max_seconds`, rounds stop once that
    much time has passed and at least `min_rounds` (default: `rounds`) have run. `clock` returns ns.
    With `rng`, each round's order is a random permutation instead of a rotation (an A/B regression
    gate: no candidate is always second, after the other warmed the caches). `settle` untimed runs open each
    candidate's turn in a round: with several runtimes in one process, the first run after a switch pays for
    the other's thread pool and caches, which short rounds would otherwise charge to whoever runs next.
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
        emit("timing side by side", r + 1, rounds, ", ".join(active))
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        if rng is not None:
            rng.shuffle(order)
        ran = {name: [] for name in calls}
        for name in order:
            per_run = max(timed[name].warm_ms or 0.0, 1e-3)
            n = max(min_runs, min(int(round_seconds * 1000 / per_run), max_runs))
            if name in caps:
                n = max(1, min(n, caps[name]))
            call = calls[name]
            for _ in range(settle):
                call()
            for _ in range(n):
                t0 = clock()
                call()
                ran[name].append((clock() - t0) / 1e6)
        for name in calls:
            timed[name].rounds.append(ran[name])
        if max_seconds is not None and r + 1 >= floor and (clock() - start) / 1e9 >= max_seconds:
            break
    return timed


class Runnable(Protocol):
    """What side-by-side timing needs of a runner: `run(feed)` (edgekit's `Runner` checks the feed there)."""

    def run(self, inputs: Feed) -> Any: ...


def hot_call(runner: Runnable) -> Callable[[Feed], Any]:
    """The call to time: `run(feed, check_inputs=False)` for an edgekit Runner (its input check is
    edgekit's ~2 µs, not the model's, and the feed was checked once already), else `run` itself.
    """
    try:
        takes_flag = "check_inputs" in inspect.signature(runner.run).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        takes_flag = False
    return functools.partial(runner.run, check_inputs=False) if takes_flag else runner.run


def time_side_by_side(
    runners: Mapping[str, Runnable],
    feeds: Mapping[str, Feed],
    *,
    rounds: int = 5,
    round_seconds: float = 0.3,
    warmup: int = 2,
    min_runs: int = 2,
    max_runs: int = 50,
    reject_ratio: float | None = 10.0,
    caps: Mapping[str, int] | None = None,
    clock: Timer = time.perf_counter_ns,
    settle: int = 0,
) -> dict[str, InterleavedTiming]:
    """Time runners, each on its feed (`feeds[name]`), interleaved: compile's `--backend auto` and
    precision auto both use this. Each feed goes once through `run` (validation, before any clock
    starts), then `hot_call` is timed by `interleaved` with at least one warm-up run.
    """
    calls: dict[str, Callable[[], Any]] = {}
    for name, runner in runners.items():
        feed = feeds[name]
        runner.run(feed)
        call = hot_call(runner)
        calls[name] = lambda call=call, feed=feed: call(feed)
    return interleaved(calls, rounds=rounds, round_seconds=round_seconds, warmup=max(1, warmup),
                       min_runs=min_runs, max_runs=max_runs, caps=caps, reject_ratio=reject_ratio, clock=clock,
                       settle=settle)
