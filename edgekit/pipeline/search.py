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
from collections.abc import Callable, Collection, Mapping
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
    p99_ms: dict[str, float] = field(default_factory=dict)  # tail of the same side-by-side samples

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "detail": self.detail, "medians_ms": self.medians_ms,
                "rounds": self.rounds, "rejected": self.rejected, "p99_ms": self.p99_ms}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Choice:
        return cls(str(data["name"]), str(data["rule"]), str(data["detail"]),
                   {k: float(v) for k, v in dict(data.get("medians_ms") or {}).items()},
                   int(data.get("rounds", 0)), {k: str(v) for k, v in dict(data.get("rejected") or {}).items()},
                   {k: float(v) for k, v in dict(data.get("p99_ms") or {}).items()})


def clearly_faster(gain: float, wins: int, rounds: int, min_gain: float) -> bool:
    """Rule 3: INT8/mixed beats float only with a median gain >= `min_gain` AND a strict majority of paired
    rounds (side by side, or processes alternating)."""
    return gain >= min_gain and wins * 2 > rounds


def decide(timed: Mapping[str, InterleavedTiming], precisions: Mapping[str, str], *,
           min_gain: float = 0.05) -> Choice:
    """Apply the rule of the module docstring to side-by-side timings."""
    medians = {name: m for name, t in timed.items() if (m := t.round_median) is not None and not t.rejected}
    rejected = {n: t.rejected for n, t in timed.items() if t.rejected}
    n_rounds = max((len(t.rounds) for t in timed.values()), default=0)
    choice = _decide(timed, medians, rejected, n_rounds, precisions, min_gain)
    choice.p99_ms = {n: float(np.percentile(t.samples, 99)) for n, t in timed.items() if t.samples and not t.rejected}
    return choice


def _decide(timed: Mapping[str, InterleavedTiming], medians: dict[str, float], rejected: dict[str, str],
            n_rounds: int, precisions: Mapping[str, str], min_gain: float) -> Choice:
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
        if clearly_faster(gain, wins, len(ratios), min_gain):
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


DROP_RATIO = 1.5  # a measured candidate this many times slower than the fastest accurate one cannot win


def label(key: str) -> str:
    """`onnxruntime-int8` → `onnxruntime·int8`, the way pruning lines name candidates."""
    adapter, _, precision = key.rpartition("-")
    return f"{adapter}·{precision}" if adapter else key


def prune(medians: Mapping[str, float], precisions: Mapping[str, str], accurate: Collection[str],
          bounds: Mapping[str, str], *, rounds: int, drop_ratio: float = DROP_RATIO,
          min_gain: float = 0.05) -> dict[str, str]:
    """What cannot win, after a brief side-by-side screening: key → the line saying why.

    * a measured accurate candidate `drop_ratio`× slower than the fastest accurate one is not timed again;
    * a pending candidate (mixed INT8, not built yet) is not built when its upper bound (`bounds`: the same
      adapter's full INT8 build, timed here; a mixed build keeps some nodes in float, so it is no faster)
      could not win by the rule of `decide`: beat the fastest accurate float build by `min_gain`, and be
      faster than the fastest accurate INT8 build.
    Nothing is pruned without an accurate timed reference: then every candidate may still be the answer.
    """
    timed_ok = {k: ms for k, ms in medians.items() if k in accurate}
    if not timed_ok:
        return {}
    best = min(timed_ok, key=lambda k: timed_ok[k])
    best_ms = timed_ok[best]
    dropped = {}
    for key, ms in timed_ok.items():
        if key != best and ms >= drop_ratio * best_ms:
            dropped[key] = (f"dropped {label(key)} after {rounds} rounds: {ms / best_ms:.2f}× slower than "
                            f"{label(best)} ({ms:.3f} vs {best_ms:.3f} ms)")
    floats = {k: ms for k, ms in timed_ok.items() if precisions.get(k) not in QUANT_PRECISIONS}
    quants = {k: ms for k, ms in timed_ok.items() if precisions.get(k) in QUANT_PRECISIONS}
    for pending, bound in bounds.items():
        if bound not in medians:
            continue  # its bound was not built or timed: nothing known, so build it
        ms = medians[bound]
        fastest_float = min(floats, key=lambda k: floats[k]) if floats else None
        fastest_quant = min(quants, key=lambda k: quants[k]) if quants else None
        if fastest_float is not None and ms > (1.0 - min_gain) * floats[fastest_float]:
            dropped[pending] = _bound_line(pending, bound, ms, fastest_float, floats[fastest_float], rounds,
                                           f"; INT8 must be >= {min_gain:.0%} faster than float")
        elif fastest_quant is not None and fastest_quant != bound and ms >= quants[fastest_quant]:
            dropped[pending] = _bound_line(pending, bound, ms, fastest_quant, quants[fastest_quant], rounds)
    return dropped


