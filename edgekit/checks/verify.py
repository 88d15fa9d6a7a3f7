"""The one accuracy re-run: a runner's outputs against stored FP32 reference outputs, sample by sample.

The pipeline measures every candidate with it, and `edgekit gate` re-checks a bundle with it on the
evaluation data and FP32 reference outputs the bundle carries (`reference/`), so "SQNR 31.2 dB" at
build time and at gate time is the same computation on the same data. Figures are accumulated per
sample (sums, not stacked outputs), so memory does not grow with the eval set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInputError

_EPS = 1e-12

REFERENCE_DIR = "reference"
EVAL_FILE = f"{REFERENCE_DIR}/eval.npz"  # input arrays stacked on a new axis 0 (one row per sample), + labels
OUTPUTS_FILE = f"{REFERENCE_DIR}/outputs.npz"  # FP32 outputs stacked the same way
LABELS_KEY = "__labels__"


@dataclass
class _OutputSums:
    ref2: float = 0.0
    got2: float = 0.0
    dot: float = 0.0
    err2: float = 0.0
    nonfinite: int = 0


@dataclass
class AccuracyFigures:
    """Cosine/SQNR (worst output) and, with labels, top-1 accuracy and its drop vs FP32, over `samples`."""

    cosine: float | None
    sqnr_db: float | None
    samples: int
    provenance: str
    accuracy: float | None = None
    reference_accuracy: float | None = None
    drop_points: float | None = None  # 100 × (FP32 accuracy − candidate accuracy)
    per_output: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable(vars(self))


class AccuracyAccumulator:
    """Streaming comparison of candidate outputs with reference outputs (and labels)."""

    def __init__(self, reference_accuracy: float | None = None):
        self._sums: dict[str, _OutputSums] = {}
        self._correct = 0
        self._ref_correct = 0
        self._labelled = 0
        self.samples = 0
        self.reference_accuracy = reference_accuracy

    def add(self, reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], label: int | None = None) -> None:
        for name, ref in reference.items():
            sums = self._sums.setdefault(name, _OutputSums())
            if name not in got:
                sums.nonfinite += 1
                continue
            r = np.asarray(ref, dtype=np.float64).ravel()
            g = np.asarray(got[name], dtype=np.float64).ravel()
            if r.shape != g.shape:
                raise BadInputError(f"output {name!r} has {g.size} values, the FP32 reference {r.size}",
                                    path=name, hint="the bundle was not built from this reference model")
            finite = np.isfinite(g)
            if not finite.all():
                sums.nonfinite += int((~finite).sum())
                g = np.where(finite, g, 0.0)
            sums.ref2 += float(r @ r)
            sums.got2 += float(g @ g)
            sums.dot += float(r @ g)
            diff = r - g
            sums.err2 += float(diff @ diff)
        if label is not None:
            first = next(iter(reference))
            self._labelled += 1
            self._correct += int(int(np.argmax(np.asarray(got[first]).reshape(-1))) == int(label))
            self._ref_correct += int(int(np.argmax(np.asarray(reference[first]).reshape(-1))) == int(label))
        self.samples += 1

    def result(self, provenance: str) -> AccuracyFigures:
        per_output: dict[str, dict[str, float]] = {}
        notes: list[str] = []
        for name, s in self._sums.items():
            if s.nonfinite:
                notes.append(f"output {name!r}: {s.nonfinite} NaN/inf or missing value(s)")
                per_output[name] = {"cosine": 0.0, "sqnr_db": float("-inf")}
                continue
            na, nb = math.sqrt(s.ref2), math.sqrt(s.got2)
            if na < _EPS and nb < _EPS:
                cos = 1.0
            elif na < _EPS or nb < _EPS:
                cos = 0.0
            else:
                cos = s.dot / (na * nb)
            if s.err2 <= _EPS * max(s.ref2, 1.0):
                sqnr = float("inf")
            elif s.ref2 < _EPS:
                sqnr = float("-inf")
            else:
                sqnr = 10.0 * math.log10(s.ref2 / s.err2)
            per_output[name] = {"cosine": cos, "sqnr_db": sqnr}
        figures = AccuracyFigures(
            cosine=min((o["cosine"] for o in per_output.values()), default=None),
            sqnr_db=min((o["sqnr_db"] for o in per_output.values()), default=None),
            samples=self.samples, provenance=provenance, per_output=per_output, notes=notes,
        )
        if self._labelled:
            figures.accuracy = self._correct / self._labelled
            ref_acc = self.reference_accuracy if self.reference_accuracy is not None else \
                self._ref_correct / self._labelled
            figures.reference_accuracy = ref_acc
            figures.drop_points = 100.0 * (ref_acc - figures.accuracy)
        return figures


def evaluate_runner(
    runner: Any,
    samples: Iterable[Mapping[str, np.ndarray]],
    references: Iterable[Mapping[str, np.ndarray]],
    labels: Iterable[int] | None = None,
    *,
    reference_accuracy: float | None = None,
) -> AccuracyFigures:
    """Run `runner` on each sample and compare with the matching FP32 reference outputs (streamed)."""
    acc = AccuracyAccumulator(reference_accuracy)
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
    labels: np.ndarray | None
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


def write_reference(folder: Path, samples: list[Mapping[str, np.ndarray]], outputs: list[Mapping[str, np.ndarray]],
                    labels: np.ndarray | None, *, max_bytes: int = 64 << 20) -> dict[str, Any]:
    """Store eval inputs + FP32 outputs under `folder/reference/` (at most `max_bytes`); return what was kept."""
    per_sample = sum(np.asarray(v).nbytes for v in samples[0].values()) + \
        sum(np.asarray(v).nbytes for v in outputs[0].values())
    keep = max(1, min(len(samples), max_bytes // max(per_sample, 1)))
    (folder / REFERENCE_DIR).mkdir(parents=True, exist_ok=True)
    inputs = {f"input/{k}": np.stack([np.asarray(s[k]) for s in samples[:keep]]) for k in samples[0]}
    if labels is not None:
        inputs[LABELS_KEY] = np.asarray(labels[:keep], dtype=np.int64)
    np.savez(folder / EVAL_FILE, **inputs)
    np.savez(folder / OUTPUTS_FILE, **{k: np.stack([np.asarray(o[k]) for o in outputs[:keep]]) for k in outputs[0]})
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
            labels = z[LABELS_KEY] if LABELS_KEY in z.files else None
        with np.load(out_path, allow_pickle=False) as z:
            outputs = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read the stored reference data ({exc})", path=bundle / REFERENCE_DIR) from None
    counts = {v.shape[0] for v in (*inputs.values(), *outputs.values()) if v.ndim}
    if not inputs or not outputs or len(counts) != 1 or (labels is not None and labels.shape[0] not in counts):
        raise BadInputError("stored reference data is inconsistent (sample counts differ)",
                            path=bundle / REFERENCE_DIR, hint="rebuild the bundle with `edgekit run`")
    return StoredReference(inputs, outputs, labels, dict(ref_info))


def rerun_stored(runner: Any, stored: StoredReference) -> AccuracyFigures:
    """`evaluate_runner` on a bundle's stored reference data (FP32 accuracy recomputed on the same samples)."""
    return evaluate_runner(runner, stored.samples(), stored.references(),
                           None if stored.labels is None else [int(x) for x in stored.labels])
