"""Judging a quantized model: accuracy vs FP32, per-node sensitivity, and measured speed.

Plain dataclasses that serialize to JSON (Polygraphy's RunResults habit); no live sessions leave here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgekit.checks.numerics import compare_outputs, is_classifier_shaped, task_accuracy

Sample = dict[str, np.ndarray]


@dataclass
class EvalSet:
    """Evaluation inputs held in memory (capped), their labels and the FP32 reference outputs."""

    samples: list[Sample]
    labels: np.ndarray | None
    description: str
    synthetic: bool
    reference: dict[str, np.ndarray] = field(default_factory=dict)


def run_all(session: Any, samples: Sequence[Sample]) -> dict[str, np.ndarray]:
    """Run every sample; outputs concatenated along the batch axis (0-d outputs stacked)."""
    names = [o.name for o in session.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for sample in samples:
        for name, value in zip(names, session.run(names, sample), strict=True):
            collected[name].append(np.asarray(value))
    out: dict[str, np.ndarray] = {}
    for name, values in collected.items():
        out[name] = np.stack(values) if values and values[0].ndim == 0 else np.concatenate(values, axis=0)
    return out


@dataclass(frozen=True)
class OutputAccuracy:
    name: str
    cosine: float
    sqnr_db: float
    max_abs: float
    top1_agreement: float | None


@dataclass(frozen=True)
class AccuracyReport:
    """FP32 vs INT8 on `samples` evaluation samples (provenance: measured with onnxruntime CPU)."""

    samples: int
    source: str
    valid_for_accuracy: bool
    outputs: list[OutputAccuracy]
    fp32_accuracy: float | None = None  # task accuracy (0..1) when labels are present
    int8_accuracy: float | None = None
    provenance: str = "measured"

    @property
    def min_sqnr_db(self) -> float:
        return min((o.sqnr_db for o in self.outputs), default=float("inf"))

    @property
    def min_cosine(self) -> float:
        return min((o.cosine for o in self.outputs), default=1.0)

    @property
    def accuracy_drop(self) -> float | None:
        """FP32 minus INT8 task accuracy in percentage points."""
        if self.fp32_accuracy is None or self.int8_accuracy is None:
            return None
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples, "source": self.source, "valid_for_accuracy": self.valid_for_accuracy,
            "outputs": [o.__dict__ for o in self.outputs], "fp32_accuracy": self.fp32_accuracy,
            "int8_accuracy": self.int8_accuracy, "accuracy_drop_points": self.accuracy_drop,
            "min_sqnr_db": self.min_sqnr_db, "min_cosine": self.min_cosine, "provenance": self.provenance,
        }


def _label_output(reference: dict[str, np.ndarray], labels: np.ndarray | None) -> str | None:
    if labels is None:
        return None
    for name, value in reference.items():
        if is_classifier_shaped(value) and value.shape[0] == labels.reshape(-1).shape[0]:
            return name
    return None


def accuracy_report(evalset: EvalSet, candidate: dict[str, np.ndarray]) -> AccuracyReport:
    comparison = compare_outputs(evalset.reference, candidate, atol=float("inf"), rtol=float("inf"))
    outputs = [OutputAccuracy(o.name, o.cosine, o.sqnr_db, o.max_abs, o.top1_agreement) for o in comparison.outputs]
    fp32_acc = int8_acc = None
    name = _label_output(evalset.reference, evalset.labels)
    if name is not None and evalset.labels is not None:
        fp32_acc = task_accuracy(evalset.reference[name], evalset.labels)
        int8_acc = task_accuracy(candidate[name], evalset.labels)
    return AccuracyReport(len(evalset.samples), evalset.description, not evalset.synthetic, outputs, fp32_acc, int8_acc)


# ------------------------------------------------------------------------------------ sensitivity


@dataclass(frozen=True)
class NodeSensitivity:
    """Harm of quantizing one node alone: output SQNR/cosine vs FP32 (lower SQNR = more sensitive)."""

    node: str
    op_type: str
    sqnr_db: float
    cosine: float
    top1_agreement: float | None
    accuracy_drop: float | None = None  # points, when labels are present


def rank_nodes(
    candidates: list[tuple[str, str]],
    quantize_only: Callable[[str], bytes],
    make_session: Callable[[bytes], Any],
    evalset: EvalSet,
) -> list[NodeSensitivity]:
    """Quantize each candidate alone, run the eval subset, rank by output SQNR (worst first)."""
    ranked: list[NodeSensitivity] = []
    for name, op_type in candidates:
        outputs = run_all(make_session(quantize_only(name)), evalset.samples)
        rep = accuracy_report(evalset, outputs)
        top1 = [o.top1_agreement for o in rep.outputs if o.top1_agreement is not None]
        ranked.append(NodeSensitivity(name, op_type, rep.min_sqnr_db, rep.min_cosine, min(top1) if top1 else None,
                                      rep.accuracy_drop))
    ranked.sort(key=lambda s: (s.sqnr_db, s.cosine))
    return ranked


def local_error_prefilter(fp32: onnx.ModelProto, int8_bytes: bytes, nodes: list[tuple[str, str]],
                          samples: Sequence[Sample], keep: int, threads: int | None) -> list[tuple[str, str]]:
    """Cheap pre-ranking when there are too many candidates: SQNR lost across each node in the full INT8 model.

    Exposes every candidate's input and output tensor in both models (one run each) and keeps the `keep`
    nodes whose output SQNR is furthest below their input SQNR (the error that node itself adds).
    """
    from edgekit.checks.numerics import sqnr_db
    from edgekit.onnxio import ort_session

    int8 = onnx.ModelProto.FromString(int8_bytes)
    by_name = {n.name: n for n in fp32.graph.node}
    io_of = {name: (by_name[name].input[0], by_name[name].output[0]) for name, _ in nodes if name in by_name}
    tensors = sorted({t for pair in io_of.values() for t in pair})
    graph_inputs = {i.name for i in fp32.graph.input}

    def expose(model: onnx.ModelProto) -> bytes:
        model = onnx.ModelProto.FromString(model.SerializeToString())
        present = {o.name for o in model.graph.output}
        for t in tensors:
            if t not in present and t not in graph_inputs:
                model.graph.output.append(onnx.ValueInfoProto(name=t))
        return model.SerializeToString()

    fp_out = run_all(ort_session(expose(fp32), threads=threads), samples)
    q_out = run_all(ort_session(expose(int8), threads=threads), samples)

    def q(t: str) -> float:
        if t in graph_inputs:
            return float("inf")
        return sqnr_db(fp_out[t], q_out[t]) if t in fp_out and t in q_out else float("inf")

    loss = []
    for name, op_type in nodes:
        if name not in io_of:
            continue
        t_in, t_out = io_of[name]
        s_in, s_out = q(t_in), q(t_out)
        lost = (s_in - s_out) if np.isfinite(s_in) else (100.0 - s_out)
        loss.append((lost, name, op_type))
    loss.sort(reverse=True)
    return [(name, op) for _, name, op in loss[:keep]]


# ------------------------------------------------------------------------------------ speed


@dataclass(frozen=True)
class SpeedReport:
    """Median latency (ms, batch of one sample) per model, measured here with onnxruntime, interleaved runs."""

    medians_ms: dict[str, float]
    runs: int
    threads: int
    provenance: str = "measured"

    @property
    def speedup(self) -> float:
        return self.medians_ms["fp32"] / self.medians_ms["int8"]

    @property
    def verdict(self) -> str:
        s = self.speedup
        if s >= 1.1:
            return f"INT8 pays off here: {s:.2f}x faster than FP32"
        if s >= 0.95:
            return f"INT8 gives no real speedup here ({s:.2f}x); it still saves memory and size"
        return f"INT8 is SLOWER than FP32 here ({s:.2f}x): keep FP32 on this machine or try another backend"

    def to_json(self) -> dict[str, Any]:
        return {"medians_ms": self.medians_ms, "runs": self.runs, "threads": self.threads,
                "speedup": self.speedup, "verdict": self.verdict, "provenance": self.provenance}


def measure_speed(models: dict[str, bytes], sample: Sample, *, threads: int, seconds: float = 1.0,
                  min_runs: int = 15, max_runs: int = 300) -> SpeedReport:
    """Same threads, warm-up, then round-robin runs (order alternating each round) and medians."""
    from edgekit.onnxio import ort_session

    sessions = {k: ort_session(v, threads=threads) for k, v in models.items()}
    names = {k: [o.name for o in s.get_outputs()] for k, s in sessions.items()}
    for key, sess in sessions.items():
        for _ in range(3):
            sess.run(names[key], sample)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    order = list(sessions)
    deadline = time.perf_counter() + seconds * len(sessions)
    rounds = 0
    while rounds < max_runs and (rounds < min_runs or time.perf_counter() < deadline):
        for key in order if rounds % 2 == 0 else reversed(order):
            start = time.perf_counter()
            sessions[key].run(names[key], sample)
            times[key].append((time.perf_counter() - start) * 1e3)
        rounds += 1
    return SpeedReport({k: statistics.median(v) for k, v in times.items()}, rounds, threads)
