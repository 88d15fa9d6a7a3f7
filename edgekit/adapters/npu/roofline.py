"""Per-node roofline latency estimate for an NPU we cannot run here (provenance: estimated).

time(node) = max(flops / (peak x compute efficiency), bytes / (bandwidth x memory efficiency)) for nodes on
the NPU; host-placed nodes cost a fixed fallback penalty plus their flops at an assumed host rate; every
host<->device copy costs a fixed overhead plus bytes / link bandwidth. Every assumption is returned in
the estimate, so no one mistakes the figure for a measurement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import onnx

from edgekit.adapters.base import LatencyEstimate, NodeVerdict
from edgekit.adapters.npu.partition import Partition, partition
from edgekit.adapters.npu.profile import NpuProfile
from edgekit.adapters.npu.rules import GraphFacts, evaluate_model, get_rule_set
from edgekit.graph import fixed_shapes, node_costs

if TYPE_CHECKING:
    from collections.abc import Mapping

# Elementwise ops an NPU compiler fuses into the producing MAC op (no extra pass over memory).
FUSABLE = frozenset({
    "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Mul", "Add",
    "BatchNormalization", "Elu", "Selu", "Softplus", "Mish", "Gelu",
})
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
HOST_GFLOPS = 20.0  # assumed host CPU rate for nodes that fall back (edge ARM-class)

# A published measurement to compare against (not used in the model, only reported).
ANCHORS = {
    "ascend310": {
        "model": "ResNet-50 (mmpretrain resnet50_8xb32_in1k), 1x3x224x224, batch 1",
        "latency_ms": 2.49,
        "source": "MMDeploy docs/en/03-benchmark/benchmark.md, latency table, column Ascend(ms) / Ascend310",
    },
}


def compute_precision(profile: NpuProfile, precision: str) -> tuple[str, str]:
    """The precision the NPU computes in for a requested precision, and why."""
    if precision == "int8":
        return "int8", "INT8 requested: INT8 peak used"
    if precision == "mixed":
        return "fp16", "mixed requested: fp16 peak used for every node (INT8 layers would be faster)"
    if precision == "fp32" and profile.compiler == "atc":
        return "fp16", "fp32 requested: ATC compiles with force_fp16 on this SoC, fp16 peak used"
    if precision == "fp32":
        return "fp32", "fp32 requested: half the fp16 peak assumed"
    return "fp16", "fp16 peak used"


def estimate_latency(
    model: onnx.ModelProto,
    profile: NpuProfile,
    *,
    precision: str = "fp16",
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    verdicts: list[NodeVerdict] | None = None,
) -> tuple[LatencyEstimate, Partition]:
    """A roofline estimate with every assumption listed, plus the partition it was computed on."""
    fixed = fixed_shapes(model, input_shapes) if input_shapes else model
    facts = GraphFacts.of(fixed)
    if verdicts is None:
        verdicts = evaluate_model(fixed, get_rule_set(profile.rules, profile.rule_overrides), facts)
    costs = node_costs(model, input_shapes)
    part = partition(fixed, verdicts, [c.macs for c in costs], facts)

    dev_precision, precision_note = compute_precision(profile, precision)
    peak_ops, peak_fig = profile.peak_ops_per_s("int8" if dev_precision == "int8" else "fp16")
    if dev_precision == "fp32":
        peak_ops /= 2
    eff = profile.efficiency
    bandwidth = profile.bandwidth.value * 1e9
    act_scale = 0.5 if dev_precision in ("fp16", "int8") else 1.0  # costs are sized at fp32 (4 bytes)
    weight_scale = {"int8": 0.25, "fp16": 0.5}.get(dev_precision, 1.0)

    graph = fixed.graph
    producer_op = {out: n.op_type for n in graph.node for out in n.output}
    consumers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            consumers[name] = consumers.get(name, 0) + 1
    fused: set[int] = set()
    fused_outputs: set[str] = set()
    for i, n in enumerate(graph.node):
        src = n.input[0] if n.input else ""
        if (n.op_type in FUSABLE and part.placements[i] == "npu" and consumers.get(src, 0) == 1
                and (producer_op.get(src) in MAC_OPS or src in fused_outputs)):
            fused.add(i)
            fused_outputs.update(n.output)

    per_node: list[dict[str, Any]] = []
    total = 0.0
    for i, cost in enumerate(costs):
        if i >= len(graph.node) or graph.node[i].op_type == "Constant":
            continue
        placement = part.placements[i]
        if placement == "cpu":
            compute_ms = cost.flops / (HOST_GFLOPS * 1e9) * 1e3
            time_ms = eff.cpu_fallback_ms + compute_ms
            per_node.append({"node": cost.name, "op_type": cost.op_type, "placement": "cpu", "macs": cost.macs,
                             "compute_ms": compute_ms, "memory_ms": 0.0, "bound": "cpu-fallback",
                             "time_ms": time_ms})
            total += time_ms
            continue
        if i in fused:
            per_node.append({"node": cost.name, "op_type": cost.op_type, "placement": "npu", "macs": cost.macs,
                             "compute_ms": 0.0, "memory_ms": 0.0, "bound": "fused", "time_ms": 0.0})
            continue
        nbytes = cost.weight_bytes * weight_scale + (cost.input_bytes + cost.output_bytes) * act_scale
        compute_ms = cost.flops / (peak_ops * eff.compute) * 1e3
        memory_ms = nbytes / (bandwidth * eff.memory) * 1e3
        time_ms = max(compute_ms, memory_ms)
        per_node.append({"node": cost.name, "op_type": cost.op_type, "placement": "npu", "macs": cost.macs,
                         "compute_ms": compute_ms, "memory_ms": memory_ms,
                         "bound": "compute" if compute_ms >= memory_ms else "memory", "time_ms": time_ms})
        total += time_ms
    link = profile.host_link.value * 1e9
    for copy in part.copies:
        time_ms = eff.copy_overhead_ms + copy.bytes / link * 1e3
        per_node.append({"node": f"copy:{copy.tensor}", "op_type": copy.direction, "placement": "link",
                         "macs": 0, "compute_ms": 0.0, "memory_ms": time_ms, "bound": "copy", "time_ms": time_ms})
        total += time_ms

    unknown_shapes = sum(1 for c in costs if not getattr(c, "shape_known", True))
    assumptions = [
        f"target {profile.target} ({profile.vendor} {profile.chip}); provenance estimated, never measured",
        f"compute precision {dev_precision}: {precision_note}",
        f"peak {peak_fig.describe()}; 1 MAC = 2 ops",
        f"memory bandwidth {profile.bandwidth.describe()}",
        f"host<->device link {profile.host_link.describe()}",
        f"efficiency: compute {eff.compute:g} x peak, memory {eff.memory:g} x bandwidth ({eff.basis})",
        f"bytes moved: weights x{weight_scale:g}, activations x{act_scale:g} of their fp32 size",
        f"elementwise ops directly after Conv/Gemm/MatMul are fused (cost 0): {len(fused)} nodes",
        f"each host-placed node: {eff.cpu_fallback_ms:g} ms penalty + flops at an assumed {HOST_GFLOPS:g} GFLOP/s "
        f"host rate ({part.cpu_fallbacks} nodes)",
        f"each host<->device copy: {eff.copy_overhead_ms:g} ms + bytes / link ({len(part.copies)} copies, "
        f"{part.copy_bytes} bytes)",
        "nodes with verdict `unknown` are assumed to run on the NPU "
        f"({part.assumed_on_npu} nodes)",
        "no pipelining/overlap between nodes, no vendor graph optimisations beyond the fusion above",
    ]
    if unknown_shapes:
        assumptions.append(f"{unknown_shapes} nodes have unknown shapes and are costed as 0")
    anchor = ANCHORS.get(profile.target)
    if anchor:
        assumptions.append(f"sanity anchor (not this model): {anchor['model']} measured {anchor['latency_ms']} ms "
                           f"({anchor['source']})")
    return LatencyEstimate(total, tuple(assumptions), tuple(per_node)), part


def estimate_to_json(estimate: LatencyEstimate, *, top: int = 20) -> dict[str, Any]:
    """JSON for manifests: total, assumptions and the `top` most expensive nodes."""
    nodes = sorted(estimate.per_node, key=lambda n: -n["time_ms"])[:top]
    return {"latency_ms": estimate.latency_ms, "provenance": estimate.provenance.value,
            "assumptions": list(estimate.assumptions), "top_nodes": nodes, "nodes": len(estimate.per_node)}
