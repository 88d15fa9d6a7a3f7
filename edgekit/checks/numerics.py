"""Numeric comparison of model outputs: the one place that defines cosine, SQNR and errors.

Export verification, quantization reports, compile verification and `compare` all use these, so a
"cosine 0.9999" means the same thing everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-12
NO_SIGNAL_SPREAD = 1e-4  # FP32 peak-to-peak below this x max(1, max|y|) over the eval set: the output does not respond
DEAD_COSINE = 0.05  # cosine with FP32 below this on an output that responds: the candidate computes something else


def max_abs_error(ref: np.ndarray, got: np.ndarray) -> float:
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(ref.astype(np.float64) - got.astype(np.float64))))


def max_rel_error(ref: np.ndarray, got: np.ndarray, floor: float = 1e-6) -> float:
    """Max |ref-got| / max(|ref|, floor): relative error that does not explode at zero."""
    if ref.size == 0:
        return 0.0
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    return float(np.max(np.abs(ref64 - got64) / np.maximum(np.abs(ref64), floor)))


def cosine_similarity(ref: np.ndarray, got: np.ndarray) -> float:
    a, b = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < _EPS and nb < _EPS:
        return 1.0
    if na < _EPS or nb < _EPS:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10*log10(|ref|^2 / |ref-got|^2).

    inf only when the outputs are bit-identical: a non-zero max abs next to "∞" would contradict itself.
    """
    ref64 = ref.astype(np.float64)
    noise = float(np.sum((ref64 - got.astype(np.float64)) ** 2))
    signal = float(np.sum(ref64**2))
    if noise == 0.0:
        return float("inf")
    if signal < _EPS:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def is_classifier_shaped(array: np.ndarray) -> bool:
    """[N, C] with C > 1 (logits/probabilities): top-1 agreement makes sense."""
    return array.ndim == 2 and array.shape[1] > 1


def top1_agreement(ref: np.ndarray, got: np.ndarray) -> float:
    return float(np.mean(np.argmax(ref, axis=-1) == np.argmax(got, axis=-1)))


def task_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels.reshape(-1)))


def _spread_is_flat(low: float, high: float) -> bool:
    return high - low <= NO_SIGNAL_SPREAD * max(1.0, abs(low), abs(high))


@dataclass
class OutputStats:
    """Streaming figures of one output against its FP32 reference: energies, ranges, non-finite values.

    Sums, not stacked arrays, so a 1x25200x85 YOLO output over 200 samples costs a few floats. The same
    object decides what cannot be judged (`why_not_judged`: the FP32 output does not respond to the data)
    and what is dead (`dead_reason`: NaN/inf, constant or zero where FP32 varies, ~no correlation), so
    quantize, compile, the pipeline and gate draw that line in one place.
    """

    ref2: float = 0.0
    got2: float = 0.0
    dot: float = 0.0
    err2: float = 0.0
    values: int = 0
    nonfinite: int = 0
    missing: int = 0
    ref_min: float = math.inf
    ref_max: float = -math.inf
    got_min: float = math.inf
    got_max: float = -math.inf
    max_abs: float = 0.0
    top1_same: int = 0  # classifier-shaped outputs ([N, C>1]): rows whose argmax agrees with FP32
    top1_rows: int = 0

    @property
    def top1_agreement(self) -> float | None:
        return self.top1_same / self.top1_rows if self.top1_rows else None

    def add(self, ref: np.ndarray, got: np.ndarray | None) -> None:
        if got is None:
            self.missing += 1
            return
        ref_a, got_a = np.asarray(ref), np.asarray(got)
        if is_classifier_shaped(ref_a) and got_a.shape == ref_a.shape:
            self.top1_rows += ref_a.shape[0]
            self.top1_same += int(np.sum(np.argmax(ref_a, axis=-1) == np.argmax(got_a, axis=-1)))
        r = np.asarray(ref, dtype=np.float64).ravel()
        g = np.asarray(got, dtype=np.float64).ravel()
        if r.shape != g.shape:
            raise ValueError(f"{g.size} values against {r.size} in the reference")
        finite = np.isfinite(g)
        if not finite.all():
            self.nonfinite += int((~finite).sum())
            g = np.where(finite, g, 0.0)
        if r.size:
            self.ref_min, self.ref_max = min(self.ref_min, float(r.min())), max(self.ref_max, float(r.max()))
            self.got_min, self.got_max = min(self.got_min, float(g.min())), max(self.got_max, float(g.max()))
        self.values += int(r.size)
        self.ref2 += float(r @ r)
        self.got2 += float(g @ g)
        self.dot += float(r @ g)
        diff = r - g
        self.err2 += float(diff @ diff)
        if diff.size:
            self.max_abs = max(self.max_abs, float(np.max(np.abs(diff))))

    @property
    def no_signal(self) -> bool:
        """The FP32 output is ~constant over every value of every eval sample: cosine/SQNR cannot judge it."""
        return self.values > 0 and _spread_is_flat(self.ref_min, self.ref_max)

    def why_not_judged(self) -> str:
        """Why cosine/SQNR of this output are n/a ("" when they can be computed)."""
        if self.missing:
            return "missing from the candidate's outputs"
        if self.nonfinite:
            return f"{self.nonfinite} NaN/inf value(s)"
        if self.values == 0:
            return "empty output"
        if self.no_signal:
            return (f"FP32 output is ~constant on the eval set (range {self.ref_min:.3g}..{self.ref_max:.3g}): "
                    "no signal to compare")
        return ""

    def cosine(self) -> float | None:
        if self.why_not_judged():
            return None
        na, nb = math.sqrt(self.ref2), math.sqrt(self.got2)
        if na < _EPS and nb < _EPS:
            return 1.0
        if na < _EPS or nb < _EPS:
            return 0.0
        return self.dot / (na * nb)

    def sqnr_db(self) -> float | None:
        if self.why_not_judged():
            return None
        if self.err2 == 0.0:  # bit-identical only (see sqnr_db)
            return math.inf
        return 10.0 * math.log10(max(self.ref2, _EPS) / self.err2)

    def dead_reason(self, name: str) -> str | None:
        """Why this output shows a model that no longer works (None when it does not)."""
        if self.missing:
            return f"output {name!r} is missing"
        if self.nonfinite:
            return f"output {name!r} has {self.nonfinite} NaN/inf value(s)"
        if self.values == 0 or self.no_signal:
            return None  # nothing to judge against
        if _spread_is_flat(self.got_min, self.got_max):
            what = "all zeros" if self.got_min == 0.0 == self.got_max else f"constant ({self.got_min:.4g})"
            return (f"output {name!r} is {what} on every eval sample where FP32 varies "
                    f"({self.ref_min:.4g}..{self.ref_max:.4g})")
        cos = self.cosine()
        if cos is not None and cos < DEAD_COSINE:
            return f"output {name!r} has cosine {cos:.3f} with FP32: ~no agreement left"
        return None


