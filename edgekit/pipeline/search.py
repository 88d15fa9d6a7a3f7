"""Precision auto: which built candidate to keep, decided on figures measured side by side.

Why not the fastest bench p50: candidates benched one after another, minutes apart, on a shared
host let the noise decide (an INT8 build picked although side by side it was twice as slow). So
every candidate that meets the accuracy budget is timed again side by side
(`edgekit.timing.time_side_by_side`: interleaved, order-rotated rounds), and the rule is:

1. the median of each candidate's per-round medians is its latency;
2. the best float (fp32/fp16/bf16) candidate is the fastest float median;
3. an INT8/mixed candidate wins over it only when it is clearly faster: its median at least
   `min_gain` (5 %) lower AND its round median lower in a strict majority of the paired rounds;
   otherwise the best float candidate is kept ("float-kept");
4. without float (or without INT8) candidates, the fastest median wins ("fastest-median").

The medians and the rule are what the console, report and JSON show next to ★: the figures the
choice was made on, never a bench figure from another moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.specs import QUANT_PRECISIONS
from edgekit.timing import InterleavedTiming, paired_ratios, time_side_by_side

RULE_FASTEST = "fastest-median"
RULE_INT8 = "int8-clearly-faster"
RULE_FLOAT_KEPT = "float-kept"


@dataclass
class Choice:
    """Which candidate won a side-by-side timing, the rule that decided, and the figures it used."""

    name: str
    rule: str  # fastest-median | int8-clearly-faster | float-kept
    detail: str
    medians_ms: dict[str, float] = field(default_factory=dict)  # median of per-round medians
    rounds: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # too slow after warm-up: not timed in rounds

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "detail": self.detail, "medians_ms": self.medians_ms,
                "rounds": self.rounds, "rejected": self.rejected}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Choice:
        return cls(str(data["name"]), str(data["rule"]), str(data["detail"]),
                   {k: float(v) for k, v in dict(data.get("medians_ms") or {}).items()},
                   int(data.get("rounds", 0)), {k: str(v) for k, v in dict(data.get("rejected") or {}).items()})


def decide(timed: Mapping[str, InterleavedTiming], precisions: Mapping[str, str], *,
           min_gain: float = 0.05) -> Choice:
    """Apply the rule of the module docstring to side-by-side timings."""
    medians: dict[str, float] = {}
    for name, t in timed.items():
        per_round = [m for m in t.round_medians if m is not None]
        if per_round and not t.rejected:
            medians[name] = float(np.median(per_round))
    rejected = {n: t.rejected for n, t in timed.items() if t.rejected}
    n_rounds = max((len(t.rounds) for t in timed.values()), default=0)
    if not medians:  # every candidate rejected: cannot happen (the fastest never is), but stay total
        name = next(iter(timed))
        return Choice(name, RULE_FASTEST, "nothing timed; first candidate", {}, n_rounds, rejected)

    def fastest(names: list[str]) -> str:
        return min(names, key=lambda n: medians[n])

    floats = [n for n in medians if precisions.get(n) not in QUANT_PRECISIONS]
    quants = [n for n in medians if precisions.get(n) in QUANT_PRECISIONS]
    if not floats or not quants:
        name = fastest(list(medians))
        return Choice(name, RULE_FASTEST, f"fastest median side by side ({medians[name]:.3f} ms, "
                      f"{n_rounds} paired rounds)", medians, n_rounds, rejected)
    best_float = fastest(floats)
    f_ms = medians[best_float]
    notes = []
    for q in sorted(quants, key=lambda n: medians[n]):
        ratios = paired_ratios(timed[q], timed[best_float])
        wins = sum(r < 1.0 for r in ratios)
        gain = 1.0 - medians[q] / f_ms
        if gain >= min_gain and wins * 2 > len(ratios):
            return Choice(q, RULE_INT8, f"{q} {medians[q]:.3f} ms vs {best_float} {f_ms:.3f} ms: "
                          f"{gain:.0%} faster, faster in {wins}/{len(ratios)} paired rounds", medians, n_rounds,
                          rejected)
        notes.append(f"{q} {medians[q]:.3f} ms ({gain:+.0%}, faster in {wins}/{len(ratios)} paired rounds)")
    if medians[fastest(quants)] >= f_ms:
        return Choice(best_float, RULE_FASTEST, f"fastest median side by side ({f_ms:.3f} ms, {n_rounds} paired "
                      "rounds)", medians, n_rounds, rejected)
    return Choice(best_float, RULE_FLOAT_KEPT,
                  f"{best_float} {f_ms:.3f} ms kept: INT8 not >= {min_gain:.0%} faster in a majority of paired "
                  "rounds: " + "; ".join(notes), medians, n_rounds, rejected)


def choose_side_by_side(
    runners: Mapping[str, Any],
    feeds: Mapping[str, Mapping[str, np.ndarray]],
    precisions: Mapping[str, str],
    *,
    rounds: int = 7,
    round_seconds: float = 0.2,
    warmup: int = 2,
    min_gain: float = 0.05,
    reject_ratio: float = 10.0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Choice:
    """Time `runners` interleaved (each on its feed) and pick one by the rule in the module docstring."""
    timed = time_side_by_side(runners, feeds, rounds=rounds, round_seconds=round_seconds, warmup=warmup,
                              min_runs=2, max_runs=50, reject_ratio=reject_ratio, clock=clock)
    return decide(timed, precisions, min_gain=min_gain)
