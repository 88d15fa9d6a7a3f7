"""Numeric comparison of model outputs: the one place that defines cosine, SQNR and errors.

Export verification, quantization reports, compile verification and `compare` all use these, so a
"cosine 0.9999" means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-12


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
    """Signal-to-quantization-noise ratio in dB: 10*log10(|ref|^2 / |ref-got|^2). inf when exact."""
    ref64 = ref.astype(np.float64)
    noise = float(np.sum((ref64 - got.astype(np.float64)) ** 2))
    signal = float(np.sum(ref64**2))
    if noise <= _EPS * max(signal, 1.0):
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
    return Comparison(results, atol, rtol, passed, None if passed else worst_name, notes)


def tolerance_for(dtype: str) -> tuple[float, float]:
    """Default (atol, rtol) by the precision a backend computes in."""
    return {
        "fp32": (1e-4, 1e-3),
        "fp16": (5e-2, 5e-2),
        "bf16": (1e-1, 1e-1),
        "int8": (float("inf"), float("inf")),  # INT8 is judged by cosine/SQNR, not elementwise
    }.get(dtype, (1e-4, 1e-3))