@dataclass(frozen=True)
class OutputComparison:
    """How one output of a candidate differs from the reference."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    cosine: float
    sqnr_db: float
    top1_agreement: float | None = None
    within_tolerance: bool = True


@dataclass(frozen=True)
class Comparison:
    """All outputs compared; `worst` names the output furthest outside its tolerance."""

    outputs: list[OutputComparison]
    atol: float
    rtol: float
    passed: bool
    worst: str | None = None
    notes: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)  # why the candidate no longer works (`OutputStats.dead_reason`)

    def by_name(self) -> dict[str, OutputComparison]:
        return {o.name: o for o in self.outputs}

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((o.max_rel for o in self.outputs), default=0.0)

    @property
    def min_cosine(self) -> float:
        return min((o.cosine for o in self.outputs), default=1.0)

    @property
    def min_sqnr_db(self) -> float:
        return min((o.sqnr_db for o in self.outputs), default=float("inf"))


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    *,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Comparison:
    """Compare candidate outputs to reference outputs (same names) with allclose-style tolerance.

    An output passes when every element satisfies |ref - got| <= atol + rtol * |ref|.
    """
    notes: list[str] = []
    dead: list[str] = []
    results: list[OutputComparison] = []
    worst_name, worst_excess = None, -np.inf
    for name, ref in reference.items():
        if name not in candidate:
            notes.append(f"output {name!r} missing from candidate")
            results.append(OutputComparison(name, tuple(ref.shape), np.inf, np.inf, 0.0, -np.inf, None, False))
            worst_name, worst_excess = name, np.inf
            continue
        got = np.asarray(candidate[name])
        ref = np.asarray(ref)
        if got.shape != ref.shape:
            notes.append(f"output {name!r} shape {got.shape} != reference {ref.shape}")
            results.append(OutputComparison(name, tuple(ref.shape), np.inf, np.inf, 0.0, -np.inf, None, False))
            worst_name, worst_excess = name, np.inf
            continue
        if not np.issubdtype(ref.dtype, np.floating):
            equal = bool(np.array_equal(ref, got))
            err = 0.0 if equal else max_abs_error(ref, got)
            results.append(OutputComparison(name, tuple(ref.shape), err, err, 1.0 if equal else 0.0,
                                            float("inf") if equal else 0.0, None, equal))
            if not equal and np.inf > worst_excess:
                worst_name, worst_excess = name, err
            continue
        stats = OutputStats()
        stats.add(ref, got)
        if (reason := stats.dead_reason(name)) is not None:
            dead.append(reason)
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        finite = np.isfinite(got64).all()
        excess_arr = np.abs(ref64 - got64) - (atol + rtol * np.abs(ref64))
        excess = float(np.max(excess_arr)) if ref.size else 0.0
        ok = bool(finite and excess <= 0.0)
        if not finite:
            notes.append(f"output {name!r} has NaN/Inf")
            excess = np.inf
        results.append(OutputComparison(
            name=name,
            shape=tuple(ref.shape),
            max_abs=max_abs_error(ref, got),
            max_rel=max_rel_error(ref, got),
            cosine=cosine_similarity(ref, got),
            sqnr_db=sqnr_db(ref, got),
            top1_agreement=top1_agreement(ref, got) if is_classifier_shaped(ref) else None,
            within_tolerance=ok,
        ))
        if not ok and excess > worst_excess:
            worst_name, worst_excess = name, excess
    passed = all(o.within_tolerance for o in results)
    return Comparison(results, atol, rtol, passed, None if passed else worst_name, notes, dead)


def tolerance_for(dtype: str) -> tuple[float, float]:
    """Default (atol, rtol) by the precision a backend computes in."""
    return {
        "fp32": (1e-4, 1e-3),
        "fp16": (5e-2, 5e-2),
        "bf16": (1e-1, 1e-1),
        "int8": (float("inf"), float("inf")),  # INT8 is judged by cosine/SQNR, not elementwise
    }.get(dtype, (1e-4, 1e-3))
