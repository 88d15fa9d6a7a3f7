"""Pipeline: run a recipe (export → simplify → quantize → compile → accuracy → bench → checks), cached.

Every stage result is a content-addressed cache entry (edgekit/cache.py) keyed by the digest of
what it consumed, its options and the tool versions, so a re-run with nothing changed only
re-checks the budgets, editing a latency budget re-runs only the checks, and changing an option
re-runs from the first stage it affects. Each target gets its own bundle under `OUT/<target>/`
with the recipe's budgets written into `manifest.json` `info["budgets"]`, so `edgekit gate` can
re-check it later; `OUT/report.md` and `OUT/report.html` summarise the run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.artifact import BUNDLE_MANIFEST, Manifest, atomic_dir, sha256_file, to_jsonable
from edgekit.cache import CacheEntry, StageCache
from edgekit.errors import BadInputError, CheckFailedError, EdgekitError, ToolchainMissingError, UnsupportedError
from edgekit.recipe import DataSource, Recipe, TargetSettings, load_recipe

# Re-exported: the schema is part of the pipeline's public surface.
__all__ = ["Pipeline", "PipelineResult", "Recipe", "StageRun", "TargetResult", "load_recipe"]

FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
QUANT_PRECISIONS = ("int8", "mixed")


class _SameAsInt8(CheckFailedError):
    """The accuracy-aware search kept every node in INT8: the mixed candidate would duplicate int8."""


@dataclass
class StageRun:
    """One stage execution as seen by the user: cache hit or built, how long it took."""

    stage: str
    target: str | None
    hit: bool
    seconds: float
    key: str = ""
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.target}/{self.stage}" if self.target else self.stage


@dataclass
class Candidate:
    """One (adapter × precision) build judged on accuracy and latency (precision auto shows them all)."""

    adapter: str
    precision: str
    precision_used: str | None = None
    latency_ms: float | None = None
    latency_stat: str = "p50"
    latency_provenance: str = "not-run"
    accuracy: float | None = None  # task metric (labels) or None
    accuracy_drop: float | None = None  # percentage points vs the FP32 ONNX model
    cosine: float | None = None
    sqnr_db: float | None = None
    accuracy_provenance: str = "not-run"
    meets_budget: bool = False
    reason: str = ""
    chosen: bool = False
    bundle_entry: str = ""
    interleaved_ms: float | None = None  # median when timed side by side with the other passing candidates
    decision: str = ""  # on the chosen candidate of precision auto: the rule that decided (edgekit.autotune)


@dataclass
class TargetResult:
    target: str
    status: str  # passed | failed | skipped
    reason: str = ""
    bundle: Path | None = None
    adapter: str | None = None
    precision: str | None = None
    precision_used: str | None = None
    run_provenance: str = "not-run"
    latency: dict[str, float] = field(default_factory=dict)
    latency_provenance: str = "not-run"
    accuracy: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Any] = field(default_factory=list)  # edgekit.checks.budgets.BudgetVerdict
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class PipelineResult:
    recipe: str
    recipe_path: Path
    output: Path
    targets: list[TargetResult]
    stages: list[StageRun]
    reference: dict[str, Any]
    report_md: Path | None = None
    report_html: Path | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(t.status != "failed" for t in self.targets)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def stage_hits(self) -> dict[str, bool]:
        """`target/stage` (or `stage`) -> True when served from the cache (last run of that label wins)."""
        return {s.label: s.hit for s in self.stages}

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({
            "recipe": self.recipe, "recipe_path": self.recipe_path, "output": self.output,
            "passed": self.passed, "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
            "reference": self.reference,
            "targets": self.targets, "stages": self.stages,
            "report_md": self.report_md, "report_html": self.report_html,
        })


ProgressCallback = Callable[[str, StageRun | None, str], None]  # (event "start"|"done", run, label)


# ------------------------------------------------------------------------------------------ data

@dataclass
class EvalSet:
    """Evaluation (or calibration) samples loaded in memory: list of input dicts and optional labels."""

    samples: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    description: str
    synthetic: bool = False


def _write_samples(folder: Path, data: EvalSet) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(data.samples))))
    for i, sample in enumerate(data.samples):
        extra = {} if data.labels is None else {"labels": np.asarray([data.labels[i]], dtype=np.int64)}
        np.savez(folder / f"{i:0{width}d}.npz", **sample, **extra)


def _read_samples(folder: Path) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
    samples, labels = [], []
    for file in sorted(folder.glob("*.npz")):
        with np.load(file) as z:
            sample = {k: z[k] for k in z.files if k != "labels"}
            if "labels" in z.files:
                labels.append(int(np.asarray(z["labels"]).reshape(-1)[0]))
        samples.append(sample)
    return samples, (np.asarray(labels, dtype=np.int64) if len(labels) == len(samples) and labels else None)


def _load_data(source: DataSource, specs: list, *, default_samples: int, allow_code: bool, recipe: Recipe) -> EvalSet:
    """Materialise a data source as samples shaped for the model's inputs."""
    limit = source.samples or default_samples
    if source.source == "digits":
        from edgekit.zoo.digits import load_digits_dataset

        images, labels = load_digits_dataset(source.split)
        limit = source.samples or len(images)  # the whole split unless the recipe caps it
        images, labels = images[:limit], labels[:limit]
        if len(specs) != 1:
            raise BadInputError("the digits source feeds one-input models only", path=recipe.path)
        spec = specs[0]
        want = tuple(d for d in spec.concrete_shape()[1:])
        if tuple(images.shape[1:]) != want:
            raise BadInputError(f"digits samples are {tuple(images.shape[1:])} but input {spec.name!r} wants {want}",
                                path=recipe.path, hint="use a model with a 1x32x32 input (lenet5-digits)")
        samples = [{spec.name: images[i:i + 1].astype(np.float32)} for i in range(len(images))]
        return EvalSet(samples, labels, f"scikit-learn digits ({source.split} split, {len(samples)} samples)")
    if source.source == "synthetic":
        from edgekit.onnxio import random_inputs

        samples = [random_inputs(specs, seed=1000 + i) for i in range(limit)]
        return EvalSet(samples, None, f"synthetic random inputs ({limit}; not valid for task accuracy)", True)
    path = source.path
    if path is not None and path.is_file() and path.suffix == ".npz":
        with np.load(path) as z:
            labels = np.asarray(z["labels"]).reshape(-1) if "labels" in z.files else None
            names = [s.name for s in specs]
            missing = [n for n in names if n not in z.files]
            if missing:
                raise BadInputError(f"{path.name} lacks arrays for inputs {missing}", path=path,
                                    hint="store one array per model input (N first) and optional `labels`")
            count = min(limit, len(z[names[0]]))
            samples = [{n: np.asarray(z[n][i:i + 1]) for n in names} for i in range(count)]
        return EvalSet(samples, None if labels is None else labels[:count], f"{path.name} ({count} samples)")
    if path is not None and path.is_dir() and any(path.glob("*.npz")):
        samples, labels = _read_samples(path)
        samples, labels = samples[:limit], None if labels is None else labels[:limit]
        if samples and labels is not None:
            return EvalSet(samples, labels, f"{path} ({len(samples)} samples with labels)")
    # Everything else goes through the calibration readers (image folders, .npy dirs, py:module:fn).
    from edgekit.stages.calibration import open_source

    reader = open_source(str(path or source.source), specs, preprocess=recipe.preprocess, allow_code=allow_code,
                         limit=limit)
    samples = [dict(s) for s in reader]
    return EvalSet(samples, None, str(getattr(reader, "description", source.source)),
                   bool(getattr(reader, "synthetic", False)))


