"""Where INT8 gains time, node by node: FP32 and QDQ INT8 under onnxruntime's profiler, mapped to QDQ nodes.

Why: the accuracy-aware fallback kept the most sensitive nodes float without asking what each one bought;
on OCR models the mixed result ran 0.87-0.92x FP32. A node whose INT8 kernel is no faster than its float
one is cheap to keep float; one that gains most is worth quantizing. `node_gains` measures that here
(provenance: measured, onnxruntime CPU profiler) and `speed_aware_order` turns it into the fallback order.

Mapping after ORT's optimisations (found by experiment, onnxruntime 1.32 CPU, YOLOv5n and tiny models):
- INT8: DQ -> Conv -> Q fuses into QLinearConv named `<node>_token_<n>` (QGemm, QLinearGlobalAveragePool
  and friends keep `<node>`); a Q/DQ left standalone keeps its QDQ name (`x_QuantizeLinear`), a shared
  weight DQ becomes `<name>/duplicated_token_<n>`.
- FP32: Conv(+Relu) under the NCHWc transformer becomes `<output tensor>_nchwc`, plus `ReorderOutput`
  nodes writing the original tensor; a fused Relu's output is what the QDQ writer hands to the Conv.
  Sigmoid -> Mul (SiLU) becomes QuickGelu `<Mul>/QuickGeluFusion/` (the Sigmoid has no event of its own:
  `_fused_in_fp32` shares the host's time); Slices become a Split `<first Slice>/GatherSliceToSplitFusion`
  (the other Slices stay unmapped).
So an optimised node is attributed by its name (suffixes stripped), else by the tensor it names or writes,
followed up through Q/DQ to the QDQ node that produces it. A standalone DequantizeLinear is charged to the
INT8 node it dequantizes, a standalone QuantizeLinear to the INT8 node(s) it feeds: converting is part of
what INT8 costs. Layout transposes inserted by ORT stay unattributed (reported as such).
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit.onnxio import QUANT_OPS_QDQ, ort_session
from edgekit.specs import format_shapes
from edgekit.stages._quant_eval import NodeSensitivity

PROFILE_RUNS = 5  # timed runs per model after one warm-up (medians): enough to order nodes, cheap on YOLOv5n
NO_GAIN_MS = 1e-3  # a node gaining less than this (1 µs) per run is treated as gaining nothing
MIN_ORDERED_MS = 1.0  # below this much FP32 kernel time per run, per-node figures are µs of jitter: not used
_SUFFIX = re.compile(r"(_token_\d+|_nchwc|/duplicated_token_\d+|/\w*Fusion/?)$")  # ORT renames


@dataclass(frozen=True)
class NodeGain:
    """Kernel time per run of one quantized node in FP32 and in INT8 (Q/DQ it needs included); gain = difference.

    None figures (with `note`) when no profiler event could be attributed to the node in one of the models.
    """

    node: str
    op_type: str
    fp32_ms: float | None
    int8_ms: float | None
    gain_ms: float | None
    note: str = ""


@dataclass(frozen=True)
class NodeGains:
    """Per-node INT8 gain, measured with onnxruntime's CPU profiler on one sample (plain data, JSON-able)."""

    nodes: list[NodeGain]
    runs: int
    threads: int
    shapes: str  # input shapes the figures were measured at (specs.format_shapes)
    fp32_total_ms: float  # all kernel time per run, attributed or not
    int8_total_ms: float
    fp32_unattributed_ms: float  # kernel time no quantized node could be charged with (float ops, layout)
    int8_unattributed_ms: float
    provenance: str = "measured"
    tool: str = "onnxruntime CPU profiler"

    @property
    def gains(self) -> dict[str, float | None]:
        return {g.node: g.gain_ms for g in self.nodes}

    @property
    def unmapped(self) -> list[str]:
        return [g.node for g in self.nodes if g.gain_ms is None]

    @property
    def orderable(self) -> bool:
        """Whether the figures are worth ordering by: a model running in microseconds is all profiler jitter."""
        return self.fp32_total_ms >= MIN_ORDERED_MS

    @property
    def label(self) -> str:
        return (f"{self.provenance} ({self.tool}, {self.runs} run(s) per model after a warm-up, "
                f"{self.threads} thread(s), {self.shapes})")

    def to_json(self) -> dict[str, Any]:
        return {"provenance": self.provenance, "tool": self.tool, "runs": self.runs, "threads": self.threads,
                "shapes": self.shapes, "fp32_total_ms": self.fp32_total_ms, "int8_total_ms": self.int8_total_ms,
                "fp32_unattributed_ms": self.fp32_unattributed_ms,
                "int8_unattributed_ms": self.int8_unattributed_ms, "unmapped": self.unmapped,
                "nodes": [g.__dict__ for g in self.nodes]}


