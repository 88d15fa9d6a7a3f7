"""How a model splits between the NPU and the host CPU, from the rule verdicts.

A node whose verdict is `npu` or `unknown` is placed on the NPU (unknown is an assumption and is listed
as such, with its MACs: the NPU share is given as confirmed + assumed); `cpu-fallback` and `unsupported`
nodes are placed on the host. Placement is done on the
top-level graph (If/Loop bodies follow their parent node). Host<->device copies are the tensors that
cross a placement boundary, plus graph inputs read by the NPU and graph outputs written by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from edgekit.adapters.base import NodeVerdict
from edgekit.adapters.npu.rules import CPU_FALLBACK, UNKNOWN, UNSUPPORTED, GraphFacts, iter_nodes

_DTYPE_BYTES = {
    onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT16: 2,
    onnx.TensorProto.INT32: 4, onnx.TensorProto.INT64: 8, onnx.TensorProto.BOOL: 1,
}


@dataclass(frozen=True)
class Copy:
    tensor: str
    direction: str  # "H2D" or "D2H"
    bytes: int


@dataclass
class Partition:
    placements: list[str]  # per top-level node: "npu" | "cpu"
    npu_subgraphs: int
    cpu_fallbacks: int  # nodes placed on the host CPU
    cpu_segments: int
    total_macs: int
    npu_macs: int
    copies: list[Copy] = field(default_factory=list)
    assumed_on_npu: int = 0  # nodes with verdict `unknown` placed on the NPU by assumption
    assumed_macs: int = 0  # the MACs of those nodes (part of npu_macs)

    @property
    def mac_share_npu(self) -> float:
        return 1.0 if self.total_macs == 0 else self.npu_macs / self.total_macs

    @property
    def mac_share_npu_confirmed(self) -> float:
        """The share on the NPU by a sourced `npu` verdict, without the unknown nodes assumed there."""
        return 1.0 if self.total_macs == 0 else (self.npu_macs - self.assumed_macs) / self.total_macs

    @property
    def copy_bytes(self) -> int:
        return sum(c.bytes for c in self.copies)

    def to_json(self) -> dict[str, Any]:
        return {
            "npu_subgraphs": self.npu_subgraphs, "cpu_fallbacks": self.cpu_fallbacks,
            "cpu_segments": self.cpu_segments, "total_macs": self.total_macs, "npu_macs": self.npu_macs,
            "mac_share_npu": round(self.mac_share_npu, 6), "assumed_on_npu": self.assumed_on_npu,
            "npu_macs_assumed": self.assumed_macs, "mac_share_npu_confirmed": round(self.mac_share_npu_confirmed, 6),
            "host_device_copies": len(self.copies), "host_device_copy_bytes": self.copy_bytes,
            "copies": [{"tensor": c.tensor, "direction": c.direction, "bytes": c.bytes} for c in self.copies],
        }


def tensor_bytes(name: str, facts: GraphFacts, fallback_shapes: dict[str, tuple[int, ...]] | None = None) -> int:
    shape = facts.shapes.get(name)
    if shape is None or any(not isinstance(d, int) for d in shape):
        shape = (fallback_shapes or {}).get(name, shape)
    if shape is None or any(not isinstance(d, int) for d in shape):
        return 0
    size = 1
    for d in shape:
        size *= int(d)
    return size * _DTYPE_BYTES.get(facts.dtypes.get(name, onnx.TensorProto.FLOAT), 4)


def _components(nodes: list[int], graph: onnx.GraphProto, keep: set[int]) -> int:
    parent = {i: i for i in nodes if i in keep}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    producer: dict[str, int] = {}
    for i in parent:
        for out in graph.node[i].output:
            producer[out] = i
    for i in parent:
        for name in graph.node[i].input:
            j = producer.get(name)
            if j is not None:
                parent[find(i)] = find(j)
    return len({find(i) for i in parent})


def partition(model: onnx.ModelProto, verdicts: list[NodeVerdict], macs: list[int],
              facts: GraphFacts | None = None) -> Partition:
    """Place the top-level nodes. `verdicts`: evaluate_model's (every node, nested bodies included, in
    iter_nodes order) or one per top-level node; `macs`: one per top-level node, in graph order.

    Top-level verdicts are told apart by position, never by a `/` in the name: exporters name nodes
    `/backbone/conv/Conv`, and a name test once dropped every such node (all on the NPU, none assumed).
    """
    graph = model.graph
    facts = facts or GraphFacts.of(model)
    prefixes = [prefix for prefix, _, _ in iter_nodes(graph)]
    if len(verdicts) == len(prefixes):
        top = [v for prefix, v in zip(prefixes, verdicts, strict=True) if not prefix]
    else:
        top = list(verdicts)[: len(graph.node)]
    placements = ["cpu" if v.verdict in (UNSUPPORTED, CPU_FALLBACK) else "npu" for v in top]
    placements += ["npu"] * (len(graph.node) - len(placements))
    real = [i for i, n in enumerate(graph.node) if n.op_type != "Constant"]
    npu_nodes = {i for i in real if placements[i] == "npu"}
    cpu_nodes = {i for i in real if placements[i] == "cpu"}
    producer = {out: i for i, n in enumerate(graph.node) for out in n.output}
    copies: list[Copy] = []
    seen: set[tuple[str, str]] = set()

    def add(name: str, direction: str) -> None:
        if (name, direction) not in seen:
            seen.add((name, direction))
            copies.append(Copy(name, direction, tensor_bytes(name, facts)))

    graph_inputs = {v.name for v in graph.input} - {i.name for i in graph.initializer}
    for i in real:
        for name in graph.node[i].input:
            if not name or name in facts.constants:
                continue
            src = producer.get(name)
            if src is None:
                if name in graph_inputs and placements[i] == "npu":
                    add(name, "H2D")
            elif graph.node[src].op_type != "Constant" and placements[src] != placements[i]:
                add(name, "H2D" if placements[i] == "npu" else "D2H")
    for out in graph.output:
        src = producer.get(out.name)
        if src is not None and placements[src] == "npu":
            add(out.name, "D2H")
    macs = list(macs) + [0] * (len(graph.node) - len(macs))
    return Partition(
        placements=placements,
        npu_subgraphs=_components(real, graph, npu_nodes),
        cpu_fallbacks=len(cpu_nodes),
        cpu_segments=_components(real, graph, cpu_nodes),
        total_macs=int(sum(macs[i] for i in real)),
        npu_macs=int(sum(macs[i] for i in npu_nodes)),
        copies=copies,
        assumed_on_npu=sum(1 for i in npu_nodes if i < len(top) and top[i].verdict == UNKNOWN),
        assumed_macs=int(sum(macs[i] for i in npu_nodes if i < len(top) and top[i].verdict == UNKNOWN)),
    )
