"""Interleaved timing for benchmarks/run.py: every candidate of one model, round-robin, in one process.

Why our own loop and not `edgekit.bench` per bundle: side-by-side ratios on a shared, noisy machine
are only fair when each candidate is timed in the same spells of load. Each round runs every
candidate in turn (the order rotates every round), so a busy minute hurts everyone alike. A
candidate can be capped to a few runs per round (untuned TVM takes seconds per run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Timed:
    """Samples of one candidate, kept per round (ms)."""

    rounds: list[list[float]] = field(default_factory=list)
    cold_ms: float | None = None
    warm_ms: float | None = None

    @property
    def samples(self) -> list[float]:
        return [s for r in self.rounds for s in r]

    def stats(self) -> dict[str, Any]:
        arr = np.asarray(self.samples, dtype=np.float64)
        if arr.size == 0:
            return {"n": 0}
        medians = [float(np.median(r)) for r in self.rounds if r]
        med = float(np.median(arr))
        mad = float(np.median(np.abs(arr - med)))
        return {
            "n": int(arr.size), "rounds": len(medians), "median_ms": med,
            "p90_ms": float(np.percentile(arr, 90)), "min_ms": float(arr.min()), "max_ms": float(arr.max()),
            "robust_cv": 1.4826 * mad / med if med > 0 else 0.0,
            "round_medians_ms": medians,
            # spread of the per-round medians: how much the machine moved during the run
            "round_spread": (max(medians) - min(medians)) / med if med > 0 and medians else 0.0,
            "cold_ms": self.cold_ms,
        }


def interleaved(
    calls: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 5,
    round_seconds: float = 0.5,
    warmup: int = 3,
    max_runs: int = 200,
    caps: Mapping[str, int] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Timed]:
    """Cold run + `warmup` runs each (not counted), then `rounds` rounds of every candidate in turn.

    In a round a candidate runs `round_seconds / warm-up time` times (at least 1, at most `max_runs`,
    or its entry in `caps`), so fast and slow candidates get about the same wall time. The loop is
    `edgekit.timing.interleaved` (the one edgekit's own choices use).
    """
    from edgekit.timing import interleaved as shared

    timed = shared(calls, rounds=rounds, round_seconds=round_seconds, warmup=warmup, min_runs=1,
                   max_runs=max_runs, caps=caps, clock=clock)
    return {name: Timed(t.rounds, t.cold_ms, t.warm_ms) for name, t in timed.items()}
