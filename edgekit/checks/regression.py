"""A regression gate that does not cry wolf: NEW and OLD timed side by side, judged on paired ratios.

Why: a latency recorded at another time on another load says more about the neighbours than about
the model (an unchanged bundle gated against a JSON baseline failed 8 of 8 times with one busy core
next to it). Timing both bundles in the same process, in interleaved rounds whose order is shuffled,
lets a busy spell hit both alike; the verdict is on the per-round ratios NEW/OLD (median of each
round), summarised by their median with its distribution-free 95 % interval (order statistics of
the sign test): robust to rounds that straddle a change of load, no random resampling.

Decision rule, with `t` the allowed slowdown (`--max-regression`):
  pass        the interval's upper end is <= 1 + t (NEW is at most t slower, with 95 % confidence)
  regression  the interval lies above 1 + t/2 and reaches past 1 + t (clearly slower, not shown to be
              within the allowance)
  otherwise   more rounds; at the time/round cap the verdict is `inconclusive` (exit 4: never a pass,
              never a fail), with the reason.
A slowdown of t is caught; one of t/2 or less passes; in between it depends on the noise (the
"indifference zone" of any test). Contention (load, CPU used by others, steal, frequency, run-to-run
spread) is measured and shown with every verdict.

Checks layer: imports core modules and `checks.budgets`, never stages or the pipeline.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.checks.budgets import BudgetVerdict, parse_regression
from edgekit.errors import BadInputError
from edgekit.timing import Feed, InterleavedTiming, Runnable, Timer, hot_call, interleaved, paired_ratios

METHOD = "median of the per-round ratios (median NEW / median OLD of each round), sign-test interval"
MAX_AB_SECONDS = 3600.0  # an hour: a longer cap is a typo, and a CI job that never ends
MAX_AB_ROUNDS = 5000
MIN_JIFFIES = 100  # /proc/stat ticks (1 s of one CPU at 100 Hz) needed before CPU shares mean anything


# ---------------------------------------------------------------------------------------------
# Statistics


def _rank_of_lower_bound(n: int, confidence: float) -> int:
    """k such that [x_(k), x_(n-k+1)] of n sorted values covers their median with >= `confidence` (sign test).

    Exact binomial: the largest k with P(Bin(n, 1/2) <= k-1) <= (1-confidence)/2; 0 when n is too small.
    """
    tail = (1.0 - confidence) / 2
    total, cumulative, k = 2**n, 0, 0
    while k <= n // 2:
        cumulative += math.comb(n, k)
        if cumulative / total > tail:
            break
        k += 1
    return k


@dataclass(frozen=True)
class RatioInterval:
    """NEW/OLD as a factor (1.12 = 12 % slower) with its confidence interval, over `rounds` paired rounds."""

    estimate: float
    low: float
    high: float
    rounds: int
    confidence: float

    def to_json(self) -> dict[str, Any]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "rounds": self.rounds,
                "confidence": self.confidence, "method": METHOD}


def ratio_interval(ratios: Sequence[float], confidence: float = 0.95) -> RatioInterval:
    """The median per-round ratio and its distribution-free interval (order statistics, sign test).

    Why not a mean or Hodges–Lehmann: on a shared host a round that straddles a change of load gives a
    ratio of 0.7 or 1.5 while the others sit at 1.00 ± 2 %, and those rounds are not symmetric; the
    median ignores up to half of them, and its interval assumes only independent rounds. With too few
    rounds for an interval at `confidence` (5 or fewer at 95 %) the bounds are 0 and inf.
    """
    values = np.sort(np.asarray([r for r in ratios if r > 0 and math.isfinite(r)], dtype=np.float64))
    n = int(values.size)
    if n == 0:
        return RatioInterval(math.nan, 0.0, math.inf, 0, confidence)
    estimate = float(np.median(values))
    k = _rank_of_lower_bound(n, confidence)
    if k < 1:
        return RatioInterval(estimate, 0.0, math.inf, n, confidence)
    return RatioInterval(estimate, float(values[k - 1]), float(values[n - k]), n, confidence)


def decide(interval: RatioInterval, max_regression: float) -> tuple[str | None, str]:
    """`pass`, `regression` or None (undecided), with why (see the module docstring for the rule)."""
    limit, half = 1 + max_regression, 1 + max_regression / 2
    if interval.high <= limit:
        return "pass", f"CI upper end {interval.high:.3f} <= {limit:.3f}"
    if interval.low > half:
        return "regression", f"CI above {half:.3f} and reaching past {limit:.3f}"
    if not math.isfinite(interval.high):
        return None, f"{interval.rounds} round(s) are too few for a {interval.confidence:.0%} interval"
    return None, f"CI {interval.low:.3f}–{interval.high:.3f} straddles {limit:.3f} (and {half:.3f})"


def robust_cv(values: Sequence[float]) -> float | None:
    """1.4826 · MAD / median: spread of the bulk (None with fewer than two values)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size < 2:
        return None
    med = float(np.median(arr))
    return 1.4826 * float(np.median(np.abs(arr - med))) / med if med > 0 else None


