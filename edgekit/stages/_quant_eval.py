"""Judging a quantized model: accuracy vs FP32, per-node sensitivity, and measured speed.

Plain dataclasses that serialize to JSON (Polygraphy's RunResults habit); no live sessions leave here.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit.checks.metrics import Metric, MetricFigure
from edgekit.checks.verify import AccuracyAccumulator, AccuracyFigures
from edgekit.progress import emit

Sample = dict[str, np.ndarray]
SPILL_BYTES = 256 << 20  # eval inputs/FP32 outputs kept in memory up to this much each; the rest go to disk


class SpillList(Sequence[Sample]):
    """Per-sample dicts of arrays: in memory up to `budget` bytes, then written to `folder` and read back lazily.

    Why: a 640x640 YOLO holds 4.9 MB of input and 8.6 MB of output per sample; 200 of each in memory (plus
    float64 copies per candidate) is what grew quantize to 24 GB. Spilled items cost one .npy read each.
    """

    def __init__(self, folder: Path | None = None, budget: int = SPILL_BYTES, items: Sequence[Sample] = ()):
        self._folder = folder
        self._budget = budget
        self._held = 0
        self._items: list[Sample | Path] = []
        for item in items:
            self.append(item)

    def append(self, item: Sample) -> None:
        size = sum(np.asarray(v).nbytes for v in item.values())
        if self._folder is None or self._held + size <= self._budget:
            self._items.append({k: np.asarray(v) for k, v in item.items()})
            self._held += size
            return
        self._folder.mkdir(parents=True, exist_ok=True)
        file = self._folder / f"{len(self._items):06d}.npz"
        np.savez(file, **{f"a{i}": np.asarray(v) for i, v in enumerate(item.values())}, __keys__=np.asarray(
            list(item.keys())))
        self._items.append(file)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        item = self._items[index]
        if isinstance(item, dict):
            return item
        with np.load(item, allow_pickle=False) as z:
            keys = [str(k) for k in z["__keys__"]]
            return {k: z[f"a{i}"] for i, k in enumerate(keys)}

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self._items)):
            yield self[i]


@dataclass
class EvalSet:
    """Evaluation inputs, their labels (one per sample, or None) and FP32 reference outputs, sample by sample.

    Inputs and outputs live in `SpillList`s (bounded memory); every judgement streams over them with the
    one accumulator of `edgekit.checks.verify`, so nothing ever stacks all outputs of a candidate.
    """

    samples: Sequence[Sample]
    labels: list[Any] | None
    description: str
    synthetic: bool
    reference: Sequence[Sample] = field(default_factory=list)

    def head(self, k: int) -> EvalSet:
        """The first k samples (for sensitivity), without copying the rest."""
        if k >= len(self.samples):
            return self
        return EvalSet([self.samples[i] for i in range(k)], None if self.labels is None else self.labels[:k],
                       self.description, self.synthetic, [self.reference[i] for i in range(k)])


def run_one(session: Any, sample: Sample) -> Sample:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, sample), strict=True))


def load_evalset(items: Any, reference_session: Any, *, description: str, synthetic: bool,
                 folder: Path | None) -> EvalSet:
    """Read `(sample, label)` pairs once, running FP32 on each; inputs and outputs spill to `folder` past the cap."""
    samples, reference = SpillList(folder / "inputs" if folder else None), SpillList(folder / "fp32" if folder
                                                                                      else None)
    labels: list[Any] = []
    for sample, label in items:
        samples.append(sample)
        reference.append(run_one(reference_session, sample))
        labels.append(label)
    have = [lab is not None for lab in labels]
    return EvalSet(samples, labels if labels and all(have) else None, description, synthetic, reference)


@dataclass(frozen=True)
class OutputAccuracy:
    """Cosine/SQNR of one output; None (with `note`) when they cannot be computed, never -inf."""

    name: str
    cosine: float | None
    sqnr_db: float | None
    max_abs: float | None
    top1_agreement: float | None = None
    note: str = ""


@dataclass(frozen=True)
class AccuracyReport:
    """FP32 vs INT8 on `samples` evaluation samples (provenance: measured with onnxruntime CPU)."""

    samples: int
    source: str
    valid_for_accuracy: bool
    outputs: list[OutputAccuracy]
    metric: MetricFigure | None = None
    dead: tuple[str, ...] = ()
    no_signal: tuple[str, ...] = ()
    provenance: str = "measured"

    @classmethod
    def from_figures(cls, figures: AccuracyFigures, evalset: EvalSet) -> AccuracyReport:
        outputs = [OutputAccuracy(name, o.get("cosine"), o.get("sqnr_db"), o.get("max_abs"), o.get("top1_agreement"),
                                  str(o.get("note", ""))) for name, o in figures.per_output.items()]
        metric = figures.metric if figures.metric is not None and figures.metric.name != "none" else None
        return cls(figures.samples, evalset.description, not evalset.synthetic, outputs, metric,
                   tuple(figures.dead), tuple(figures.no_signal), figures.provenance)

    @property
    def min_sqnr_db(self) -> float | None:
        return min((o.sqnr_db for o in self.outputs if o.sqnr_db is not None), default=None)

    @property
    def min_cosine(self) -> float | None:
        return min((o.cosine for o in self.outputs if o.cosine is not None), default=None)

    @property
    def labelled(self) -> bool:
        return self.metric is not None and self.metric.mode == "accuracy"

    @property
    def fp32_accuracy(self) -> float | None:
        return self.metric.reference if self.labelled and self.metric else None

    @property
    def int8_accuracy(self) -> float | None:
        return self.metric.value if self.labelled and self.metric else None

    @property
    def accuracy_drop(self) -> float | None:
        """FP32 minus INT8 task metric in points (labels only; agreement drops are in `metric.drop`)."""
        return self.metric.drop if self.labelled and self.metric else None

    @property
    def all_no_signal(self) -> bool:
        return bool(self.outputs) and len(self.no_signal) == len(self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples, "source": self.source, "valid_for_accuracy": self.valid_for_accuracy,
            "outputs": [o.__dict__ for o in self.outputs], "fp32_accuracy": self.fp32_accuracy,
            "int8_accuracy": self.int8_accuracy, "accuracy_drop_points": self.accuracy_drop,
            "metric": self.metric.to_json() if self.metric else None, "dead": list(self.dead),
            "no_signal": list(self.no_signal),
            "min_sqnr_db": self.min_sqnr_db, "min_cosine": self.min_cosine, "provenance": self.provenance,
        }


def evaluate(evalset: EvalSet, session: Any, metric: Metric | None = None) -> AccuracyReport:
    """Run `session` on every eval sample and accumulate against the FP32 outputs, one sample at a time."""
    acc = AccuracyAccumulator(metric=metric)
    labels = evalset.labels
    for i, (sample, ref) in enumerate(zip(evalset.samples, evalset.reference, strict=True)):
        acc.add(ref, run_one(session, sample), None if labels is None else labels[i])
    return AccuracyReport.from_figures(acc.result("measured"), evalset)


# ------------------------------------------------------------------------------------ sensitivity


@dataclass(frozen=True)
class NodeSensitivity:
    """Harm of quantizing one node alone: output SQNR/cosine vs FP32 (lower SQNR = more sensitive).

    A figure that cannot be computed is None with the reason in `note` ("n/a (why)"), never -inf.
    """

    node: str
    op_type: str
    sqnr_db: float | None
    cosine: float | None
    metric_value: float | None = None  # the task metric (accuracy or agreement) with this node alone in INT8
    accuracy_drop: float | None = None  # metric drop in points vs FP32
    method: str = "alone"  # alone: quantized alone and run; local: only the per-layer SQNR loss was measured
    local_loss_db: float | None = None  # SQNR lost across the node inside the full INT8 model
    note: str = ""
    int8_gain_ms: float | None = None  # FP32 minus INT8 kernel ms (measured, ORT profiler); None: not measured/mapped


def _harm_key(s: NodeSensitivity) -> tuple[int, float, float]:
    """Dead first, then by the metric drop or SQNR (lowest first); unmeasurable last (not 'most harmful')."""
    if s.note.startswith("dead"):
        return (0, 0.0, 0.0)
    if s.accuracy_drop is not None:
        return (1, -s.accuracy_drop, s.sqnr_db if s.sqnr_db is not None else 0.0)
    if s.sqnr_db is not None:
        return (1, s.sqnr_db, s.cosine if s.cosine is not None else 1.0)
    return (2, 0.0, 0.0)


def rank_nodes(
    candidates: list[tuple[str, str]],
    quantize_only: Callable[[str], bytes],
    make_session: Callable[[bytes], Any],
    evalset: EvalSet,
    metric: Metric | None = None,
) -> list[NodeSensitivity]:
    """Quantize each candidate alone, run the eval subset (streamed), rank by harm (worst first)."""
    ranked: list[NodeSensitivity] = []
    for number, (name, op_type) in enumerate(candidates, 1):
        emit("sensitivity", number, len(candidates), f"{op_type} {name} quantized alone")
        rep = evaluate(evalset, make_session(quantize_only(name)), metric)
        note = ""
        if rep.dead:
            note = "dead: " + "; ".join(rep.dead)
        elif rep.min_sqnr_db is None and rep.metric is None:
            note = "n/a (" + "; ".join(o.note for o in rep.outputs if o.note) + ")"
        ranked.append(NodeSensitivity(name, op_type, rep.min_sqnr_db, rep.min_cosine,
                                      rep.metric.value if rep.metric else None,
                                      rep.metric.drop if rep.metric else None, note=note))
    ranked.sort(key=_harm_key)
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
    int8_faster_rounds: int = 0  # paired rounds in which INT8 ran faster than FP32
    paired_rounds: int = 0

    @property
    def speedup(self) -> float:
        return self.medians_ms["fp32"] / self.medians_ms["int8"]

    @property
    def verdict(self) -> str:
        """Faster only when the medians AND most paired rounds say so: a median can flatter (1.07x) a build
        that paired rounds find slower (0.87x)."""
        s = self.speedup
        rounds = f"faster in {self.int8_faster_rounds}/{self.paired_rounds} paired rounds"
        majority = self.int8_faster_rounds * 2 > self.paired_rounds
        if s >= 1.1 and majority:
            return f"INT8 pays off here: {s:.2f}x faster than FP32, {rounds}"
        if s >= 0.95 or majority:
            return f"INT8 gives no real speed-up here ({s:.2f}x, {rounds}); it still saves memory and size"
        return f"INT8 is SLOWER than FP32 here ({s:.2f}x, {rounds}): keep FP32 on this machine or try another backend"

    def to_json(self) -> dict[str, Any]:
        return {"medians_ms": self.medians_ms, "runs": self.runs, "threads": self.threads,
                "speedup": self.speedup, "int8_faster_rounds": self.int8_faster_rounds,
                "paired_rounds": self.paired_rounds, "verdict": self.verdict, "provenance": self.provenance}


def measure_speed(models: dict[str, bytes], sample: Sample, *, threads: int, seconds: float = 1.0,
                  min_runs: int = 15, max_runs: int = 300) -> SpeedReport:
    """Same threads, warm-up, then round-robin runs (order rotating each round) and medians.

    The loop is `edgekit.timing.interleaved`: one run per candidate per round, at least
    `min_runs` rounds and then rounds until about `seconds` per model has passed (at most `max_runs`).
    """
    from edgekit.onnxio import ort_session
    from edgekit.timing import interleaved, paired_ratios

    sessions = {k: ort_session(v, threads=threads) for k, v in models.items()}
    names = {k: [o.name for o in s.get_outputs()] for k, s in sessions.items()}
    calls = {k: (lambda s=s, k=k: s.run(names[k], sample)) for k, s in sessions.items()}
    timed = interleaved(calls, rounds=max_runs, min_rounds=min_runs, max_seconds=seconds * len(sessions),
                        warmup=3, round_seconds=0.0, min_runs=1, max_runs=1)
    rounds = min(len(t.rounds) for t in timed.values()) if timed else 0
    ratios = paired_ratios(timed["int8"], timed["fp32"]) if {"int8", "fp32"} <= set(timed) else []
    return SpeedReport({k: statistics.median(t.samples) for k, t in timed.items()}, rounds, threads,
                       int8_faster_rounds=sum(r < 1.0 for r in ratios), paired_rounds=len(ratios))
