"""`edgekit.compile(..., precision="auto")`: the precision search for one ONNX model and one target.

`compile_auto` builds the one-target recipe for a plain ONNX model, runs it with the stage cache and
moves the chosen bundle to `output`. `compile` is the public entry point: a fixed precision goes to
the compile stage, `auto` here, so the CLI holds no logic the Python API lacks.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import atomic_dir, check_replaceable, to_jsonable
from edgekit.checks.budgets import parse_accuracy_budget
from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError
from edgekit.pipeline.results import Candidate, PipelineResult, TargetResult
from edgekit.pipeline.run import Pipeline
from edgekit.recipe import (
    AccuracyBudget,
    BenchSettings,
    Budgets,
    DataSource,
    ModelSource,
    PreprocessSettings,
    Recipe,
    TargetSettings,
)
from edgekit.specs import Preprocess, TensorSpec, as_specs
from edgekit.stages.compile import check_bundle_path


@dataclass
class AutoCompileResult:
    """The chosen bundle (at its final place) and every candidate, with the figures the choice used."""

    bundle: Path
    adapter: str | None
    precision_used: str | None
    pipeline: PipelineResult

    @property
    def target(self) -> TargetResult:
        return self.pipeline.targets[0]

    @property
    def candidates(self) -> list[Candidate]:
        return self.target.candidates

    @property
    def passed(self) -> bool:
        return self.pipeline.passed

    @property
    def exit_code(self) -> int:
        return self.pipeline.exit_code

    def to_json(self) -> dict[str, Any]:
        data = self.pipeline.to_json()
        data["output"] = str(self.bundle)  # the work folder of the search is gone; the bundle is here
        data["bundle"] = str(self.bundle)
        data["targets"][0]["bundle"] = str(self.bundle)
        return to_jsonable(data)


def _source(value: str | Path | None, default_samples: int) -> DataSource:
    if value is None:
        return DataSource(source="synthetic", samples=default_samples)
    text = str(value)
    if text in ("digits", "synthetic") or text.startswith("py:"):
        return DataSource(source=text)
    path = Path(text).resolve()
    if not path.exists():
        raise BadInputError("no such file or folder", path=text)
    return DataSource(source=text, path=path)


def compile_auto(
    model: str | Path,
    *,
    output: str | Path,
    target: str = "cpu",
    backend: str = "auto",
    accuracy_budget: str | Sequence[str] | AccuracyBudget = "sqnr>=20dB",
    calib: str | Path | None = None,
    eval: str | Path | None = None,
    threads: int | None = None,
    input_shapes: Sequence[TensorSpec | str] = (),
    latency_budgets: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    report: str | Path | None = None,
    metric_options: Sequence[str] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    exhaustive: bool = False,
) -> AutoCompileResult:
    """Search (adapter × precision) for `target`; write the fastest build meeting `accuracy_budget` to `output`.

    `calib`/`eval` are data sources as in recipes (`digits`, `synthetic`, a folder or .npz path); without
    them seeded synthetic data is used (flagged: SQNR/cosine on random inputs, not task accuracy).
    `accuracy_budget` may name a task metric (`"map50 drop<=1"`): accuracy with labels, agreement with the
    FP32 model's own predictions without; `metric_options` configure its decoder. `mean`/`std` (pixel units)
    normalize image-folder data exactly as `quantize --mean/--std` and a recipe's `[preprocess]` do.
    The search screens built candidates in short side-by-side rounds and skips what cannot win (mixed INT8
    whose full-INT8 upper bound is not faster; builds 1.5× behind); `exhaustive=True` builds and times all.
    """
    model = Path(model)
    if not model.is_file():
        raise BadInputError("no such file", path=model)
    budget = accuracy_budget if isinstance(accuracy_budget, AccuracyBudget) else \
        parse_accuracy_budget(accuracy_budget, argument="--accuracy-budget")
    if metric_options:  # decoder options of the budget's metric (`layout=yolov8`, `conf=0.25`)
        budget = dataclasses.replace(budget, metric_options=tuple(metric_options))
    recipe = Recipe(
        name="auto", path=model.resolve(), model=ModelSource(onnx=model.resolve(), inputs=tuple(as_specs(
            list(input_shapes)))),
        targets=(TargetSettings(name=target, backend=backend, precision="auto", threads=threads,
                                latency=tuple(latency_budgets)),),
        simplify=False, calibration=_source(calib, 32), eval=_source(eval, 8),
        budgets=Budgets(latency=(), accuracy=budget), bench=BenchSettings(warmup=5, iterations=30, threads=threads),
        preprocess=PreprocessSettings(mean=tuple(mean) if mean is not None else Preprocess.mean,
                                      std=tuple(std) if std is not None else Preprocess.std)
        if mean is not None or std is not None else None,
    )
    output = Path(output)
    check_bundle_path(output)  # before minutes of search, not after
    check_replaceable(output)
    with tempfile.TemporaryDirectory(prefix="edgekit-auto-") as tmp:
        work = Path(report) if report is not None else Path(tmp)
        result = Pipeline(recipe, trust_code=False, exhaustive=exhaustive).run(
            work, cache_dir=cache_dir, use_cache=use_cache, report=report is not None)
        chosen = result.targets[0]
        if chosen.bundle is None:
            cls = UnsupportedError if chosen.status == "unsupported" else ToolchainMissingError
            raise cls(f"no candidate could be built for {target}: {chosen.reason}", path=model)
        with atomic_dir(output) as dest:
            shutil.rmtree(dest)
            shutil.copytree(chosen.bundle, dest)
    chosen.bundle = output
    return AutoCompileResult(output, chosen.adapter, chosen.precision_used, result)


def compile(model: Any, *, output: str | Path, precision: str | None = None, **kwargs: Any) -> Any:
    """Compile `model` for a target: a fixed precision (`edgekit.stages.compile.compile`), or `auto`.

    `precision=None` compiles at what the model is (a QDQ model → int8, else fp32). `auto` accepts
    `accuracy_budget`, `eval`, `calib`, `threads`, `target`, `backend`, `input_shapes` and returns an
    `AutoCompileResult`; other precisions return a `CompileResult`.
    """
    if precision == "auto":
        allowed = {"target", "backend", "accuracy_budget", "calib", "eval", "threads", "input_shapes",
                   "latency_budgets", "cache_dir", "use_cache", "report", "metric_options", "mean", "std",
                   "exhaustive"}
        unknown = sorted(k for k, v in kwargs.items() if k not in allowed and v is not None)
        if unknown:
            raise BadInputError(f"precision auto does not take {', '.join(unknown)}", path="--precision",
                                hint="give a fixed precision to use them")
        return compile_auto(model, output=output, **{k: v for k, v in kwargs.items() if v is not None})
    from edgekit.stages.compile import compile as compile_fixed

    return compile_fixed(model, output=output, precision=precision, **kwargs)