def _dir_digest(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    import hashlib

    digest = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            digest.update(p.relative_to(path).as_posix().encode())
            digest.update(sha256_file(p).encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------- budgets

def _verdicts(recipe: Recipe, settings: TargetSettings, chosen: Candidate, stats: dict[str, float]) -> list[Any]:
    """Latency and accuracy verdicts (edgekit.checks.budgets.BudgetVerdict) for the chosen build."""
    from edgekit.checks.budgets import BudgetVerdict, parse_budgets

    verdicts = []
    prov = chosen.latency_provenance
    for budget in parse_budgets([*recipe.budgets.latency, *settings.latency]):
        value = stats.get(budget.statistic)
        if value is None or prov in ("emulated", "not-run"):
            note = "no device latency here" + (" (host emulation time is not device latency)"
                                              if prov == "emulated" else "")
            verdicts.append(BudgetVerdict(budget.text, "latency", budget.statistic, budget.op, budget.limit_ms,
                                          value, "ms", "not-run", prov, "recipe", note))
            continue
        note = "estimated by a cost model, not measured on the device" if prov == "estimated" else ""
        verdicts.append(BudgetVerdict(budget.text, "latency", budget.statistic, budget.op, budget.limit_ms, value,
                                      "ms", "pass" if budget.holds(value) else "fail", prov, "recipe", note))
    acc = recipe.budgets.accuracy
    for key, value, limit, op in (
        ("max_drop", chosen.accuracy_drop, acc.max_drop, "<="),
        ("min_cosine", chosen.cosine, acc.min_cosine, ">="),
        ("min_sqnr_db", chosen.sqnr_db, acc.min_sqnr_db, ">="),
    ):
        if limit is None:
            continue
        unit = "dB" if key == "min_sqnr_db" else ""
        statistic = key.removeprefix("min_").removeprefix("max_")
        if value is None:
            note = "no labels on the eval set" if key == "max_drop" else "the bundle cannot run here"
            verdicts.append(BudgetVerdict(f"{key}={limit}", "accuracy", statistic, op, float(limit), None, unit,
                                          "not-run", "not-run", "recipe", note))
            continue
        value = float(value)
        passed = value >= limit if op == ">=" else value <= limit
        verdicts.append(BudgetVerdict(f"{key}={limit}", "accuracy", statistic, op, float(limit), value, unit,
                                      "pass" if passed else "fail", chosen.accuracy_provenance, "recipe",
                                      f"eval set: {recipe.eval.source if recipe.eval else 'synthetic'}"))
    return verdicts


# ------------------------------------------------------------------------------------------ pipeline

class Pipeline:
    """A validated recipe, ready to run. Build with `Pipeline.from_recipe(path)`."""

    def __init__(self, recipe: Recipe, *, trust_code: bool = False):
        if recipe.runs_code and not (recipe.trust_code and trust_code):
            which = "the recipe does not say `trust_code = true`" if not recipe.trust_code else \
                "the caller did not confirm it (pass --trust-code / trust_code=True)"
            raise BadInputError(f"recipe would run Python code (model.factory or a py: data source) but {which}",
                                path=recipe.path, hint="code runs only with trust_code = true AND --trust-code")
        self.recipe = recipe
        self.trust_code = trust_code

    @classmethod
    def from_recipe(cls, path: str | Path, *, trust_code: bool = False) -> Pipeline:
        return cls(load_recipe(path), trust_code=trust_code)

    # ------------------------------------------------------------------ run
    def run(
        self,
        output: str | Path | None = None,
        *,
        targets: list[str] | tuple[str, ...] | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        progress: ProgressCallback | None = None,
        report: bool = True,
    ) -> PipelineResult:
        """Run every stage (cached), write `OUT/<target>/` bundles and the report; never raises on budget misses."""
        recipe = self.recipe
        started = time.perf_counter()
        out = Path(output) if output is not None else Path("edgekit-out") / recipe.name
        selected = [recipe.target(t) for t in targets] if targets else list(recipe.targets)
        run = _Run(self, out, StageCache(cache_dir, enabled=use_cache), progress)
        skipped = {t.name: why for t in selected if (why := _preflight(t))}
        try:
            if len(skipped) < len(selected):
                run.prepare()
            results = [TargetResult(t.name, "skipped", skipped[t.name]) if t.name in skipped else run.target(t)
                       for t in selected]
            result = PipelineResult(recipe.name, recipe.path, out, results, run.stages, run.reference)
            result.seconds = time.perf_counter() - started
            if report:
                from edgekit.report import write_report

                result.report_md, result.report_html = write_report(result, out, cache=run.cache)
                result.seconds = time.perf_counter() - started
        finally:
            run.cache.close()
        return result


def _preflight(settings: TargetSettings) -> str:
    """Why no adapter of this target can build here ("" when one can): lets a run skip before exporting."""
    from edgekit.adapters.registry import adapter_names, get_adapter
    from edgekit.stages.compile import _unavailable_reason
    from edgekit.targets import get_profile

    profile = get_profile(settings.name)
    if settings.backend == "auto":
        names = [a for a in profile.adapters if a in adapter_names()]
    else:
        names = [n.strip() for n in settings.backend.split(",")]
    precision = "fp32" if settings.precision == "auto" else \
        ("int8" if settings.precision == "mixed" else settings.precision)
    reasons = []
    for name in names:
        try:
            why = _unavailable_reason(get_adapter(name), profile, precision)
        except EdgekitError as exc:
            if isinstance(exc, BadInputError):
                raise
            why = exc.one_line()
        if not why:
            return ""
        reasons.append(f"{name}: {why}")
    if not names:
        return f"no adapter for {profile.name} is installed here"
    return "; ".join(reasons)


class _Run:
    """State of one pipeline run (cache, progress, shared artifacts)."""

    def __init__(self, pipeline: Pipeline, out: Path, cache: StageCache, progress: ProgressCallback | None):
        self.recipe = pipeline.recipe
        self.allow_code = pipeline.trust_code and pipeline.recipe.trust_code
        self.out = out
        self.cache = cache
        self.progress = progress
        self.stages: list[StageRun] = []
        self.reference: dict[str, Any] = {}
        self._quantized: dict[str, CacheEntry] = {}

    # ------------------------------------------------------------------ stage helper
    def stage(self, name: str, target: str | None, *, inputs: Any, options: Any,
              build: Callable[[Path], dict[str, Any] | None]) -> CacheEntry:
        from edgekit.cache import stage_key

        key = stage_key(name, inputs=inputs, options=options)
        label = f"{target}/{name}" if target else name
        if self.progress:
            self.progress("start", None, label)
        t0 = time.perf_counter()
        entry = self.cache.get_or_build(name, key, build)
        record = StageRun(name, target, entry.hit, time.perf_counter() - t0, key, str(entry.meta.get("detail", "")))
        self.stages.append(record)
        if self.progress:
            self.progress("done", record, label)
        return entry

    # ------------------------------------------------------------------ shared stages
    def prepare(self) -> None:
        recipe = self.recipe
        self.model_entry = self._export()
        self.model_path = self.model_entry.file("model.onnx")
        if recipe.simplify:
            self.model_entry = self._simplify(self.model_entry)
            self.model_path = self.model_entry.file("model.onnx")
        from edgekit.onnxio import input_specs, load_onnx

        self.specs = input_specs(load_onnx(self.model_path, load_weights=False))
        self.calib_entry = self._data("calibration", recipe.calibration, recipe.quantize.calib_samples) \
            if recipe.calibration is not None else None
        eval_source = recipe.eval or DataSource("synthetic", samples=8)
        self.eval_entry = self._data("eval", eval_source, 200)
        self.reference_entry = self._reference()
        self.reference = dict(self.reference_entry.meta)

    def _export(self) -> CacheEntry:
        m = self.recipe.model
        inputs: dict[str, Any] = {"kind": m.kind}
        if m.zoo:
            inputs["zoo"] = m.zoo
        for attr in ("onnx", "torchscript", "weights"):
            value = getattr(m, attr)
            if value is not None:
                inputs[attr] = sha256_file(value)
        if m.factory:
            inputs["factory"] = m.factory
            inputs["factory_source"] = _module_digest(m.factory.split(":")[0])
        options = {"opset": m.opset, "inputs": [s.to_json() for s in m.inputs]}
        name = "import" if m.kind == "onnx" else "export"

        def build(tmp: Path) -> dict[str, Any]:
            dest = tmp / "model.onnx"
            if m.onnx is not None:
                from edgekit.onnxio import load_onnx

                load_onnx(m.onnx)
                shutil.copyfile(m.onnx, dest)
                return {"detail": f"copied {m.onnx.name}"}
            return _export_torch(m, dest)

        return self.stage(name, None, inputs=inputs, options=options, build=build)

    def _simplify(self, src: CacheEntry) -> CacheEntry:
        def build(tmp: Path) -> dict[str, Any]:
            return _simplify_model(src.file("model.onnx"), tmp / "model.onnx")

        return self.stage("simplify", None, inputs={"model": src.digest}, options={}, build=build)

    def _data(self, role: str, source: DataSource, default_samples: int) -> CacheEntry:
        inputs: dict[str, Any] = {"source": source.source, "split": source.split, "samples": source.samples,
                                  "default": default_samples, "specs": [s.to_json() for s in self.specs]}
        if source.path is not None:
            inputs["content"] = _dir_digest(source.path)
        if self.recipe.preprocess is not None:
            inputs["preprocess"] = to_jsonable(self.recipe.preprocess)

        def build(tmp: Path) -> dict[str, Any]:
            data = _load_data(source, self.specs, default_samples=default_samples, allow_code=self.allow_code,
                              recipe=self.recipe)
            if not data.samples:
                raise BadInputError(f"data source {source.source!r} gave no samples", path=self.recipe.path)
            _write_samples(tmp / "samples", data)
            return {"detail": data.description, "description": data.description, "synthetic": data.synthetic,
                    "count": len(data.samples), "labels": data.labels is not None}

        return self.stage(f"data-{role}", None, inputs=inputs, options={}, build=build)

    def load_eval(self) -> EvalSet:
        samples, labels = _read_samples(self.eval_entry.file("samples"))
        meta = self.eval_entry.meta
        return EvalSet(samples, labels, str(meta.get("description", "")), bool(meta.get("synthetic")))

    def _reference(self) -> CacheEntry:
        def build(tmp: Path) -> dict[str, Any]:
            from edgekit.checks.numerics import task_accuracy
            from edgekit.onnxio import ort_session

            data = self.load_eval()
            session = ort_session(self.model_path, threads=self.recipe.bench.threads)
            names = [o.name for o in session.get_outputs()]
            outs = [session.run(names, s) for s in data.samples]
            stacked = {n: np.concatenate([o[i] for o in outs]) for i, n in enumerate(names)}
            np.savez(tmp / "reference.npz", **stacked)
            meta: dict[str, Any] = {"outputs": names, "eval": data.description, "synthetic": data.synthetic,
                                    "provenance": "measured", "samples": len(data.samples)}
            if data.labels is not None:
                meta["accuracy"] = task_accuracy(stacked[names[0]], data.labels)
                meta["detail"] = f"FP32 ONNX accuracy {meta['accuracy']:.4f}"
            else:
                meta["detail"] = "FP32 ONNX outputs (no labels: accuracy judged by cosine/SQNR)"
            return meta

        return self.stage("reference", None, inputs={"model": self.model_entry.digest,
                                                    "eval": self.eval_entry.digest}, options={}, build=build)

    # ------------------------------------------------------------------ per target
    def target(self, settings: TargetSettings) -> TargetResult:
        try:
            return self._target(settings)
        except (ToolchainMissingError, UnsupportedError) as exc:
            return TargetResult(settings.name, "skipped", exc.one_line())
        except CheckFailedError as exc:  # compile verification or quantization budget did not hold
            return TargetResult(settings.name, "failed", exc.one_line())

    def _target(self, settings: TargetSettings) -> TargetResult:
        from edgekit.targets import get_profile

        profile = get_profile(settings.name)
        plan = self._candidates(settings, profile)
        candidates: list[Candidate] = []
        reasons: list[str] = []
        for adapter, precision in plan:
            try:
                candidates.append(self._candidate(settings, adapter, precision))
            except (ToolchainMissingError, UnsupportedError, CheckFailedError) as exc:
                if len(plan) == 1:
                    raise
                reasons.append(f"{adapter}/{precision}: {exc.one_line()}")
                candidates.append(Candidate(adapter or "auto", precision, reason=exc.one_line()))
                self._note_failure(settings.name, adapter, precision, exc)
        built = [c for c in candidates if c.bundle_entry]
        if not built:
            raise ToolchainMissingError(f"no candidate could be built for {settings.name}: " + "; ".join(reasons))
        chosen = self._choose(built, threads=settings.threads or self.recipe.bench.threads) \
            if settings.precision == "auto" else built[0]
        chosen.chosen = True
        return self._finish(settings, chosen, candidates)

    def _note_failure(self, target: str, adapter: str | None, precision: str, exc: EdgekitError) -> None:
        # Shown in the progress only: the candidates table keeps the reason; not a stage of the run.
        record = StageRun(f"candidate[{adapter or 'auto'}-{precision}]", target, False, 0.0, "",
                          f"rejected: {exc.one_line()}")
        if self.progress:
            label = record.label
            self.progress("start", None, label)
            self.progress("done", record, label)

    def _candidates(self, settings: TargetSettings, profile: Any) -> list[tuple[str | None, str]]:
        """(adapter, precision) pairs: one for a fixed precision, every usable pair for `auto`."""
        if settings.precision != "auto":
            backend = None if settings.backend == "auto" else settings.backend
            if backend is None:
                from edgekit.adapters.registry import adapter_names

                installed = [a for a in profile.adapters if a in adapter_names()]
                if len(installed) == 1:  # one adapter serves the target: name it (it decides who quantizes)
                    backend = installed[0]
            return [(backend, settings.precision)]
        from edgekit.adapters.registry import get_adapter

        names = list(profile.adapters) if settings.backend == "auto" else settings.backend.split(",")
        pairs: list[tuple[str | None, str]] = []
        skipped = []
        for name in names:
            name = name.strip()
            try:
                adapter = get_adapter(name)
                caps = adapter.capabilities(profile)
            except EdgekitError as exc:
                skipped.append(f"{name}: {exc.one_line()}")
                continue
            if not caps.toolchain.available:
                skipped.append(f"{name}: {caps.toolchain.reason}")
                continue
            for precision in caps.precisions:
                if precision in profile.precisions or (precision == "mixed" and "int8" in profile.precisions):
                    pairs.append((name, precision))
            if "int8" in caps.precisions and "mixed" not in caps.precisions and self._budget_for_mixed():
                pairs.append((name, "mixed"))
        if not pairs:
            raise ToolchainMissingError(f"no adapter usable for {settings.name} here: " + "; ".join(skipped))
        return pairs

    def _budget_for_mixed(self) -> bool:
        b = self.recipe.budgets.accuracy
        return self.recipe.quantize.max_drop is not None or b.max_drop is not None or b.min_sqnr_db is not None

    def _quantize(self, mixed: bool) -> CacheEntry:
        """Plain INT8 (all nodes) or accuracy-aware mixed INT8 (sensitive nodes left in float)."""
        tag = "mixed" if mixed else "int8"
        if tag in self._quantized:
            return self._quantized[tag]
        if self.calib_entry is None:
            raise BadInputError("INT8 needs `data.calibration` in the recipe", path=self.recipe.path)
        q = self.recipe.quantize
        budget = self.recipe.budgets.accuracy
        max_drop = min_sqnr = None
        if mixed and self.eval_entry.meta.get("labels"):
            max_drop = q.max_drop if q.max_drop is not None else (budget.max_drop if budget.max_drop is not None
                                                                  else 1.0)  # points
        elif mixed:  # no labels: the accuracy-aware search works on output SQNR vs FP32
            min_sqnr = q.min_sqnr if q.min_sqnr is not None else (budget.min_sqnr_db if budget.min_sqnr_db
                                                                  is not None else 20.0)
        options = {"method": q.method, "per_channel": q.per_channel, "symmetric_activations": q.symmetric_activations,
                   "exclude": list(q.exclude), "calib_samples": q.calib_samples, "max_drop": max_drop,
                   "min_sqnr": min_sqnr}

        def build(tmp: Path) -> dict[str, Any]:
            return _quantize_model(self.model_path, tmp / "model.onnx", self.calib_entry.file("samples"),
                                   self.eval_entry.file("samples") if mixed else None, options,
                                   threads=self.recipe.bench.threads)

        entry = self.stage(f"quantize-{tag}", None,
                           inputs={"model": self.model_entry.digest, "calib": self.calib_entry.digest,
                                   "eval": self.eval_entry.digest if mixed else None},
                           options=options, build=build)
        self._quantized[tag] = entry
        return entry

    def _candidate(self, settings: TargetSettings, adapter: str | None, precision: str) -> Candidate:
        model_entry = self.model_entry
        native = False
        if precision in QUANT_PRECISIONS:
            native = adapter is not None and _native_int8(adapter) and precision == "int8"
            if not native:
                model_entry = self._quantize(mixed=precision == "mixed")
                plain = self._quantized.get("int8")
                same = plain is not None and (plain.digest == model_entry.digest
                                              or not model_entry.meta.get("excluded"))
                if precision == "mixed" and same and adapter is not None and not _native_int8(adapter):
                    raise _SameAsInt8("mixed INT8 kept no node in float: same build as the int8 candidate")
        tag = f"{adapter or 'auto'}-{precision}"
        compile_options = {"target": settings.name, "backend": adapter or "auto", "precision": precision,
                           "threads": settings.threads, "adapter_options": settings.adapter_options,
                           "mean": self.recipe.preprocess.mean if self.recipe.preprocess else None,
                           "std": self.recipe.preprocess.std if self.recipe.preprocess else None}

        def build_compile(tmp: Path) -> dict[str, Any]:
            return _compile_bundle(model_entry.file("model.onnx"), tmp / "bundle", compile_options,
                                   calib=self.calib_entry.file("samples") if self.calib_entry and
                                   precision in QUANT_PRECISIONS else None,
                                   native_int8=native)

        bundle = self.stage(f"compile[{tag}]", settings.name,
                            inputs={"model": model_entry.digest,
                                    "calib": self.calib_entry.digest if native and self.calib_entry else None},
                            options=compile_options, build=build_compile)
        bundle_path = bundle.file("bundle")
        manifest = Manifest.read(bundle_path / BUNDLE_MANIFEST)
        info = manifest.info
        cand = Candidate(str(info.get("adapter", adapter)), precision, info.get("precision_used"),
                         bundle_entry=str(bundle.path))
        run_prov = str(info.get("run_provenance", "measured"))

        def build_accuracy(tmp: Path) -> dict[str, Any]:
            return _evaluate_bundle(bundle_path, self, threads=settings.threads or self.recipe.bench.threads)

        if run_prov in ("measured", "emulated"):
            acc = self.stage(f"accuracy[{tag}]", settings.name,
                             inputs={"bundle": bundle.digest, "eval": self.eval_entry.digest,
                                     "reference": self.reference_entry.digest}, options={}, build=build_accuracy)
            am = acc.meta
            cand.accuracy, cand.cosine, cand.sqnr_db = _float(am.get("accuracy")), _float(am.get("cosine")), \
                _float(am.get("sqnr_db"))
            cand.accuracy_drop = _float(am.get("drop"))
            cand.accuracy_provenance = str(am.get("provenance", run_prov))
        bench_opts = {"warmup": self.recipe.bench.warmup, "iterations": self.recipe.bench.iterations,
                      "threads": settings.threads or self.recipe.bench.threads, "host": _host_fingerprint()}

        def build_bench(tmp: Path) -> dict[str, Any]:
            return _bench_bundle(bundle_path, bench_opts)

        bench = self.stage(f"bench[{tag}]", settings.name, inputs={"bundle": bundle.digest},
                           options=bench_opts, build=build_bench)
        lat_stats: dict[str, float] = {k: float(v) for k, v in dict(bench.meta.get("stats") or {}).items()
                                       if isinstance(v, (int, float))}
        cand.latency_provenance = str(bench.meta.get("provenance", "not-run"))
        cand._samples = list(bench.meta.get("samples_ms") or [])  # type: ignore[attr-defined]
        cand.latency_ms = lat_stats.get("p50")
        cand._stats = lat_stats  # type: ignore[attr-defined]
        cand._manifest = manifest  # type: ignore[attr-defined]
        ok, why = self._accuracy_ok(cand)
        cand.meets_budget, cand.reason = ok, why
        if precision == "mixed" and not native:
            kept = len(model_entry.meta.get("excluded") or [])
            cand.reason = f"QDQ from the quantize stage, {kept} node(s) kept in float; {why}"
        return cand

    def _accuracy_ok(self, cand: Candidate) -> tuple[bool, str]:
        b = self.recipe.budgets.accuracy
        if cand.accuracy_provenance == "not-run":
            return (b.empty, "accuracy not run here" if not b.empty else "no accuracy budget")
        fails = []
        if b.max_drop is not None and cand.accuracy_drop is not None and cand.accuracy_drop > b.max_drop:
            fails.append(f"drop {cand.accuracy_drop:.2f} points > {b.max_drop}")
        if b.min_cosine is not None and cand.cosine is not None and cand.cosine < b.min_cosine:
            fails.append(f"cosine {cand.cosine:.5f} < {b.min_cosine}")
        if b.min_sqnr_db is not None and cand.sqnr_db is not None and cand.sqnr_db < b.min_sqnr_db:
            fails.append(f"SQNR {cand.sqnr_db:.1f} dB < {b.min_sqnr_db}")
        return (not fails, "; ".join(fails) or "meets the accuracy budget")

    @staticmethod
    def _choose(cands: list[Candidate], threads: int | None = None) -> Candidate:
        """Passing candidates timed side by side, float kept unless INT8 is clearly faster; if none
        passes, the most accurate one. The rule is `edgekit.autotune.choose_candidate`'s."""
        from edgekit.autotune import choose_candidate

        return choose_candidate(cands, threads=threads)

    # ------------------------------------------------------------------ checks + bundle
    def _finish(self, settings: TargetSettings, chosen: Candidate, candidates: list[Candidate]) -> TargetResult:
        t0 = time.perf_counter()
        if self.progress:
            self.progress("start", None, f"{settings.name}/checks")
        recipe = self.recipe
        stats: dict[str, float] = getattr(chosen, "_stats", {})
        manifest: Manifest = chosen._manifest  # type: ignore[attr-defined]
        verdicts = _verdicts(recipe, settings, chosen, stats)
        failed = [v for v in verdicts if v.status == "fail"]
        bundle_out = self.out / settings.name
        info = dict(manifest.info)
        budgets: dict[str, Any] = {"latency": [*recipe.budgets.latency, *settings.latency]}
        if not recipe.budgets.accuracy.empty:
            budgets["accuracy"] = recipe.budgets.accuracy.to_json()
        info["budgets"] = budgets
        info["recipe"] = {"name": recipe.name, "path": str(recipe.path)}
        manifest.info = info
        if chosen.accuracy_drop is not None:  # top level, so `edgekit gate` finds it first (points)
            manifest.metrics["accuracy_drop"] = chosen.accuracy_drop
        manifest.metrics["pipeline"] = to_jsonable({
            "latency_ms": stats, "latency_provenance": chosen.latency_provenance,
            "accuracy": chosen.accuracy, "accuracy_drop": chosen.accuracy_drop, "cosine": chosen.cosine,
            "sqnr_db": chosen.sqnr_db, "accuracy_provenance": chosen.accuracy_provenance,
            "reference_accuracy": self.reference.get("accuracy"),
            "verdicts": verdicts,
        })
        if len(candidates) > 1:
            manifest.metrics["candidates"] = to_jsonable(
                [{k: v for k, v in vars(c).items() if not k.startswith("_") and k != "bundle_entry"}
                 for c in candidates])
        with atomic_dir(bundle_out) as tmp:
            shutil.rmtree(tmp)
            shutil.copytree(Path(chosen.bundle_entry) / "bundle", tmp)
            (tmp / BUNDLE_MANIFEST).write_text(manifest.dumps())
        status = "failed" if failed else "passed"
        reason = "; ".join(f"{v.name}: {v.measured:.4g} {v.unit} ({v.provenance})".replace(" )", ")")
                           for v in failed)
        result = TargetResult(
            settings.name, status, reason, bundle_out, chosen.adapter, chosen.precision, chosen.precision_used,
            str(manifest.info.get("run_provenance", "measured")), stats, chosen.latency_provenance,
            {"accuracy": chosen.accuracy, "drop": chosen.accuracy_drop, "cosine": chosen.cosine,
             "sqnr_db": chosen.sqnr_db, "provenance": chosen.accuracy_provenance},
            verdicts, candidates,
        )
        record = StageRun("checks", settings.name, False, time.perf_counter() - t0, "", status)
        self.stages.append(record)
        if self.progress:
            self.progress("done", record, f"{settings.name}/checks")
        return result


# ------------------------------------------------------------------------------ stage adapters
# Thin wrappers over the stage modules, so the pipeline depends on one call site per stage.

def _export_torch(m: Any, dest: Path) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("edgekit.stages.export") is None and m.zoo:
        return _export_zoo_fallback(m, dest)
    from edgekit.stages import export as export_stage

    if m.zoo:
        source = f"zoo:{m.zoo}"
    elif m.torchscript is not None:
        source = str(m.torchscript)
    else:
        source = m.factory  # only reached with trust_code (checked by Pipeline)
    kwargs: dict[str, Any] = {"output": dest, "input_shapes": list(m.inputs) or None}
    if m.opset:
        kwargs["opset"] = m.opset
    if m.weights is not None:
        kwargs["weights"] = m.weights
    result = export_stage.export(source, **kwargs)
    produced = Path(getattr(result, "path", getattr(getattr(result, "artifact", None), "path", dest)))
    if produced != dest and produced.exists():
        shutil.copyfile(produced, dest)
    with contextlib.suppress(FileNotFoundError):
        dest.with_name(dest.name + ".manifest.json").unlink()
    return {"detail": f"exported {source}"}


def _export_zoo_fallback(m: Any, dest: Path) -> dict[str, Any]:
    """Zoo model -> ONNX with torch's TorchScript exporter (used only when the export stage is absent)."""
    import torch

    from edgekit.zoo import create, get_entry

    entry = get_entry(m.zoo)
    model = create(m.zoo)
    if m.weights is not None:
        model.load_state_dict(torch.load(m.weights, map_location="cpu", weights_only=True))
    specs = list(m.inputs) or list(entry.inputs)
    args = tuple(torch.zeros(s.concrete_shape()) for s in specs)
    torch.onnx.export(model.eval(), args, str(dest), input_names=[s.name for s in specs],
                      output_names=list(entry.outputs), opset_version=m.opset or 17, dynamo=False)
    return {"detail": f"exported zoo:{m.zoo} (torch.onnx, TorchScript exporter)"}


def _simplify_model(src: Path, dest: Path) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("edgekit.stages.simplify") is None:
        import onnx
        import onnxsim

        model, ok = onnxsim.simplify(onnx.load(str(src)))
        onnx.save(model if ok else onnx.load(str(src)), str(dest))
        return {"detail": "simplified (onnxsim)" if ok else "onnxsim could not verify; kept the original"}
    from edgekit.stages import simplify as simplify_stage

    result = simplify_stage.simplify(src, output=dest)
    produced = Path(getattr(result, "path", getattr(getattr(result, "artifact", None), "path", dest)))
    if produced != dest and produced.exists():
        shutil.copyfile(produced, dest)
    with contextlib.suppress(FileNotFoundError):
        dest.with_name(dest.name + ".manifest.json").unlink()
    return {"detail": "simplified"}


def _quantize_model(src: Path, dest: Path, calib: Path, eval_dir: Path | None, options: dict[str, Any],
                    *, threads: int | None) -> dict[str, Any]:
    from edgekit.stages import quantize as quantize_stage

    kwargs: dict[str, Any] = {k: options[k] for k in ("method", "per_channel", "symmetric_activations",
                                                       "calib_samples")}
    kwargs["exclude"] = tuple(options["exclude"])
    kwargs["speed"] = False  # the pipeline measures latency itself, per target
    kwargs["sensitivity"] = False  # per-node search only when full INT8 misses the budget
    if eval_dir is not None:
        kwargs["eval"] = str(eval_dir)
        kwargs["max_drop"], kwargs["min_sqnr"] = options["max_drop"], options["min_sqnr"]
    result = quantize_stage.quantize(src, dest, str(calib), threads=threads, **kwargs)
    produced = Path(getattr(getattr(result, "artifact", None), "path", dest))
    if produced != dest and produced.exists():
        shutil.copyfile(produced, dest)
    with contextlib.suppress(FileNotFoundError):
        dest.with_name(dest.name + ".manifest.json").unlink()
    excluded = list(getattr(result, "excluded", []) or [])
    return {"detail": f"INT8 QDQ, {len(excluded)} node(s) kept in float" if eval_dir else "INT8 QDQ",
            "excluded": excluded, "report": to_jsonable(getattr(result, "report", None))}


def _native_int8(adapter: str) -> bool:
    from edgekit.adapters.registry import get_adapter

    try:
        return bool(getattr(get_adapter(adapter), "native_int8", False))
    except EdgekitError:
        return False


def _compile_bundle(model: Path, dest: Path, options: dict[str, Any], *, calib: Path | None,
                    native_int8: bool) -> dict[str, Any]:
    from edgekit.stages import compile as compile_stage

    precision = options["precision"]
    if precision == "mixed":
        precision = "int8"  # a mixed QDQ model is compiled as INT8 (float where the model kept float)
    kwargs: dict[str, Any] = {"target": options["target"], "backend": options["backend"], "precision": precision,
                              "output": dest, "threads": options["threads"]}
    if options["adapter_options"]:
        kwargs["adapter_options"] = dict(options["adapter_options"])
    if calib is not None:
        kwargs["calib"] = str(calib)
    if options.get("mean") is not None:
        kwargs["mean"], kwargs["std"] = options["mean"], options["std"]
    result = compile_stage.compile(model, **kwargs)
    bundle = Path(result.bundle.path)
    if bundle != dest:
        shutil.copytree(bundle, dest)
    info = Manifest.read(dest / BUNDLE_MANIFEST).info
    return {"detail": f"{info.get('adapter')} {info.get('precision_used', precision)} "
                      f"({info.get('run_provenance', 'measured')})"}


def _evaluate_bundle(bundle: Path, run: _Run, *, threads: int | None) -> dict[str, Any]:
    from edgekit.checks.numerics import cosine_similarity, sqnr_db, task_accuracy
    from edgekit.stages.compile import load

    data = run.load_eval()
    with np.load(run.reference_entry.file("reference.npz")) as z:
        reference = {k: z[k] for k in z.files}
    runner = load(bundle, threads=threads)
    try:
        outs = [runner.run(s) for s in data.samples]
    finally:
        runner.close()
    provenance = str(getattr(runner, "provenance", "measured"))
    names = list(reference)
    got = {n: np.concatenate([np.asarray(o[n]).astype(np.float32) for o in outs]) for n in names}
    meta: dict[str, Any] = {
        "cosine": min(cosine_similarity(reference[n], got[n]) for n in names),
        "sqnr_db": min(sqnr_db(reference[n], got[n]) for n in names),
        "provenance": provenance, "samples": len(data.samples),
    }
    if data.labels is not None:
        meta["accuracy"] = task_accuracy(got[names[0]], data.labels)
        meta["drop"] = 100.0 * (float(run.reference.get("accuracy", meta["accuracy"])) - meta["accuracy"])  # points
        meta["detail"] = f"accuracy {meta['accuracy']:.4f} ({provenance})"
    else:
        meta["detail"] = f"cosine {meta['cosine']:.5f}, SQNR {meta['sqnr_db']:.1f} dB ({provenance})"
    return meta


def _bench_bundle(bundle: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Latency of a bundle through `edgekit.checks.latency.bench` (estimate when the device is absent)."""
    from edgekit.checks.latency import bench

    try:
        result = bench(bundle, warmup=options["warmup"], iters=options["iterations"], threads=options["threads"],
                       max_extend_rounds=1)
    except ToolchainMissingError as exc:
        return {"stats": {}, "provenance": "not-run", "detail": f"latency not run: {exc.message}"}
    if result.stats is not None:
        stats = result.stats.to_json()
    elif result.estimate is not None:
        value = float(result.estimate["latency_ms"])
        stats = {k: value for k in ("min", "mean", "p50", "p90", "p95", "p99", "max")}
    else:
        stats = {}
    p50 = stats.get("p50")
    detail = f"p50 {p50:.3f} ms ({result.provenance})" if p50 is not None else f"no latency ({result.provenance})"
    return {"stats": stats, "provenance": result.provenance, "samples_ms": list(result.samples_ms)[:2000],
            "estimate": result.estimate, "warnings": list(result.warnings), "detail": detail}


def _module_digest(module: str) -> str | None:
    """sha256 of a factory's source file, so editing the model code re-exports (None when not found)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return sha256_file(origin) if origin and Path(origin).is_file() else None


def _float(value: Any) -> float | None:
    """JSON metadata stores inf/nan as strings; bring them back as floats."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _host_fingerprint() -> str:
    import platform

    import psutil

    return f"{platform.machine()}-{platform.processor() or platform.node()}-{psutil.cpu_count(logical=True)}"


def result_summary(result: PipelineResult) -> str:
    return json.dumps(result.to_json(), indent=2)


def gate(
    path: str | Path,
    *,
    warmup: int = 10,
    iters: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    output: str | Path | None = None,
    cache_dir: str | Path | None = None,
    trust_code: bool = False,
) -> Any:
    """`edgekit gate RECIPE.toml`: run the recipe (cached), then re-check each bundle's stored budgets fresh.

    Returns an `edgekit.checks.budgets.GateResult` whose verdicts are prefixed by target; a target that
    failed without a bundle is a failure, a skipped target a note. Bundles go to a temp dir unless
    `output` is given.
    """
    import tempfile

    from edgekit.checks.budgets import GateResult
    from edgekit.checks.budgets import gate as gate_bundle

    pipeline = Pipeline.from_recipe(path, trust_code=trust_code)
    with contextlib.ExitStack() as stack:
        out = Path(output) if output is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="edgekit-gate-")))
        result = pipeline.run(out, cache_dir=cache_dir, report=output is not None)
        recipe = pipeline.recipe
        gated = GateResult(str(path), {"latency": list(recipe.budgets.latency),
                                       "accuracy": recipe.budgets.accuracy.to_json()})
        for target in result.targets:
            if target.status == "skipped":
                gated.notes.append(f"{target.target}: skipped ({target.reason})")
                continue
            if target.bundle is None or not (target.bundle / BUNDLE_MANIFEST).is_file():
                gated.failures.append(f"{target.target}: {target.reason}")
                continue
            sub = gate_bundle(target.bundle, warmup=warmup, iters=iters, duration=duration, threads=threads)
            for verdict in sub.verdicts:
                verdict.name = f"{target.target}: {verdict.name}"
            gated.verdicts += sub.verdicts
            gated.notes += [f"{target.target}: {n}" for n in sub.notes]
    return gated
