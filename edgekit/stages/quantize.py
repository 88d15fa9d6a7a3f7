"""INT8 post-training quantization you can trust: ORT QDQ + accuracy report + sensitivity + fallback.

Flow: refuse already-quantized input -> validate calibration/eval data against the model inputs ->
prepare (opset upgrade where per-channel needs it, ORT quant_pre_process) -> calibrate once, streamed
in chunks (ranges cached) -> write QDQ -> load it in onnxruntime -> compare with FP32 on evaluation
samples -> rank nodes by the harm of quantizing each alone -> (budget) keep the most sensitive nodes in
float step by step until the budget holds, or fail with exit 1 -> time FP32 vs INT8 here -> write the
model and its manifest atomically. Nothing is written when any step fails.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import onnx

from edgekit.artifact import Artifact, Manifest, StageRecord, save_model_artifact, sha256_file, to_jsonable
from edgekit.checks.metrics import Metric, MetricOptions, canonical_metric_name, get_metric
from edgekit.checks.verify import no_signal_message
from edgekit.errors import BadInputError, CheckFailedError, UnsupportedError
from edgekit.onnxio import check_runs, input_specs, is_ort_error, load_onnx, output_specs, sample_feeds
from edgekit.progress import emit
from edgekit.qdq import (
    DATA_MOVEMENT_OPS,
    METHODS,
    Prepared,
    QdqSettings,
    calibrate,
    check_loads,
    has_int8_compute,
    prepare_model,
    quantize_qdq,
    quantized_nodes,
    refuse_quantized,
    resolve_excludes,
)
from edgekit.specs import Preprocess
from edgekit.stages._quant_eval import (
    AccuracyReport,
    EvalSet,
    NodeSensitivity,
    SpeedReport,
    evaluate,
    load_evalset,
    local_sqnr_loss,
    measure_speed,
    rank_nodes,
)
from edgekit.stages.calibration import CalibrationReader, open_source
from edgekit.stages.datasets import open_data
from edgekit.stages.node_speed import NodeGains, node_gains, speed_aware_order

LOCAL_SAMPLES = 8  # samples for the per-layer SQNR pre-ranking
MIN_HOLDOUT = 5  # below this many calibration samples, evaluation reuses them (flagged)


@dataclass(frozen=True)
class QuantizeOptions:
    """Every knob of the quantize stage, with its default (stored in the manifest as JSON)."""

    method: str = "minmax"  # minmax | entropy | percentile
    per_channel: bool = True  # per-channel weights (opset upgraded to >= 13 when needed)
    symmetric_activations: bool = False  # int8 symmetric activations (NPU-style) instead of uint8 asymmetric
    activation_type: str = "auto"  # auto | uint8 | int8
    weight_type: str = "int8"
    exclude: tuple[str, ...] = ()  # node names or op types kept in float
    calib_samples: int = 100
    eval_samples: int = 200  # cap on evaluation samples held in memory
    holdout: float = 0.2  # share of calibration samples held out for evaluation when no eval source
    max_drop: float | None = None  # metric drop budget in points (top-1 with labels, or `metric`, labels or not)
    metric: str | None = None  # task metric (top1, dice, map50, text-f1, py:mod:fn...): accuracy or agreement
    metric_options: MetricOptions = field(default_factory=MetricOptions)
    min_sqnr: float | None = None  # output SQNR budget in dB
    require_speedup: bool = False
    threads: int | None = None
    sensitivity: bool = True
    sensitivity_nodes: int = 12  # cap on nodes quantized alone (pre-ranked by per-layer SQNR loss above it)
    sensitivity_samples: int = 16
    speed: bool = True
    speed_seconds: float = 1.0  # per model, interleaved
    speed_aware: bool = True  # fallback keeps float first where harm per ms of measured INT8 gain is highest
    pre_process: bool = True  # ORT quant_pre_process (shape inference + optimization)
    percentile: float = 99.999
    calib_chunk: int = 16  # samples per calibration batch: bounds memory

    def qdq(self) -> QdqSettings:
        return QdqSettings(self.method, self.per_channel, self.symmetric_activations, self.activation_type,
                           self.weight_type)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise BadInputError(f"unknown method {self.method!r}", path="--method", hint=f"one of {', '.join(METHODS)}")
        if self.max_drop is not None and self.min_sqnr is not None:
            raise BadInputError("give one budget, not both", path="--max-drop/--min-sqnr")
        if self.max_drop is not None and not 0 <= self.max_drop <= 100:
            raise BadInputError(f"--max-drop must be 0..100 points, got {self.max_drop}", path="--max-drop")
        if self.min_sqnr is not None and not abs(self.min_sqnr) < float("inf"):  # NaN and inf fail this too
            raise BadInputError(f"--min-sqnr must be a finite number of dB, got {self.min_sqnr}", path="--min-sqnr")
        if self.metric is not None:
            canonical_metric_name(self.metric)
        for name in ("calib_samples", "eval_samples", "sensitivity_nodes", "sensitivity_samples", "calib_chunk"):
            if getattr(self, name) < 1:
                raise BadInputError(f"{name} must be >= 1", path=f"--{name.replace('_', '-')}")


@dataclass(frozen=True)
class BudgetStep:
    """One try of the accuracy-aware search: which nodes were kept in float and what it gave."""

    kept_float: tuple[str, ...]
    value: float | None  # None: the budget's figure could not be computed (dead or unmeasurable candidate)
    met: bool


@dataclass
class QuantizeResult:
    """What `quantize` produced and measured. `artifact` is None only on a failure result attached to an error."""

    artifact: Artifact | None
    report: AccuracyReport
    full_int8_report: AccuracyReport
    sensitivity: list[NodeSensitivity]
    excluded: list[str]  # kept in float by the accuracy-aware search
    user_excluded: list[str]
    speed: SpeedReport | None
    options: QuantizeOptions
    calibration: dict[str, Any]
    quantized: list[tuple[str, str]]  # (node, op_type) running in INT8 in the result
    steps: list[BudgetStep] = field(default_factory=list)
    budget: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    node_speed: NodeGains | None = None  # per-node INT8 gain that ordered the fallback (speed-aware only)

    @property
    def latency_cost_ms(self) -> float | None:
        """Extra median latency of the mixed-precision result over full INT8 (measured), when nodes were excluded."""
        if self.speed is None or "int8_full" not in self.speed.medians_ms:
            return None
        return self.speed.medians_ms["int8"] - self.speed.medians_ms["int8_full"]

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({
            "output": str(self.artifact.path) if self.artifact else None,
            "accuracy": self.report.to_json(),
            "full_int8_accuracy": self.full_int8_report.to_json(),
            "sensitivity": [asdict(s) for s in self.sensitivity],
            "excluded": self.excluded,
            "user_excluded": self.user_excluded,
            "quantized_nodes": [{"node": n, "op_type": t} for n, t in self.quantized],
            "speed": self.speed.to_json() if self.speed else None,
            "latency_cost_ms": self.latency_cost_ms,
            "budget": self.budget,
            "steps": [asdict(s) for s in self.steps],
            "node_speed": self.node_speed.to_json() if self.node_speed else None,
            "calibration": self.calibration,
            "options": asdict(self.options),
            "notes": self.notes,
            "warnings": self.warnings,
        })


def _options(kw: dict[str, Any], options: QuantizeOptions | None) -> QuantizeOptions:
    known = {f.name for f in fields(QuantizeOptions)}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise BadInputError(f"unknown quantize option(s) {unknown}", hint=f"known: {sorted(known)}")
    if "exclude" in kw:
        kw["exclude"] = tuple(kw["exclude"] or ())
    opts = replace(options or QuantizeOptions(), **kw)
    opts.validate()
    return opts


def _split_sources(calib: str | Path | CalibrationReader, eval_source: str | Path | CalibrationReader | None,
                   inputs: list, opts: QuantizeOptions, preprocess: Preprocess | None, allow_code: bool,
                   warnings: list[str]) -> tuple[CalibrationReader, CalibrationReader]:
    kw = {"preprocess": preprocess, "allow_code": allow_code}
    if eval_source is not None:
        cal = open_data(calib, inputs, limit=opts.calib_samples, **kw)
        return cal, open_data(eval_source, inputs, limit=opts.eval_samples, **kw)
    reader = open_data(calib, inputs, limit=opts.calib_samples + opts.eval_samples, **kw)
    n = len(reader)
    if n > opts.calib_samples:
        return reader.subset(0, opts.calib_samples), reader.subset(opts.calib_samples, None)
    if n >= MIN_HOLDOUT:
        hold = max(1, round(n * opts.holdout))
        warnings.append(f"no --eval source: {hold} of {n} calibration samples held out for evaluation "
                        f"(calibrating on {n - hold})")
        return reader.subset(0, n - hold), reader.subset(n - hold, None)
    warnings.append(f"only {n} calibration sample(s) and no --eval: accuracy is measured on the calibration "
                    "samples themselves (optimistic)")
    return reader, reader


def _budget(opts: QuantizeOptions, metric: Metric | None) -> tuple[str | None, Any]:
    """(text, judge): judge(report) -> (value, met). A dead candidate never meets a budget."""
    if opts.max_drop is not None:
        name = metric.name if metric is not None else "top1"

        def drop(r: AccuracyReport) -> tuple[float | None, bool]:
            value = r.metric.drop if r.metric is not None else None
            return value, value is not None and not r.dead and value <= (opts.max_drop or 0.0)

        return f"{name} drop <= {opts.max_drop:g} points", drop
    if opts.min_sqnr is not None:
        def sqnr(r: AccuracyReport) -> tuple[float | None, bool]:
            value = r.min_sqnr_db
            return value, value is not None and not r.dead and value >= (opts.min_sqnr or 0.0)

        return f"output SQNR >= {opts.min_sqnr:g} dB", sqnr
    return None, None


def quantize(
    model: str | Path,
    output: str | Path,
    calib: str | Path | CalibrationReader,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    symmetric_activations: bool = False,
    exclude: Iterable[str] = (),
    calib_samples: int = 100,
    eval: str | Path | CalibrationReader | None = None,
    max_drop: float | None = None,
    min_sqnr: float | None = None,
    require_speedup: bool = False,
    threads: int | None = None,
    preprocess: Preprocess | None = None,
    allow_code: bool = False,
    options: QuantizeOptions | None = None,
    **more: Any,
) -> QuantizeResult:
    """Quantize an FP32 ONNX model to INT8 (QDQ) and say how good and how fast it is.

    Raises BadInputError (bad data/model, exit 2), CheckFailedError (budget or --require-speedup not met,
    exit 1; the measured result is attached as `error.result`), UnsupportedError (ORT cannot quantize or
    load the result, exit 3). Extra keyword arguments are QuantizeOptions fields.
    """
    opts = _options({"method": method, "per_channel": per_channel, "symmetric_activations": symmetric_activations,
                     "exclude": exclude, "calib_samples": calib_samples, "max_drop": max_drop, "min_sqnr": min_sqnr,
                     "require_speedup": require_speedup, "threads": threads, **more}, options)
    started = time.perf_counter()
    source = Artifact.open(model)
    proto = load_onnx(source.path)
    refuse_quantized(proto, source.path)
    inputs = input_specs(proto)
    warnings: list[str] = []
    cal_reader, eval_reader = _split_sources(calib, eval, inputs, opts, preprocess, allow_code, warnings)
    if cal_reader.synthetic:
        warnings.append("calibration data is SYNTHETIC random noise: activation ranges do not reflect real inputs; "
                        "this INT8 model is NOT validated for accuracy")
    if eval_reader.synthetic:
        warnings.append("evaluation data is synthetic: the accuracy table is NOT valid for real inputs")
    metric = get_metric(opts.metric, opts.metric_options, allow_code=allow_code) if opts.metric else None
    budget_text, judge = _budget(opts, metric)
    threads_used = opts.threads or max(1, min(os.cpu_count() or 1, 4))
    fp32_bytes = source.path.read_bytes()
    # a model onnxruntime cannot run is bad input: say so in one line before ORT's quantizer trips on it
    check_runs(fp32_bytes, sample_feeds(inputs, cal_reader, count=1, seed=0)[0][0], path=source.path,
               threads=threads_used)

    with tempfile.TemporaryDirectory(prefix="edgekit-quant-") as tmp:
        work = Path(tmp)
        prepared = prepare_model(proto, work, per_channel=opts.per_channel, pre_process=opts.pre_process,
                                 source=source.path)
        t_cal = time.perf_counter()
        ranges = calibrate(prepared, cal_reader, work, method=opts.method, percentile=opts.percentile,
                           symmetric=opts.symmetric_activations, chunk=opts.calib_chunk, threads=threads_used)
        calibration = {"source": cal_reader.description, "samples": len(cal_reader), "synthetic": cal_reader.synthetic,
                       "method": opts.method, "seconds": round(time.perf_counter() - t_cal, 3),
                       "eval_source": eval_reader.description, "provenance": "measured"}
        user_excluded = resolve_excludes(prepared.model, opts.exclude)
        settings = opts.qdq()

        evalset = load_evalset(eval_reader.iter_labeled(),
                               check_loads(fp32_bytes, threads=threads_used, what="FP32 model"),
                               description=f"{len(eval_reader)} sample(s) from {eval_reader.description}",
                               synthetic=eval_reader.synthetic, folder=work / "eval")
        if opts.max_drop is not None and evalset.labels is None and metric is None:
            raise BadInputError("--max-drop without a metric needs task labels, and the evaluation samples carry none",
                                path=eval_reader.description,
                                hint="name a metric (--max-drop map50:1 judges agreement with FP32 without labels), "
                                     "give labelled --eval data, or use --min-sqnr")

        def build(excluded: Iterable[str] = (), only: Iterable[str] | None = None) -> tuple[bytes, Any]:
            data = quantize_qdq(prepared, ranges, settings, exclude=[*user_excluded, *excluded], only=only,
                                workdir=work)
            return data, check_loads(data, threads=threads_used)

        full_bytes, full_session = build()
        candidates = [c for c in quantized_nodes(full_bytes) if c[0] not in user_excluded]
        if not has_int8_compute(candidates):
            raise UnsupportedError("nothing in this model was quantized (no op onnxruntime quantizes, or all excluded)",
                                   path=source.path, hint="check --exclude; the FP32 model is not an INT8 result")
        full_report = evaluate(evalset, full_session, metric)
        judgeable = not full_report.all_no_signal or (full_report.metric is not None and opts.min_sqnr is None)
        if not judgeable:
            message = no_signal_message(list(full_report.no_signal))
            if judge is not None:
                raise BadInputError(f"{message}; the budget ({budget_text}) cannot be searched on",
                                    path=eval_reader.description, hint="nothing was written")
            warnings.append(message)

        sensitivity: list[NodeSensitivity] = []
        node_speed: NodeGains | None = None
        notes = list(prepared.notes)
        met = True
        if judge is not None:
            _, met = judge(full_report)
        if (opts.sensitivity or not met) and not judgeable:
            notes.append("sensitivity: n/a (the FP32 outputs do not respond to the eval data)")
        elif opts.sensitivity or not met:
            sensitivity = _sensitivity(prepared, full_bytes, candidates, evalset.head(opts.sensitivity_samples),
                                       opts, notes, threads_used,
                                       lambda name: build(only=[name])[0], metric)

        chosen_bytes, chosen_report, excluded = full_bytes, full_report, []
        steps: list[BudgetStep] = []
        if judge is not None:
            value, met = judge(full_report)
            steps.append(BudgetStep((), value, met))
            why_plain = "most harmful kept float first"
            if not met and opts.speed_aware and sensitivity:
                try:
                    node_speed = node_gains(prepared.model.SerializeToString(), full_bytes, evalset.samples[0],
                                            candidates, threads=threads_used)
                except Exception as exc:  # the order is an optimisation: a profiler failure must not cost the result
                    if not (is_ort_error(exc) or isinstance(exc, OSError)):
                        raise
                    why_plain = f"profiling for the speed-aware order failed: {str(exc).splitlines()[0][:160]}"
                else:
                    gains = node_speed.gains
                    sensitivity = [replace(s, int8_gain_ms=gains.get(s.node)) for s in sensitivity]
            if node_speed is not None and node_speed.orderable:
                order = speed_aware_order(sensitivity, node_speed.gains)
                unmapped = sum(s.int8_gain_ms is None for s in sensitivity)
                notes.append(f"fallback order: speed-aware (harm per ms of INT8 gain, highest kept float first; "
                             f"gains {node_speed.label}; {unmapped} of {len(sensitivity)} ranked node(s) unmapped "
                             "keep their sensitivity place)")
            elif node_speed is not None:
                order = [s.node for s in sensitivity]
                notes.append(f"fallback order: sensitivity ranking (the model runs {node_speed.fp32_total_ms:.3f} ms "
                             "per run: per-node INT8 gains are profiler jitter at that scale)")
            else:
                order = [s.node for s in sensitivity]
                if not met:
                    notes.append(f"fallback order: sensitivity ranking ({why_plain})")
            tried: dict[int, tuple[bytes, AccuracyReport] | None] = {}

            def trial(k: int) -> bool | None:
                """Keep the k most sensitive nodes float: True/False = budget met/missed, None = not INT8 any more."""
                kept = order[:k]
                if len(kept) >= len(candidates):
                    return None  # everything float is FP32, not an INT8 result
                emit("fallback search", len(steps), None, f"trying {k} node(s) kept in float")
                data, session = build(kept)
                if not has_int8_compute(quantized_nodes(data)):
                    return None  # only data movement left in INT8: that is FP32 under another name
                report = evaluate(evalset, session, metric)
                value, ok = judge(report)
                steps.append(BudgetStep(tuple(kept), value, ok))
                tried[k] = (data, report) if ok else None
                return ok

            if not met and (k := fewest_kept_float(len(order), trial)) is not None:
                met = True
                chosen_bytes, chosen_report = tried[k] or (full_bytes, full_report)  # tried[k] is set: k met
                excluded = list(order[:k])
            steps.sort(key=lambda s: len(s.kept_float))

        quantized = quantized_nodes(chosen_bytes)
        result = QuantizeResult(None, chosen_report, full_report, sensitivity, excluded, user_excluded, None, opts,
                                calibration, quantized, steps, budget_text, notes, warnings, node_speed)
        if not met:
            valued = [s for s in steps if s.value is not None]
            if valued:
                best = max(valued, key=lambda s: (s.value or 0.0) if opts.min_sqnr is not None else -(s.value or 0.0))
                what = f"best was {best.value:.3g} with {len(best.kept_float)} node(s) kept in float"
            else:
                what = "no candidate's figure could be computed"
            if full_report.dead:
                what += f"; full INT8 is dead ({'; '.join(full_report.dead)})"
            raise _failed(result, f"no INT8 setting meets the budget ({budget_text}): {what}", source.path,
                          "relax the budget, give more representative calibration data, or try --method entropy/"
                          "percentile; nothing was written")
        if chosen_report.dead:
            raise _failed(result, f"the INT8 model no longer works: {'; '.join(chosen_report.dead)}", source.path,
                          "nothing was written; try --method entropy/percentile, --per-tensor, real calibration data, "
                          "or --exclude the op types named by the sensitivity ranking")

        if opts.speed:
            models = {"fp32": fp32_bytes, "int8": chosen_bytes}
            if excluded:
                models["int8_full"] = full_bytes
            result.speed = measure_speed(models, evalset.samples[0], threads=threads_used, seconds=opts.speed_seconds)
            if opts.require_speedup and result.speed.speedup <= 1.0:
                raise _failed(result, f"--require-speedup: {result.speed.verdict}", source.path,
                              "nothing was written; keep FP32 here or compile for another backend")
        elif opts.require_speedup:
            raise BadInputError("--require-speedup needs the speed measurement", path="speed")

        manifest = _manifest(source, chosen_bytes, result, time.perf_counter() - started)
        result.artifact = save_model_artifact(chosen_bytes, output, manifest)
    return result


def fewest_kept_float(n: int, trial: Callable[[int], bool | None], *, linear: int = 4) -> int | None:
    """Smallest k in 1..n for which `trial(k)` (keep the k most sensitive nodes float) meets the budget.

    k = 1..`linear` are tried in turn, then k doubles, then the gap between the last miss and the first hit
    is bisected: O(log n) quantize-and-evaluate rounds instead of n on models with hundreds of nodes.
    `trial` returns None when k nodes float leave no INT8 result (every larger k then too): the search
    then tries the largest k below it once and stops. None when no k meets the budget. With a budget
    that is not monotone in k the result meets the budget but may not be the smallest such k.
    """
    lo, hi, limit, k = 0, None, n, 1  # lo: largest k known to miss (0 = full INT8)
    while hi is None and lo < limit:
        k = min(k, limit)
        outcome = trial(k)
        if outcome is None:
            limit = k - 1
            k = limit
        elif outcome:
            hi = k
        else:
            lo = k
            k = k + 1 if k < linear else 2 * k
    if hi is None:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trial(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _sensitivity(prepared: Prepared, full_bytes: bytes, candidates: list[tuple[str, str]], sens_set: EvalSet,
                 opts: QuantizeOptions, notes: list[str], threads: int,
                 quantize_only: Any, metric: Metric | None) -> list[NodeSensitivity]:
    """Rank arithmetic nodes: quantize each alone (capped); above the cap, pre-rank by per-layer SQNR loss.

    A data-movement node that writes a graph output is ranked too: its one scale sets the output's resolution
    (a YOLO Concat of pixel coordinates and 0..1 scores quantizes the scores to ~0.25 steps).
    """
    graph_outputs = {o.name for o in prepared.model.graph.output}
    writes_output = {n.name for n in prepared.model.graph.node if set(n.output) & graph_outputs}
    compute = [c for c in candidates if c[1] not in DATA_MOVEMENT_OPS or c[0] in writes_output]
    loss: dict[str, float] = {}
    alone, rest = compute, []
    if len(compute) > opts.sensitivity_nodes:
        local = [sens_set.samples[i] for i in range(min(LOCAL_SAMPLES, len(sens_set.samples)))]
        loss = local_sqnr_loss(prepared.model, full_bytes, compute, local, threads)
        ordered = sorted(compute, key=lambda c: -loss.get(c[0], float("-inf")))
        alone, rest = ordered[:opts.sensitivity_nodes], ordered[opts.sensitivity_nodes:]
        notes.append(f"sensitivity: {len(compute)} quantized arithmetic nodes; the {len(alone)} losing the most "
                     f"SQNR inside the full INT8 model were quantized alone, the rest ranked by that loss only")
    ranked = rank_nodes(alone, quantize_only, lambda data: check_loads(data, threads=threads), sens_set, metric)
    ranked = [replace(r, local_loss_db=loss.get(r.node)) for r in ranked]
    return ranked + [NodeSensitivity(n, op, None, None, method="local", local_loss_db=loss.get(n),
                                     note="n/a (not quantized alone: ranked by its per-layer SQNR loss)")
                     for n, op in rest]


def _failed(result: QuantizeResult, message: str, path: Path, hint: str) -> CheckFailedError:
    error = CheckFailedError(message, path=path, hint=hint)
    error.result = result  # type: ignore[attr-defined]
    return error


def _manifest(source: Artifact, model_bytes: bytes, result: QuantizeResult, seconds: float) -> Manifest:
    proto = onnx.ModelProto.FromString(model_bytes)
    old = source.manifest
    manifest = Manifest(kind="onnx", inputs=input_specs(proto), outputs=output_specs(proto),
                        history=list(old.history), metrics=dict(old.metrics), info=dict(old.info))
    metrics = result.to_json()
    metrics.pop("options", None)
    manifest.add_stage(StageRecord(
        stage="quantize", options=asdict(result.options), inputs={source.path.name: sha256_file(source.path)},
        metrics=metrics, provenance="measured", duration_s=round(seconds, 3),
    ))
    manifest.info.update({
        "precision": "int8" if not result.excluded and not result.user_excluded else "mixed-int8",
        "quantization": {"format": "QDQ", "method": result.options.method, "per_channel": result.options.per_channel,
                         "symmetric_activations": result.options.symmetric_activations,
                         "activation_type": result.options.qdq().resolved_activation_type(),
                         "weight_type": result.options.weight_type,
                         "kept_float": sorted({*result.excluded, *result.user_excluded}),
                         "calibration_synthetic": result.calibration["synthetic"]},
    })
    return manifest


def quantize_onnx(
    model: onnx.ModelProto | str | Path,
    calib: str | Path | CalibrationReader,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    symmetric_activations: bool = False,
    activation_type: str = "auto",
    weight_type: str = "int8",
    exclude: Iterable[str] = (),
    calib_samples: int = 100,
    preprocess: Preprocess | None = None,
    allow_code: bool = False,
    pre_process: bool = True,
) -> onnx.ModelProto:
    """The bare step, no report: FP32 model + calibration data -> QDQ ModelProto that loads in onnxruntime.

    For stages that judge numerics themselves (NPU emulation: symmetric int8 activations, per-tensor
    vs per-channel weights).
    """
    path = None
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        model = load_onnx(path)
    refuse_quantized(model, path)
    reader = open_source(calib, input_specs(model), preprocess=preprocess, allow_code=allow_code, limit=calib_samples)
    check_runs(model.SerializeToString(), sample_feeds(input_specs(model), reader, count=1, seed=0)[0][0],
               path=path or "MODEL")  # before ORT's quantizer trips on a model it cannot run
    settings = QdqSettings(method, per_channel, symmetric_activations, activation_type, weight_type)
    with tempfile.TemporaryDirectory(prefix="edgekit-quant-") as tmp:
        work = Path(tmp)
        prepared: Prepared = prepare_model(model, work, per_channel=per_channel, pre_process=pre_process, source=path)
        ranges = calibrate(prepared, reader, work, method=method, symmetric=symmetric_activations)
        data = quantize_qdq(prepared, ranges, settings, exclude=resolve_excludes(prepared.model, exclude),
                            workdir=work)
    check_loads(data)
    return onnx.ModelProto.FromString(data)


__all__ = ["BudgetStep", "QuantizeOptions", "QuantizeResult", "fewest_kept_float", "quantize", "quantize_onnx"]