# ---------------------------------------------------------------------------------------------
# Contention: how busy the host was while timing


def _proc_stat(text: str | None = None) -> tuple[float, float, float] | None:
    """(busy, steal, total) jiffies of the whole host from /proc/stat's `cpu` line (None where unreadable)."""
    try:
        text = text if text is not None else Path("/proc/stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                v = [float(x) for x in parts[1:9]] + [0.0] * max(0, 9 - len(parts))
            except ValueError:
                return None
            user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
            return user + nice + system + irq + softirq, steal, sum(v[:8])
    return None


def _host_cpus(text: str | None = None) -> int:
    try:
        text = text if text is not None else Path("/proc/stat").read_text()
    except OSError:
        return os.cpu_count() or 1
    return max(1, sum(1 for line in text.splitlines() if line.startswith("cpu") and line[3:4].isdigit()))


def _frequency_mhz() -> float | None:
    """Mean current CPU frequency (cpufreq, else /proc/cpuinfo `cpu MHz`); None where neither is readable."""
    try:
        return float(Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").read_text()) / 1000
    except (OSError, ValueError):
        pass
    try:
        values = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.lower().startswith("cpu mhz")]
    except (OSError, ValueError, IndexError):
        return None
    return sum(values) / len(values) if values else None


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


@dataclass
class Contention:
    """What else the host was doing while a figure was taken; None where the OS does not say."""

    load_start: list[float] | None = None  # 1/5/15-min load average
    load_end: list[float] | None = None
    cpus: int | None = None  # host CPUs (/proc/stat), what the shares below are of
    others_cpu_pct: float | None = None  # host CPU time used by other processes, % of all CPUs
    steal_pct: float | None = None  # CPU time the hypervisor gave to other guests, %
    freq_mhz_start: float | None = None
    freq_mhz_end: float | None = None
    round_cv: float | None = None  # robust CV of the per-round medians (how much the machine moved)
    ratio_cv: float | None = None  # robust CV of the per-round ratios (what pairing left of it)
    seconds: float | None = None

    def summary(self) -> str:
        parts = []
        if self.load_start is not None:
            end = f"→{self.load_end[0]:.2f}" if self.load_end else ""
            parts.append(f"load {self.load_start[0]:.2f}{end} on {self.cpus or '?'} cpus")
        if self.others_cpu_pct is not None:
            parts.append(f"other processes {self.others_cpu_pct:.0f}% of the CPUs")
        parts.append(f"steal {self.steal_pct:.1f}%" if self.steal_pct is not None else "steal n/a")
        if self.round_cv is not None:
            parts.append(f"round-to-round CV {self.round_cv:.1%}")
        if self.ratio_cv is not None:
            parts.append(f"paired-ratio CV {self.ratio_cv:.1%}")
        freq = self.freq_mhz_start
        parts.append(f"{freq:.0f} MHz" if freq is not None else "frequency n/a")
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ContentionProbe:
    """Reads /proc/stat, the load average and the frequency at `start()` and `stop()`.

    Other processes' CPU share = host busy time minus this process's own CPU time (`os.times`), over
    the wall time times the host CPUs: instant, unlike the 1-minute load average.
    """

    def __init__(self) -> None:
        self._start: tuple[float, float, float] | None = None
        self._own = 0.0
        self._wall = 0.0
        self.contention = Contention()

    def start(self) -> ContentionProbe:
        self.contention = Contention(load_start=_load(), cpus=_host_cpus(), freq_mhz_start=_frequency_mhz())
        self._start = _proc_stat()
        t = os.times()
        self._own, self._wall = t.user + t.system, time.monotonic()
        return self

    def stop(self) -> Contention:
        c = self.contention
        c.load_end, c.freq_mhz_end = _load(), _frequency_mhz()
        c.seconds = time.monotonic() - self._wall
        end = _proc_stat()
        if self._start is not None and end is not None:
            d_busy, d_steal, d_total = (b - a for a, b in zip(self._start, end, strict=True))
            if d_total >= MIN_JIFFIES:  # a shorter window is below the clock tick's resolution
                hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
                t = os.times()
                own = (t.user + t.system - self._own) * hz
                c.others_cpu_pct = max(0.0, 100.0 * (d_busy - own) / d_total)
                c.steal_pct = 100.0 * d_steal / d_total
        return c


# ---------------------------------------------------------------------------------------------
# The A/B comparison


@dataclass(frozen=True)
class ABConfig:
    """How an A/B regression check runs: the allowance, the confidence, and when to stop."""

    max_regression: float = 0.10  # a fraction (0.10 = 10 %); parse "10%" with budgets.parse_regression
    confidence: float = 0.95
    min_rounds: int = 20  # first look at the interval after this many rounds
    look_every: int = 10  # then every this many rounds
    max_rounds: int = 400
    min_seconds: float = 5.0  # no verdict before this much time: rounds must span several spells of load
    max_seconds: float = 60.0  # wall-clock cap of the timed rounds (`--ab-max-seconds`)
    round_seconds: float = 0.05  # per candidate per round: short, so both see the same spell of load
    min_runs: int = 3
    max_runs: int = 50
    seed: int | None = None  # the round order's shuffle; None: drawn, and recorded in the result

    def __post_init__(self) -> None:
        if isinstance(self.max_regression, bool) or not isinstance(self.max_regression, (int, float)):
            raise BadInputError(f"must be a fraction (0.10 = 10 %), got {self.max_regression!r}",
                                path="--max-regression", hint="bench(..., max_regression='10%') parses a percentage")
        parse_regression(self.max_regression, argument="--max-regression")
        if not self.max_regression > 0:
            raise BadInputError("must be > 0% for an A/B check (an interval has a width: 0% can never pass)",
                                path="--max-regression", hint="e.g. 10%")
        _number(self.confidence, "confidence", low=0.5, high=0.999, open_low=True)
        _number(self.max_seconds, "--ab-max-seconds", low=0.0, high=MAX_AB_SECONDS, open_low=True)
        _number(self.min_seconds, "min_seconds", low=0.0, high=MAX_AB_SECONDS)
        _number(self.round_seconds, "round_seconds", low=0.0, high=60.0, open_low=True)
        for name in ("min_rounds", "look_every", "max_rounds", "min_runs", "max_runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_AB_ROUNDS * 10:
                raise BadInputError(f"{name} must be a whole number from 1 to {MAX_AB_ROUNDS * 10}, got {value!r}",
                                    path=name)
        if self.max_rounds > MAX_AB_ROUNDS:
            raise BadInputError(f"max_rounds must be <= {MAX_AB_ROUNDS}, got {self.max_rounds}", path="max_rounds")
        if self.min_rounds > self.max_rounds or self.min_runs > self.max_runs:
            raise BadInputError("min_rounds/min_runs must not exceed max_rounds/max_runs", path="ABConfig")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise BadInputError(f"seed must be a whole number, got {self.seed!r}", path="seed")

    @property
    def rule(self) -> str:
        t = self.max_regression
        return (f"pass if the {self.confidence:.0%} CI's upper end <= {1 + t:.3f}; regression if the CI lies above "
                f"{1 + t / 2:.3f} and reaches past {1 + t:.3f}; decided no sooner than {self.min_rounds} rounds and "
                f"{min(self.min_seconds, self.max_seconds):g} s (looks every {self.look_every} rounds); undecided at "
                f"{self.max_seconds:g} s or {self.max_rounds} rounds: inconclusive")


def _number(value: Any, name: str, *, low: float, high: float, open_low: bool = False) -> float:
    """A finite real number in (low, high] (or [low, high]); anything else is a one-line BadInputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInputError(f"must be a number, got {value!r}", path=name)
    number = float(value)
    below = number <= low if open_low else number < low
    if not math.isfinite(number) or below or number > high:
        side = ">" if open_low else ">="
        raise BadInputError(f"must be a finite number {side} {low:g} and <= {high:g}, got {value!r}", path=name)
    return number


@dataclass
class ABComparison:
    """The verdict of NEW against OLD, with the interval, the rounds, the rule and the contention."""

    new: str
    old: str
    config: ABConfig
    interval: RatioInterval
    status: str  # pass | regression | inconclusive
    reason: str
    seconds: float
    seed: int
    ratios: list[float] = field(default_factory=list)
    new_median_ms: float | None = None
    old_median_ms: float | None = None
    contention: Contention = field(default_factory=Contention)
    looks: int = 0

    @property
    def headline(self) -> str:
        """`NEW is 1.12× OLD (95 % CI 1.08–1.16): regression`."""
        i = self.interval
        ci = f"{i.low:.2f}–{i.high:.2f}" if math.isfinite(i.high) else "not yet computable"
        est = f"{i.estimate:.2f}" if math.isfinite(i.estimate) else "?"
        return f"NEW is {est}× OLD ({i.confidence * 100:.0f} % CI {ci}): {self.status}"

    @property
    def verdict_status(self) -> str:
        return {"pass": "pass", "regression": "fail"}.get(self.status, "inconclusive")

    def verdict(self) -> BudgetVerdict:
        """The comparison as a budget verdict (console table, JSON `budgets[]`, JUnit testcase)."""
        t = self.config.max_regression
        note = (f"{self.headline}; {self.reason}; {self.interval.rounds} rounds in {self.seconds:.1f} s; "
                f"rule: {self.config.rule}; contention: {self.contention.summary()}")
        measured = self.interval.estimate if math.isfinite(self.interval.estimate) else None
        return BudgetVerdict(f"NEW<=OLD+{t:.0%}", "regression", "ratio", "<=", 1 + t, measured, "×",
                             self.verdict_status, "measured", f"baseline bundle {self.old}", note)

    def to_json(self) -> dict[str, Any]:
        return {
            "headline": self.headline, "status": self.status, "reason": self.reason, "new": self.new,
            "old": self.old, "max_regression": self.config.max_regression, "interval": self.interval.to_json(),
            "rule": self.config.rule, "rounds": self.interval.rounds, "looks": self.looks, "seconds": self.seconds,
            "seed": self.seed, "new_median_ms": self.new_median_ms, "old_median_ms": self.old_median_ms,
            "ratios": self.ratios, "contention": self.contention.to_json(),
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
        }


def _merge(into: InterleavedTiming, batch: InterleavedTiming) -> None:
    into.rounds.extend(batch.rounds)
    if into.cold_ms is None:
        into.cold_ms, into.warm_ms = batch.cold_ms, batch.warm_ms


def compare_runners(
    new: Runnable,
    old: Runnable,
    feed: Feed,
    config: ABConfig | None = None,
    *,
    new_label: str = "NEW",
    old_label: str = "OLD",
    clock: Timer = time.perf_counter_ns,
    probe: ContentionProbe | None = None,
) -> tuple[ABComparison, InterleavedTiming, InterleavedTiming]:
    """Time NEW and OLD on the same feed in shuffled interleaved rounds until the interval decides, or the cap.

    The feed goes once through each runner's `run` (validation, untimed); then batches of rounds by
    `edgekit.timing.interleaved` (a cold run and one warm-up each batch, not counted), the interval
    looked at after `min_rounds` and every `look_every` rounds. Returns the comparison and both timings.
    """
    config = config or ABConfig()
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    probe = probe or ContentionProbe()
    new.run(feed)
    old.run(feed)
    hot_new, hot_old = hot_call(new), hot_call(old)
    calls = {"new": lambda: hot_new(feed), "old": lambda: hot_old(feed)}
    timed = {"new": InterleavedTiming(), "old": InterleavedTiming()}
    probe.start()
    start = clock()
    looks = 0
    status: str | None = None
    reason = ""
    interval = ratio_interval([], config.confidence)
    while True:
        done = len(timed["new"].rounds)
        target = config.min_rounds if done < config.min_rounds else done + config.look_every
        batch = interleaved(calls, rounds=min(target, config.max_rounds) - done, round_seconds=config.round_seconds,
                            warmup=1, min_runs=config.min_runs, max_runs=config.max_runs, clock=clock, rng=rng)
        for name in calls:
            _merge(timed[name], batch[name])
        interval = ratio_interval(paired_ratios(timed["new"], timed["old"]), config.confidence)
        looks += 1
        status, reason = decide(interval, config.max_regression)
        elapsed = (clock() - start) / 1e9
        if status is not None and elapsed >= min(config.min_seconds, config.max_seconds):
            break
        if len(timed["new"].rounds) >= config.max_rounds or elapsed >= config.max_seconds:
            if status is None:
                cap = (f"{config.max_rounds} rounds" if len(timed["new"].rounds) >= config.max_rounds
                       else f"{config.max_seconds:g} s")
                status, reason = "inconclusive", f"undecided at the cap ({cap}): {reason}"
            break
    contention = probe.stop()
    ratios = paired_ratios(timed["new"], timed["old"])
    contention.round_cv = robust_cv(timed["old"].round_medians)
    contention.ratio_cv = robust_cv(ratios)
    comparison = ABComparison(
        new=new_label, old=old_label, config=config, interval=interval, status=status, reason=reason,
        seconds=(clock() - start) / 1e9, seed=seed, ratios=ratios, new_median_ms=timed["new"].median_ms,
        old_median_ms=timed["old"].median_ms, contention=contention, looks=looks,
    )
    return comparison, timed["new"], timed["old"]


def same_inputs(new: Sequence[Any], old: Sequence[Any], *, new_label: str, old_label: str) -> None:
    """NEW and OLD must take the same inputs (names, shapes, dtypes): else the ratio compares two models."""
    a = {s.name: (tuple(s.shape), str(s.dtype)) for s in new}
    b = {s.name: (tuple(s.shape), str(s.dtype)) for s in old}
    if a != b:
        raise BadInputError(f"the bundles take different inputs ({new_label}: {_specs_text(a)}; {old_label}: "
                            f"{_specs_text(b)})",
                            path="--baseline-bundle",
                            hint="compare two builds of the same model at the same input shapes")


def _specs_text(specs: Mapping[str, tuple[tuple[Any, ...], str]]) -> str:
    return " ".join(f"{name}:{','.join(map(str, shape))}/{dtype}" for name, (shape, dtype) in sorted(specs.items()))