def _profile(model_bytes: bytes, feed: Mapping[str, np.ndarray], *, threads: int, runs: int,
             folder: Path, tag: str) -> tuple[list[tuple[int, dict[str, Any]]], onnx.ModelProto]:
    """(run index, kernel event) of the last `runs` runs (the warm-up dropped) and the optimised graph they name."""
    optimized = folder / f"{tag}.optimized.onnx"
    session = ort_session(model_bytes, threads=threads, optimization="all", optimized_model_path=optimized,
                          profile_prefix=folder / tag)
    names = [o.name for o in session.get_outputs()]
    for _ in range(runs + 1):
        session.run(names, dict(feed))
    events = json.loads(Path(session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    kernels: list[tuple[int, dict[str, Any]]] = []
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            run = next((i for i, (lo, hi) in enumerate(windows) if lo <= e["ts"] <= hi), None)
            if run is not None:
                kernels.append((run, e))
    return kernels, onnx.load(str(optimized), load_external_data=False)


class _Attribution:
    """Charges optimised-graph nodes to the quantized nodes of the QDQ model (see the module docstring)."""

    def __init__(self, qdq: onnx.ModelProto, quantized: Iterable[str]):
        self.quantized = set(quantized)
        self.by_name = {n.name: n for n in qdq.graph.node if n.name}
        self.producer = {o: n for n in qdq.graph.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in qdq.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def _up(self, tensor: str) -> str | None:
        """The quantized node that produces `tensor`, followed up through Q/DQ."""
        node = self.producer.get(tensor)
        seen = 0
        while node is not None and node.op_type in QUANT_OPS_QDQ and seen < 4:
            node, seen = self.producer.get(node.input[0]), seen + 1
        return node.name if node is not None and node.name in self.quantized else None

    def _down(self, tensor: str) -> list[str]:
        """The quantized nodes reading `tensor`, followed down through Q/DQ."""
        found: list[str] = []
        for c in self.consumers.get(tensor, []):
            if c.op_type in QUANT_OPS_QDQ:
                found += self._down(c.output[0])
            elif c.name in self.quantized:
                found.append(c.name)
        return found

    def neighbours(self, name: str) -> list[str]:
        """Quantized consumers, then producers, of a node (through Q/DQ)."""
        node = self.by_name[name]
        down = [c for o in node.output for c in self._down(o)]
        up = [p for i in node.input if (p := self._up(i)) is not None]
        return list(dict.fromkeys([*down, *up]))

    def _qdq_node(self, node: onnx.NodeProto) -> dict[str, float]:
        if node.op_type == "DequantizeLinear":
            owner = self._up(node.input[0])
            return {owner: 1.0} if owner else {}
        owners = self._down(node.output[0]) or ([up] if (up := self._up(node.input[0])) else [])
        return {o: 1.0 / len(owners) for o in owners}

    def shares(self, name: str, outputs: Sequence[str]) -> dict[str, float]:
        """{quantized node: share} for one optimised node; {} when it does no quantized node's work."""
        base = name
        while _SUFFIX.search(base):
            base = _SUFFIX.sub("", base)
        for candidate in dict.fromkeys((name, base)):
            node = self.by_name.get(candidate)
            if node is None:
                continue
            if node.name in self.quantized:
                return {node.name: 1.0}
            if node.op_type in QUANT_OPS_QDQ:
                return self._qdq_node(node)
        for tensor in (base, *outputs):
            if (owner := self._up(tensor)) is not None:
                return {owner: 1.0}
        return {}


def _per_node(kernels: list[tuple[int, dict[str, Any]]], optimized: onnx.ModelProto, attribution: _Attribution,
              runs: int) -> tuple[dict[str, float], float, float]:
    """(ms per quantized node, total ms, unattributed ms), each the median over the runs (robust to a busy CPU)."""
    outputs = {n.name: list(n.output) for n in optimized.graph.node}
    charged: dict[str, list[float]] = {}
    total, loose = [0.0] * runs, [0.0] * runs
    for run, e in kernels:
        name = e["name"][: -len("_kernel_time")]
        ms = float(e["dur"]) / 1000.0
        total[run] += ms
        shares = attribution.shares(name, outputs.get(name, []))
        if not shares:
            loose[run] += ms
        for node, share in shares.items():
            charged.setdefault(node, [0.0] * runs)[run] += ms * share
    return ({k: statistics.median(v) for k, v in charged.items()}, statistics.median(total),
            statistics.median(loose))


def _fused_in_fp32(fp: dict[str, float], q: dict[str, float], attribution: _Attribution) -> dict[str, float]:
    """FP32 time per node, shared out where ORT fused several quantized nodes into one FP32 kernel.

    A node with INT8 time and no FP32 event (a Sigmoid inside FP32's QuickGelu(= x*sigmoid(x)) named after
    the Mul) was done by a neighbour's FP32 kernel: the first quantized consumer (else producer) with FP32
    time. That host's FP32 time is split over host and guests in proportion to their INT8 time.
    """
    hosts: dict[str, list[str]] = {}
    for node in q:
        if node in fp:
            continue
        host = next((n for n in attribution.neighbours(node) if n in fp), None)
        if host is not None:
            hosts.setdefault(host, [host]).append(node)
    shared = dict(fp)
    for host, members in hosts.items():
        weight = sum(q.get(m, 0.0) for m in members)
        for m in members:
            shared[m] = fp[host] * (q.get(m, 0.0) / weight if weight > 0 else 1.0 / len(members))
    return shared


def node_gains(fp32_bytes: bytes, int8_bytes: bytes, feed: Mapping[str, np.ndarray],
               quantized: Sequence[tuple[str, str]], *, threads: int, runs: int = PROFILE_RUNS) -> NodeGains:
    """Profile the FP32 model and its QDQ INT8 model on `feed` and charge kernel time to each quantized node.

    `fp32_bytes` is the model the QDQ model was written from (same node names: the prepared model),
    `quantized` the (name, op_type) pairs of `edgekit.qdq.quantized_nodes(int8_bytes)`. Costs one session
    per model plus `runs` + 1 runs each.
    """
    attribution = _Attribution(onnx.ModelProto.FromString(int8_bytes), [n for n, _ in quantized])
    with tempfile.TemporaryDirectory(prefix="edgekit-node-speed-") as tmp:
        folder = Path(tmp)
        fp_kernels, fp_graph = _profile(fp32_bytes, feed, threads=threads, runs=runs, folder=folder, tag="fp32")
        q_kernels, q_graph = _profile(int8_bytes, feed, threads=threads, runs=runs, folder=folder, tag="int8")
    fp, fp_total, fp_loose = _per_node(fp_kernels, fp_graph, attribution, runs)
    q, q_total, q_loose = _per_node(q_kernels, q_graph, attribution, runs)
    fp = _fused_in_fp32(fp, q, attribution)
    nodes = []
    for name, op_type in quantized:
        f, i = fp.get(name), q.get(name)
        if f is None or i is None:
            missing = " or ".join(m for m, v in (("FP32", f), ("INT8", i)) if v is None)
            nodes.append(NodeGain(name, op_type, f, i, None,
                                  f"unmapped: no {missing} profiler event attributed to it after ORT's fusions"))
        else:
            nodes.append(NodeGain(name, op_type, round(f, 5), round(i, 5), round(f - i, 5)))
    shapes = format_shapes({k: list(np.asarray(v).shape) for k, v in feed.items()})
    return NodeGains(nodes, runs, threads, shapes, round(fp_total, 4), round(q_total, 4), round(fp_loose, 4),
                     round(q_loose, 4))


def _harm(s: NodeSensitivity) -> tuple[str, float] | None:
    """(unit, harm >= 0) comparable within its unit, or None when not measured.

    SQNR becomes the noise power it lets through (10^(-dB/10)), which adds up across nodes the way the
    budget's output noise does; a metric drop is in points; a per-layer loss (dB lost across the node)
    becomes the factor by which it grows the noise (10^(dB/10) - 1).
    """
    if s.note.startswith("dead"):
        return ("dead", float("inf"))
    if s.accuracy_drop is not None:
        return ("points", max(s.accuracy_drop, 0.0))
    if s.sqnr_db is not None:
        return ("noise", 10.0 ** (-s.sqnr_db / 10.0))
    if s.local_loss_db is not None:
        return ("local", _local_factor(s.local_loss_db))
    return None


def _local_factor(loss_db: float) -> float:
    return 10.0 ** (max(loss_db, 0.0) / 10.0) - 1.0


def _harms(sensitivity: Sequence[NodeSensitivity]) -> list[tuple[str, float] | None]:
    """Each node's harm; per-layer-only figures put on the scale of the nodes measured alone where possible.

    Why: above the cap most nodes carry only a per-layer loss, a different unit from the alone figures, and
    two units can only be ordered within themselves. The nodes measured alone also carry their per-layer
    loss, so the median ratio (alone harm / per-layer factor) over them converts the rest.
    """
    harms = [_harm(s) for s in sensitivity]
    units = [h[0] for h in harms if h is not None and h[0] in ("points", "noise")]
    if not units:
        return harms
    unit = max(set(units), key=units.count)
    ratios = [h[1] / _local_factor(s.local_loss_db) for s, h in zip(sensitivity, harms, strict=True)
              if h is not None and h[0] == unit and s.local_loss_db is not None and _local_factor(s.local_loss_db) > 0]
    if not ratios:
        return harms
    scale = statistics.median(ratios)
    return [(unit, scale * h[1]) if h is not None and h[0] == "local" else h for h in harms]


def speed_aware_order(sensitivity: Sequence[NodeSensitivity], gains: Mapping[str, float | None]) -> list[str]:
    """The fallback order (kept float first): harm per millisecond INT8 gains, highest first.

    Nodes are reordered only among those of the same harm unit (see `_harms`) that have a measured gain,
    within the slots those nodes hold in the sensitivity ranking; every other node (unmapped gain,
    unmeasured harm, dead) keeps its sensitivity slot. A node gaining nothing (or losing time) in INT8 comes
    first in its group: keeping it float costs no speed. Ties keep the sensitivity order (stable sort).
    """
    order = [s.node for s in sensitivity]
    harms = _harms(sensitivity)
    groups: dict[str, list[int]] = {}
    for index, s in enumerate(sensitivity):
        harm = harms[index]
        if harm is not None and gains.get(s.node) is not None:
            groups.setdefault(harm[0], []).append(index)

    def key(index: int) -> tuple[int, float]:
        gain = gains[sensitivity[index].node] or 0.0
        harm = (harms[index] or ("", 0.0))[1]
        if gain < NO_GAIN_MS:
            return (0, 0.0)  # no gain: keeping it float is free (sensitivity order among these)
        return (1, -harm / gain if harm != float("inf") else float("-inf"))

    for slots in groups.values():
        for slot, index in zip(slots, sorted(slots, key=key), strict=True):
            order[slot] = sensitivity[index].node
    return order


__all__ = ["NodeGain", "NodeGains", "node_gains", "speed_aware_order"]
