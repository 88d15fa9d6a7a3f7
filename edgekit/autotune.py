"""`precision = "auto"` outside a recipe: `edgekit compile MODEL --precision auto --accuracy-budget ...`.

The search itself lives in the pipeline (every (adapter × precision) the target offers, accuracy and
latency measured for each, the fastest that meets the budget kept); this module builds the one-target
recipe for a plain ONNX model, runs it with the stage cache, and moves the chosen bundle to `output`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
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
