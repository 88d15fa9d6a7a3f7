"""Judging a quantized model: accuracy vs FP32, per-node sensitivity, and measured speed.

Plain dataclasses that serialize to JSON (Polygraphy's RunResults habit); no live sessions leave here.
"""

from __future__ import annotations

import statistics
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
    # nothing is judged by tolerance here; rtol=0 keeps inf * |0| from turning into NaN warnings
    comparison = compare_outputs(evalset.reference, candidate, atol=float("inf"), rtol=0.0)
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
    method: str = "alone"  # alone: quantized alone and run; local: only the per-layer SQNR loss was measured
    local_loss_db: float | None = None  # SQNR lost across the node inside the full INT8 model


def _worst_if_nan(value: float) -> float:
    return float("-inf") if np.isnan(value) else value


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
    # NaN (non-finite outputs) sorts as most harmful: a NaN key would leave the sort order undefined
    ranked.sort(key=lambda s: (_worst_if_nan(s.sqnr_db), _worst_if_nan(s.cosine)))
    return ranked


TensorPair = tuple[str, str]  # (name in the FP32 model, name in the INT8 model) of the same value


def match_tensors(fp32: onnx.ModelProto, int8: onnx.ModelProto,
                  nodes: Sequence[tuple[str, str]]) -> dict[str, tuple[TensorPair, TensorPair]]:
    """Per node: its first activation input and its output, named in both models, as the node's consumers see them.

    Names cannot be assumed equal: ORT's QDQ writer renames tensors. A removable Relu/Clip is dropped and its
    producer writes the Relu's output name (the Conv's own output name vanishes); a graph output's producer
    writes `<name>_QuantizeLinear_Input` and the DequantizeLinear writes `<name>`; consumers read
    `<name>_DequantizeLinear_Output`. So each node is found by name in the INT8 graph (QDQ keeps node names),
    its tensors are followed through Q -> DQ to the value actually passed on (rounding included), and the
    FP32 name is the one of that chain that the FP32 model has. Nodes whose tensors cannot be matched in both
    models are left out (unmeasured) rather than exposing a name that one model does not have.
    """
    fp_inits = {i.name for i in fp32.graph.initializer}
    fp_values = ({o for n in fp32.graph.node for o in n.output if o}
                 | {i.name for i in fp32.graph.input if i.name not in fp_inits})
    q_inits = {i.name for i in int8.graph.initializer}
    q_values = ({o for n in int8.graph.node for o in n.output if o}
                | {i.name for i in int8.graph.input if i.name not in q_inits})
    q_by_name = {n.name: n for n in int8.graph.node if n.name}
    fp_names = {n.name for n in fp32.graph.node}
    producer = {o: n for n in int8.graph.node for o in n.output if o}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in int8.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def passed_on(tensor: str) -> str:
        """The DequantizeLinear output that follows `tensor` through its QuantizeLinear, else the tensor."""
        for q in consumers.get(tensor, []):
            if q.op_type == "QuantizeLinear" and q.input[0] == tensor:
                for dq in consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear" and dq.input[0] == q.output[0]:
                        return dq.output[0]
        return tensor

    def quantized_from(tensor: str) -> str | None:
        """The float tensor that `tensor` is DQ(Q(.)) of; None for a dequantized weight (no QuantizeLinear)."""
        dq = producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return tensor
        q = producer.get(dq.input[0])
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    def fp_of(*names: str | None) -> str | None:
        return next((n for n in names if n is not None and n in fp_values), None)

    matched: dict[str, tuple[TensorPair, TensorPair]] = {}
    for name, _ in nodes:
        node = q_by_name.get(name)
        if node is None or name not in fp_names or not node.output or node.output[0] not in q_values:
            continue
        pair_in = None
        for tensor in node.input:
            if not tensor or tensor in q_inits or tensor not in q_values:
                continue
            source = quantized_from(tensor)
            if source is None or source in q_inits:
                continue  # a weight, not an activation
            fp_name = fp_of(tensor, source)
            if fp_name is not None:
                pair_in = (fp_name, tensor)
                break
        q_out = passed_on(node.output[0])
        fp_out = fp_of(node.output[0], q_out)
        if pair_in is not None and fp_out is not None:
            matched[name] = (pair_in, (fp_out, q_out))
    return matched


