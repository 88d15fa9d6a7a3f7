"""The one accuracy re-run: a runner's outputs against stored FP32 reference outputs, sample by sample.

The pipeline measures every candidate with it, and `edgekit gate` re-checks a bundle with it on the
evaluation data and FP32 reference outputs the bundle carries (`reference/`), so "SQNR 31.2 dB" at
build time and at gate time is the same computation on the same data. Figures are accumulated per
sample (sums, not stacked outputs), so memory does not grow with the eval set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.checks.metrics import Metric, MetricFigure, MetricTracker
from edgekit.checks.numerics import OutputStats
from edgekit.errors import BadInputError

REFERENCE_DIR = "reference"
EVAL_FILE = f"{REFERENCE_DIR}/eval.npz"  # input arrays stacked on a new axis 0 (one row per sample), + labels
OUTPUTS_FILE = f"{REFERENCE_DIR}/outputs.npz"  # FP32 outputs stacked the same way
LABELS_KEY = "__labels__"
DEAD_AGREEMENT = 0.05  # a task metric against FP32's own predictions at or below this: nothing agrees any more


@dataclass
class AccuracyFigures:
    """Cosine/SQNR (worst judged output), the task metric (accuracy with labels, agreement without), over `samples`.

    A figure that cannot be computed is None with the reason in `per_output[name]["note"]` (an FP32 output
    that does not respond to the eval data is listed in `no_signal`), never -inf. `dead` lists why the
    candidate no longer works (NaN/inf, constant or zero outputs where FP32 varies, ~no agreement): a
    produced model with a non-empty `dead` is never a success, whatever its speed.
    """

    cosine: float | None
    sqnr_db: float | None
    samples: int
    provenance: str
    accuracy: float | None = None
    reference_accuracy: float | None = None
    drop_points: float | None = None  # 100 × (FP32 accuracy − candidate accuracy), labelled data only
    per_output: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    no_signal: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    metric: MetricFigure | None = None

    @property
    def dead_reason(self) -> str | None:
        return "; ".join(self.dead) if self.dead else None

    def no_signal_message(self) -> str | None:
        """The user-facing sentence when every output is ~constant in FP32 (None when one responds)."""
        if not self.no_signal or len(self.no_signal) < len(self.per_output):
            return None
        return no_signal_message(self.no_signal)

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        data = {k: v for k, v in vars(self).items() if k != "metric"}
        data["metric"] = self.metric.to_json() if self.metric is not None else None
        return to_jsonable(data)


def no_signal_message(outputs: list[str]) -> str:
    names = ", ".join(repr(n) for n in outputs)
    return (f"output {names} is ~constant on the eval set; the metric cannot judge it; "
            "give data where it responds, or a task metric (--metric)")


class AccuracyAccumulator:
    """Streaming comparison of candidate outputs with reference outputs, and a task metric (labels or agreement).

    Without a metric, labels (class ids) give top-1 accuracy as before. With one, labelled samples give
    task accuracy and unlabelled ones give agreement with the FP32 model's own predictions; a set that
    mixes both is refused (the two figures mean different things).
    """

    def __init__(self, reference_accuracy: float | None = None, metric: Metric | None = None):
        self._stats: dict[str, OutputStats] = {}
        self._metric = metric
        self._tracker: MetricTracker | None = None
        self.samples = 0
        self.reference_accuracy = reference_accuracy

    def add(self, reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], label: Any = None) -> None:
        for name, ref in reference.items():
            stats = self._stats.setdefault(name, OutputStats())
            try:
                stats.add(ref, got.get(name))
            except ValueError as exc:
                raise BadInputError(f"output {name!r} has {exc}", path=name,
                                    hint="the candidate was not built from this reference model") from None
        if self._tracker is None and (self._metric is not None or label is not None):
            self._tracker = MetricTracker(self._metric, labelled=label is not None)
        if self._tracker is not None:
            self._tracker.add(reference, got, label)
        self.samples += 1

    def result(self, provenance: str) -> AccuracyFigures:
        per_output: dict[str, dict[str, Any]] = {}
        notes: list[str] = []
        dead: list[str] = []
        no_signal: list[str] = []
        for name, s in self._stats.items():
            why = s.why_not_judged()
            per_output[name] = {"cosine": s.cosine(), "sqnr_db": s.sqnr_db(), "max_abs": s.max_abs,
                                "top1_agreement": s.top1_agreement, "note": why}
            if why:
                notes.append(f"output {name!r}: cosine/SQNR n/a ({why})")
            if s.no_signal:
                no_signal.append(name)
            if (reason := s.dead_reason(name)) is not None:
                dead.append(reason)
        judged = [o for o in per_output.values() if o["cosine"] is not None]
        figures = AccuracyFigures(
            cosine=min((o["cosine"] for o in judged), default=None),
            sqnr_db=min((o["sqnr_db"] for o in judged), default=None),
            samples=self.samples, provenance=provenance, per_output=per_output, notes=notes,
            no_signal=no_signal, dead=dead,
        )
        if self._tracker is not None:
            metric = self._tracker.figure(self.reference_accuracy)
            figures.metric = metric if metric.name != "none" else None
            if metric.mode == "accuracy":
                figures.accuracy, figures.reference_accuracy = metric.value, metric.reference
                figures.drop_points = metric.drop
            elif metric.value is not None and metric.value <= DEAD_AGREEMENT:
                dead.append(f"{metric.name} agreement with FP32's own predictions is {100 * metric.value:.1f}%")
            if metric.note:
                notes.append(metric.note)
        return figures


def evaluate_runner(
    runner: Any,
    samples: Iterable[Mapping[str, np.ndarray]],
    references: Iterable[Mapping[str, np.ndarray]],
    labels: Iterable[Any] | None = None,
    *,
    reference_accuracy: float | None = None,
    metric: Metric | None = None,
) -> AccuracyFigures:
    """Run `runner` on each sample and compare with the matching FP32 reference outputs (streamed)."""
    acc = AccuracyAccumulator(reference_accuracy, metric)
    label_iter = iter(labels) if labels is not None else None
    for sample, ref in zip(samples, references, strict=True):
        got = runner.run(sample)
        acc.add(ref, got, next(label_iter) if label_iter is not None else None)
    return acc.result(str(getattr(runner, "provenance", "measured")))


# ------------------------------------------------------------------------------ stored reference data

@dataclass
class StoredReference:
    """The evaluation inputs and FP32 outputs a bundle carries, so a gate re-checks on the same data."""

    inputs: dict[str, np.ndarray]  # name -> (N, *shape)
    outputs: dict[str, np.ndarray]  # name -> (N, *shape)
    labels: list[np.ndarray] | None  # one per sample: class ids, a mask, box rows (any shape)
    info: dict[str, Any]

    @property
    def count(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0]) if self.inputs else 0

    def samples(self) -> Iterable[dict[str, np.ndarray]]:
        for i in range(self.count):
            yield {k: v[i] for k, v in self.inputs.items()}

    def references(self) -> Iterable[dict[str, np.ndarray]]:
        for i in range(self.count):
            yield {k: v[i] for k, v in self.outputs.items()}


def write_reference(folder: Path, samples: Sequence[Mapping[str, np.ndarray]],
                    outputs: Iterable[Mapping[str, np.ndarray]], labels: Sequence[Any] | None, *,
                    max_bytes: int = 64 << 20) -> dict[str, Any]:
    """Store eval inputs + FP32 outputs under `folder/reference/` (at most `max_bytes`); return what was kept.

    `outputs` may be a lazy stream: only the samples kept are read.
    """
    stream = iter(outputs)
    first = next(stream)
    per_sample = sum(np.asarray(v).nbytes for v in samples[0].values()) + \
        sum(np.asarray(v).nbytes for v in first.values())
    keep = max(1, min(len(samples), max_bytes // max(per_sample, 1)))
    kept = [first, *islice(stream, keep - 1)]
    (folder / REFERENCE_DIR).mkdir(parents=True, exist_ok=True)
    inputs = {f"input/{k}": np.stack([np.asarray(s[k]) for s in samples[:keep]]) for k in samples[0]}
    if labels is not None:  # one array per sample (masks and boxes differ in shape): __labels__/000000, ...
        for i, label in enumerate(labels[:keep]):
            array = np.asarray(label)
            if not np.issubdtype(array.dtype, np.number):
                raise BadInputError(f"label {i} is not numeric ({array.dtype})", path="labels")
            inputs[f"{LABELS_KEY}/{i:06d}"] = array
    np.savez(folder / EVAL_FILE, **inputs)
    np.savez(folder / OUTPUTS_FILE, **{k: np.stack([np.asarray(o[k]) for o in kept]) for k in first})
    return {"eval_file": EVAL_FILE, "outputs_file": OUTPUTS_FILE, "samples": keep, "samples_total": len(samples),
            "labels": labels is not None}


def read_reference(bundle: Path, info: Mapping[str, Any]) -> StoredReference | None:
    """The bundle's stored reference data (None when it carries none). Paths come from edgekit, not the manifest."""
    ref_info = info.get("reference")
    if not isinstance(ref_info, Mapping):
        return None
    eval_path, out_path = bundle / EVAL_FILE, bundle / OUTPUTS_FILE
    if not eval_path.is_file() or not out_path.is_file():
        raise BadInputError("manifest says the bundle carries reference data, but it is missing",
                            path=bundle / REFERENCE_DIR, hint="rebuild the bundle with `edgekit run`")
    try:
        with np.load(eval_path, allow_pickle=False) as z:
            inputs = {k.removeprefix("input/"): z[k] for k in z.files if k.startswith("input/")}
            label_keys = sorted(k for k in z.files if k.startswith(f"{LABELS_KEY}/"))
            labels: list[np.ndarray] | None = [z[k] for k in label_keys] if label_keys else None
            if LABELS_KEY in z.files:  # bundles written before labels were per-sample arrays: class ids
                labels = [np.asarray(v).reshape(1) for v in z[LABELS_KEY]]
        with np.load(out_path, allow_pickle=False) as z:
            outputs = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read the stored reference data ({exc})", path=bundle / REFERENCE_DIR) from None
    counts = {v.shape[0] for v in (*inputs.values(), *outputs.values()) if v.ndim}
    if not inputs or not outputs or len(counts) != 1 or (labels is not None and len(labels) not in counts):
        raise BadInputError("stored reference data is inconsistent (sample counts differ)",
                            path=bundle / REFERENCE_DIR, hint="rebuild the bundle with `edgekit run`")
    return StoredReference(inputs, outputs, labels, dict(ref_info))


def rerun_stored(runner: Any, stored: StoredReference, metric: Metric | None = None) -> AccuracyFigures:
    """`evaluate_runner` on a bundle's stored reference data (FP32 metric recomputed on the same samples)."""
    return evaluate_runner(runner, stored.samples(), stored.references(), stored.labels, metric=metric)