def _bound_line(pending: str, bound: str, ms: float, ref: str, ref_ms: float, rounds: int, why: str = "") -> str:
    """Why a pending build is not paid for: its upper bound's figure against the build it would have to beat."""
    versus = f"{ms / ref_ms:.2f}× slower than" if ms >= ref_ms else f"only {1.0 - ms / ref_ms:.0%} faster than"
    return (f"dropped {label(pending)} before building it: its upper bound {label(bound)} is {versus} {label(ref)} "
            f"after {rounds} rounds ({ms:.3f} vs {ref_ms:.3f} ms{why})")


CLOSE_CALL = 0.10  # finalists of different runtimes within this share of each other are confirmed in processes


def finalists_to_confirm(choice: Choice, adapters: Mapping[str, str]) -> list[str]:
    """The winner and the runner-up when a different runtime came within CLOSE_CALL: several runtimes in one
    process move each other's figures by up to ±50 %, so such a close call is re-timed in separate processes."""
    if choice.name not in choice.medians_ms or len(choice.medians_ms) < 2:
        return []
    best = choice.medians_ms[choice.name]
    rivals = sorted((ms, k) for k, ms in choice.medians_ms.items()
                    if k != choice.name and adapters.get(k) != adapters.get(choice.name))
    if not rivals or rivals[0][0] > best * (1 + CLOSE_CALL):
        return []
    return [choice.name, rivals[0][1]]


def time_in_processes(bundles: Mapping[str, Any], *, threads: int | None, runs: int = 3, seconds: float = 0.5,
                      python: str | None = None) -> dict[str, list[float]]:
    """p50 (ms) of each bundle, each run in its own `python -m edgekit.runtime bench` process, alternating
    A B A B ... so a busy spell hits both; returns the per-process p50s (paired by run)."""
    import json
    import subprocess
    import sys

    from edgekit.errors import ToolchainMissingError

    p50s: dict[str, list[float]] = {k: [] for k in bundles}
    for run in range(runs):
        order = list(bundles) if run % 2 == 0 else list(reversed(list(bundles)))
        for key in order:
            cmd = [python or sys.executable, "-m", "edgekit.runtime", "bench", str(bundles[key]), "--duration",
                   f"{seconds:g}", "--warmup", "5", "--json", "-", "--quiet"]
            if threads:
                cmd += ["--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
            if proc.returncode != 0:
                raise ToolchainMissingError(f"timing {key} in its own process failed: "
                                            f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
            data = json.loads(proc.stdout)
            p50s[key].append(float(data["latency_ms"]["p50"]))
    return p50s


def confirm(choice: Choice, p50s: Mapping[str, list[float]], precisions: Mapping[str, str], *,
            min_gain: float = 0.05) -> Choice:
    """The same rule as `decide`, on per-process p50s paired by run; the detail says it was confirmed so."""
    a, b = list(p50s)
    medians = {k: float(np.median(v)) for k, v in p50s.items()}
    ratios = [x / y for x, y in zip(p50s[a], p50s[b], strict=True) if y > 0]  # a/b per paired run
    a_wins = sum(r < 1.0 for r in ratios)
    fast, slow = (a, b) if medians[a] <= medians[b] else (b, a)
    wins = a_wins if fast == a else len(ratios) - a_wins
    quant = {k for k in (a, b) if precisions.get(k) in QUANT_PRECISIONS}
    gain = 1.0 - medians[fast] / medians[slow]
    if quant == {fast} and not clearly_faster(gain, wins, len(ratios), min_gain):
        winner = slow  # INT8 must be clearly faster, in processes as side by side
    elif wins * 2 > len(ratios) or fast == slow:
        winner = fast
    else:
        winner = choice.name  # the processes disagree with each other: keep the side-by-side pick
    detail = (f"{choice.detail}; confirmed in separate processes ({len(ratios)} alternating runs each): "
              f"{a} {medians[a]:.3f} ms, {b} {medians[b]:.3f} ms, {fast} faster in {wins}/{len(ratios)}")
    rule = choice.rule if winner == choice.name else f"{choice.rule}, overturned in separate processes"
    return Choice(winner, rule, detail, {**choice.medians_ms}, choice.rounds, dict(choice.rejected),
                  dict(choice.p99_ms))