def local_sqnr_loss(fp32: onnx.ModelProto, int8_bytes: bytes, nodes: list[tuple[str, str]],
                    samples: Sequence[Sample], threads: int | None) -> dict[str, float]:
    """Cheap per-layer view: SQNR (dB) lost across each node inside the full INT8 model.

    Exposes every node's first activation input and its output (as passed on, after Q -> DQ) in both models
    (`match_tensors` pairs the names), runs both once per sample and accumulates signal/noise energies
    (nothing held per sample), then reports SQNR(input) - SQNR(output): the error that node itself adds,
    its weight and output rounding included. Used to pick which nodes are worth quantizing alone. Nodes
    that cannot be matched are missing from the result.
    """
    from edgekit.onnxio import ort_session

    int8 = onnx.ModelProto.FromString(int8_bytes)
    io_of = match_tensors(fp32, int8, nodes)
    pairs = sorted({p for both in io_of.values() for p in both})

    def expose(model: onnx.ModelProto, names: set[str]) -> tuple[Any, list[str]]:
        """A session that also returns `names` (graph inputs are read from the sample instead)."""
        model = onnx.ModelProto.FromString(model.SerializeToString())
        inputs = {i.name for i in model.graph.input}
        present = {o.name for o in model.graph.output}
        fetch = sorted(names - inputs)
        for t in fetch:
            if t not in present:
                model.graph.output.append(onnx.ValueInfoProto(name=t))
        return ort_session(model.SerializeToString(), threads=threads), fetch

    (fp_sess, fp_fetch), (q_sess, q_fetch) = expose(fp32, {p[0] for p in pairs}), expose(int8, {p[1] for p in pairs})
    signal = dict.fromkeys(pairs, 0.0)
    noise = dict.fromkeys(pairs, 0.0)
    for sample in samples:
        ref = {**sample, **dict(zip(fp_fetch, fp_sess.run(fp_fetch, sample), strict=True))}
        got = {**sample, **dict(zip(q_fetch, q_sess.run(q_fetch, sample), strict=True))}
        for pair in pairs:
            r = np.asarray(ref[pair[0]], dtype=np.float64)
            signal[pair] += float(np.sum(r * r))
            noise[pair] += float(np.sum((r - np.asarray(got[pair[1]], dtype=np.float64)) ** 2))

    def sqnr(pair: TensorPair) -> float:
        if noise[pair] <= 1e-12 * max(signal[pair], 1.0):
            return 120.0  # exact (cap keeps differences finite)
        return min(120.0, 10.0 * float(np.log10(max(signal[pair], 1e-30) / noise[pair])))

    return {name: sqnr(p_in) - sqnr(p_out) for name, (p_in, p_out) in io_of.items()}


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
    """Same threads, warm-up, then round-robin runs (order rotating each round) and medians.

    The loop is `edgekit.timing.interleaved`: one run per candidate per round, at least
    `min_runs` rounds and then rounds until about `seconds` per model has passed (at most `max_runs`).
    """
    from edgekit.onnxio import ort_session
    from edgekit.timing import interleaved

    sessions = {k: ort_session(v, threads=threads) for k, v in models.items()}
    names = {k: [o.name for o in s.get_outputs()] for k, s in sessions.items()}
    calls = {k: (lambda s=s, k=k: s.run(names[k], sample)) for k, s in sessions.items()}
    timed = interleaved(calls, rounds=max_runs, min_rounds=min_runs, max_seconds=seconds * len(sessions),
                        warmup=3, round_seconds=0.0, min_runs=1, max_runs=1)
    rounds = min(len(t.rounds) for t in timed.values()) if timed else 0
    return SpeedReport({k: statistics.median(t.samples) for k, t in timed.items()}, rounds, threads)
