"""`precision = "auto"`: the choice between candidates, and `edgekit compile MODEL --precision auto`.

The search lives in the pipeline (every (adapter × precision) the target offers, accuracy and latency
measured for each); the pipeline asks `choose_candidate` here which of the builds that meet the
accuracy budget to keep. Why not the fastest bench p50: each candidate's bench ran on its own, minutes
apart, and on a shared host that noise decided the choice (an INT8 build picked although side by
side it was twice as slow). So every passing candidate is timed again side by side
(`edgekit.checks.latency.interleaved`), and the decision rule is (`choose_side_by_side`):

1. the median of each candidate's per-round medians is its latency;
2. the best float (fp32/fp16/bf16) candidate is the fastest float median;
3. an INT8/mixed candidate wins over it only when it is clearly faster: its median at least
   `min_gain` (5 %) lower AND its round median lower in a strict majority of the paired rounds;
   otherwise the best float candidate is kept ("float-kept");
4. without float (or without INT8) candidates, the fastest median wins ("fastest-median").

`compile_auto` builds the one-target recipe for a plain ONNX model, runs it with the stage cache,
and moves the chosen bundle to `output`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError
from edgekit.recipe import AccuracyBudget, BenchSettings, Budgets, DataSource, ModelSource, Recipe, TargetSettings

_BUDGET_RE = re.compile(r"^\s*(sqnr|sqnr_db|cosine|drop)\s*(>=|<=)\s*(-?\d+(?:\.\d+)?)\s*(db|points|pts)?\s*$", re.I)


def parse_accuracy_budget(texts: str | list[str] | tuple[str, ...]) -> AccuracyBudget:
    """'sqnr>=20dB', 'cosine>=0.999', 'drop<=1' (percentage points, needs labelled eval data); comma-separated ok."""
    if isinstance(texts, str):
        texts = [texts]
    values: dict[str, float] = {}
    for text in (t for chunk in texts for t in chunk.split(",") if t.strip()):
        m = _BUDGET_RE.match(text)
        if not m:
            raise BadInputError(f"cannot parse accuracy budget {text!r}", path="--accuracy-budget",
                                hint="e.g. sqnr>=20dB, cosine>=0.999, drop<=1 (points; needs --eval with labels)")
        kind, op, value = m[1].lower(), m[2], float(m[3])
        expected = "<=" if kind == "drop" else ">="
        if op != expected:
            raise BadInputError(f"{kind} budgets are written {kind}{expected}VALUE, got {text!r}",
                                path="--accuracy-budget")
        values[{"sqnr": "min_sqnr_db", "sqnr_db": "min_sqnr_db", "cosine": "min_cosine", "drop": "max_drop"}[kind]] = \
            value
    if not values:
        raise BadInputError("empty accuracy budget", path="--accuracy-budget", hint="e.g. sqnr>=20dB")
    return AccuracyBudget(**values)


FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
QUANT_PRECISIONS = ("int8", "mixed")
RULE_FASTEST = "fastest-median"
RULE_INT8 = "int8-clearly-faster"
RULE_FLOAT_KEPT = "float-kept"


@dataclass
class Choice:
    """Which candidate won a side-by-side timing, and the rule that decided."""

    name: str
    rule: str  # fastest-median | int8-clearly-faster | float-kept
    detail: str
    medians_ms: dict[str, float] = field(default_factory=dict)  # median of per-round medians
    rounds: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # too slow after warm-up: not timed in rounds


def choose_side_by_side(
    calls: Mapping[str, Callable[[], Any]],
    precisions: Mapping[str, str],
    *,
    rounds: int = 7,
    round_seconds: float = 0.2,
    warmup: int = 2,
    min_gain: float = 0.05,
    reject_ratio: float = 10.0,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Choice:
    """Time `calls` interleaved and pick one by the rule in the module docstring (`precisions[name]`)."""
    import numpy as np

    from edgekit.checks.latency import interleaved, paired_ratios

    timed = interleaved(calls, rounds=rounds, round_seconds=round_seconds, warmup=warmup, min_runs=2,
                        max_runs=50, reject_ratio=reject_ratio, clock=clock)
    medians: dict[str, float] = {}
    for name, t in timed.items():
        per_round = [m for m in t.round_medians if m is not None]
        if per_round and not t.rejected:
            medians[name] = float(np.median(per_round))
    rejected = {n: t.rejected for n, t in timed.items() if t.rejected}
    n_rounds = max((len(t.rounds) for t in timed.values()), default=0)
    if not medians:  # every candidate rejected: cannot happen (the fastest is never), but stay total
        name = next(iter(calls))
        return Choice(name, RULE_FASTEST, "nothing timed; first candidate", {}, n_rounds, rejected)

    def fastest(names: list[str]) -> str:
        return min(names, key=lambda n: medians[n])

    floats = [n for n in medians if precisions.get(n) not in QUANT_PRECISIONS]
    quants = [n for n in medians if precisions.get(n) in QUANT_PRECISIONS]
    if not floats or not quants:
        name = fastest(list(medians))
        return Choice(name, RULE_FASTEST, f"fastest median side by side ({medians[name]:.3f} ms)", medians,
                      n_rounds, rejected)
    best_float = fastest(floats)
    f_ms = medians[best_float]
    notes = []
    for q in sorted(quants, key=lambda n: medians[n]):
        ratios = paired_ratios(timed[q], timed[best_float])
        wins = sum(r < 1.0 for r in ratios)
        gain = 1.0 - medians[q] / f_ms
        if gain >= min_gain and wins * 2 > len(ratios):
            return Choice(q, RULE_INT8, f"{precisions[q]} {medians[q]:.3f} ms vs {best_float} {f_ms:.3f} ms: "
                          f"{gain:.0%} faster, faster in {wins}/{len(ratios)} paired rounds", medians, n_rounds,
                          rejected)
        notes.append(f"{q} {gain:+.0%}, faster in {wins}/{len(ratios)} rounds")
    if medians[fastest(quants)] >= f_ms:
        return Choice(best_float, RULE_FASTEST, f"fastest median side by side ({f_ms:.3f} ms)", medians, n_rounds,
                      rejected)
    return Choice(best_float, RULE_FLOAT_KEPT,
                  f"INT8 not clearly faster than {best_float} ({f_ms:.3f} ms; needs >= {min_gain:.0%} and a "
                  f"majority of paired rounds): " + "; ".join(notes), medians, n_rounds, rejected)


def choose_candidate(
    cands: Sequence[Any],
    *,
    threads: int | None = None,
    loader: Callable[..., Any] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
    **options: Any,
) -> Any:
    """The pipeline's choice among built candidates (`edgekit.pipeline.Candidate`); sets `decision` on it.

    The candidates that meet the accuracy budget and whose latency was measured here are timed side
    by side (`choose_side_by_side`), `interleaved_ms` set on each. When fewer than two such candidates
    exist or a passing candidate's latency is an estimate (it cannot be timed next to a measurement),
    the fastest passing bench figure wins ("fastest-bench"); when none passes, the most accurate
    candidate is returned ("most-accurate"; the run then fails its budget).
    """
    picked = _side_by_side(cands, threads=threads, loader=loader, clock=clock, **options)
    if picked is not None:
        return picked
    ok = [c for c in cands if c.meets_budget and c.latency_ms is not None]
    if ok:
        winner = min(ok, key=lambda c: c.latency_ms or float("inf"))
        winner.decision = f"fastest-bench: {winner.latency_stat} {winner.latency_ms:.3f} ms " \
                          f"({winner.latency_provenance}; not timed side by side)"
        return winner
    ok = [c for c in cands if c.meets_budget]
    if ok:
        ok[0].decision = "first-passing: no latency figure for any passing candidate"
        return ok[0]
    winner = max(cands, key=lambda c: (c.sqnr_db if c.sqnr_db is not None else -1e9))
    winner.decision = "most-accurate: no candidate meets the accuracy budget"
    return winner


def _side_by_side(cands: Sequence[Any], *, threads: int | None, loader: Callable[..., Any] | None,
                  clock: Callable[[], int], **options: Any) -> Any | None:
    from edgekit.checks.latency import default_loader, prepare_inputs
    from edgekit.errors import EdgekitError

    ok = [c for c in cands if c.meets_budget and c.latency_ms is not None and c.bundle_entry]
    if len(ok) < 2 or any(c.latency_provenance != "measured" for c in ok):
        return None
    load = loader or default_loader
    calls: dict[str, Callable[[], Any]] = {}
    by_key: dict[str, Any] = {}
    for c in ok:
        key = f"{c.adapter}-{c.precision}"
        try:
            runner = load(Path(c.bundle_entry) / "bundle", threads=threads)
            feed = prepare_inputs(runner)
            runner.run(feed)  # validates the feed once; timed calls skip edgekit's checks (as bench does)
        except EdgekitError as exc:
            c.reason = f"{c.reason}; not timed side by side: {exc.one_line()}"
            continue
        run = getattr(runner, "_run_impl", runner.run)
        calls[key] = lambda run=run, feed=feed: run(feed)
        by_key[key] = c
    if len(calls) < 2:
        return None
    choice = choose_side_by_side(calls, {k: c.precision for k, c in by_key.items()}, clock=clock, **options)
    for key, c in by_key.items():
        c.interleaved_ms = choice.medians_ms.get(key)
        if key in choice.rejected:
            c.reason = f"{c.reason}; {choice.rejected[key]}"
    winner = by_key[choice.name]
    winner.decision = f"{choice.rule}: {choice.detail}"
    return winner


@dataclass
class AutoCompileResult:
    """The chosen bundle and every candidate (a `PipelineResult` for the single target)."""

    bundle: Path
    adapter: str | None
    precision_used: str | None
    pipeline: Any  # edgekit.pipeline.PipelineResult

    @property
    def candidates(self) -> list[Any]:
        return self.pipeline.targets[0].candidates

    @property
    def passed(self) -> bool:
        return self.pipeline.passed

    def to_json(self) -> dict[str, Any]:
        data = self.pipeline.to_json()
        data["bundle"] = str(self.bundle)
        return data


def compile_auto(
    model: str | Path,
    *,
    output: str | Path,
    target: str = "cpu",
    backend: str = "auto",
    accuracy_budget: str | list[str] | AccuracyBudget = "sqnr>=20dB",
    calib: str | Path | None = None,
    eval: str | Path | None = None,
    threads: int | None = None,
    latency_budgets: tuple[str, ...] = (),
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    report: str | Path | None = None,
) -> AutoCompileResult:
    """Search (adapter × precision) for `target`; write the fastest build meeting `accuracy_budget` to `output`.

    `calib`/`eval` are data sources as in recipes (`digits`, `synthetic`, a folder or .npz path); without
    them seeded synthetic data is used (flagged: SQNR/cosine on random inputs, not task accuracy).
    """
    from edgekit.pipeline import Pipeline

    model = Path(model)
    if not model.is_file():
        raise BadInputError("no such file", path=model)
    budget = accuracy_budget if isinstance(accuracy_budget, AccuracyBudget) else \
        parse_accuracy_budget(accuracy_budget)

    def source(value: str | Path | None, default_samples: int) -> DataSource:
        if value is None:
            return DataSource("synthetic", samples=default_samples)
        text = str(value)
        if text in ("digits", "synthetic") or text.startswith("py:"):
            return DataSource(text)
        path = Path(text).resolve()
        if not path.exists():
            raise BadInputError("no such file or folder", path=text)
        return DataSource(text, path)

    recipe = Recipe(
        name=model.stem, path=model.resolve(), model=ModelSource(onnx=model.resolve()),
        targets=(TargetSettings(target, backend, "auto", threads, tuple(latency_budgets)),),
        simplify=False, calibration=source(calib, 32), eval=source(eval, 8),
        budgets=Budgets(tuple(), budget), bench=BenchSettings(warmup=5, iterations=30, threads=threads),
    )
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="edgekit-auto-") as tmp:
        work = Path(report) if report is not None else Path(tmp)
        result = Pipeline(recipe, trust_code=False).run(work, cache_dir=cache_dir, use_cache=use_cache,
                                                        report=report is not None)
        chosen = result.targets[0]
        if chosen.bundle is None:
            from edgekit.errors import ToolchainMissingError

            raise ToolchainMissingError(f"no candidate could be built for {target}: {chosen.reason}", path=model)
        from edgekit.artifact import atomic_dir

        with atomic_dir(output) as dest:
            shutil.rmtree(dest)
            shutil.copytree(chosen.bundle, dest)
    return AutoCompileResult(output, chosen.adapter, chosen.precision_used, result)
