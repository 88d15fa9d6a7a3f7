"""What is in an ONNX model: inputs/outputs, ops, parameters, weight bytes, MACs/FLOPs, quantization.

The per-node counts (`node_costs`, `parameter_count`) live in edgekit/graph.py (core), because the NPU
roofline and partition reports need the same figures; this stage totals them. Every figure here is
`estimated` provenance: counted from the graph, not measured.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit import onnxio
from edgekit.artifact import MANIFEST_SUFFIX, Manifest, manifest_path_for, sha256_file, to_jsonable
from edgekit.errors import BadInputError
from edgekit.graph import NodeCost, node_costs, parameter_count
from edgekit.specs import TensorSpec

__all__ = ["ModelInfo", "NodeCost", "inspect", "node_costs", "parameter_count"]

@dataclass(frozen=True)
class ModelInfo:
    """Everything `edgekit inspect` shows, as data."""

    path: Path
    file_bytes: int
    sha256: str
    ir_version: int
    opset: int
    producer: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    node_count: int
    op_histogram: dict[str, int]
    params: int
    weight_bytes: int
    macs: int
    flops: int
    macs_by_op: dict[str, int]
    flops_by_op: dict[str, int]
    quantization: onnxio.QuantizationInfo
    cost_shapes: dict[str, list[int]]  # the input shapes MACs were counted at
    unsized_nodes: int = 0  # nodes shape inference could not size (their MACs count as 0)
    provenance: str = "estimated"
    history: list[str] = field(default_factory=list)  # stages from the manifest beside the model, if any

    @property
    def dynamic(self) -> bool:
        return any(not s.is_static for s in self.inputs)

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({
            "path": str(self.path), "file_bytes": self.file_bytes, "sha256": self.sha256,
            "ir_version": self.ir_version, "opset": self.opset, "producer": self.producer,
            "inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
            "node_count": self.node_count, "op_histogram": self.op_histogram, "params": self.params,
            "weight_bytes": self.weight_bytes, "macs": self.macs, "flops": self.flops,
            "macs_by_op": self.macs_by_op, "flops_by_op": self.flops_by_op,
            "quantization": {"quantized": self.quantization.quantized, "format": self.quantization.format,
                             "ops": self.quantization.ops},
            "cost_shapes": self.cost_shapes, "unsized_nodes": self.unsized_nodes,
            "provenance": self.provenance, "history": self.history,
        })


def inspect(path: str | Path, *, input_shapes: Mapping[str, tuple[int, ...]] | list | None = None) -> ModelInfo:
    """Load an ONNX file (clear error if missing/not ONNX/truncated) and describe it."""
    path = Path(path)
    model = onnxio.load_onnx(path)
    given = _given_specs(input_shapes)
    shapes = {spec.name: spec.concrete_shape() for spec in given}
    declared = {spec.name: spec for spec in onnxio.input_specs(model)}
    for spec in given:
        if spec.name not in declared:
            raise BadInputError(f"the model has no input {spec.name!r}", path="--input-shape",
                                hint="inputs: " + " ".join(str(s) for s in declared.values()))
        onnxio.check_input_dims(spec, declared[spec.name], argument="--input-shape")  # rank, sizes, dtype
    costs = node_costs(model, shapes)
    macs_by_op: Counter[str] = Counter()
    flops_by_op: Counter[str] = Counter()
    for cost in costs:
        if cost.macs:
            macs_by_op[cost.op_type] += cost.macs
        if cost.flops:
            flops_by_op[cost.op_type] += cost.flops
    params, weight_bytes = parameter_count(model)
    inputs = onnxio.input_specs(model)
    cost_shapes = {s.name: list(shapes.get(s.name, s.concrete_shape())) for s in inputs}
    history: list[str] = []
    mpath = manifest_path_for(path)
    if mpath.exists() and not path.name.endswith(MANIFEST_SUFFIX):
        try:
            history = [r.stage for r in Manifest.read(mpath).history]
        except Exception:
            history = []
    return ModelInfo(
        path=path, file_bytes=path.stat().st_size, sha256=sha256_file(path), ir_version=int(model.ir_version),
        opset=onnxio.opset_version(model), producer=f"{model.producer_name} {model.producer_version}".strip(),
        inputs=inputs, outputs=onnxio.output_specs(model), node_count=len(model.graph.node),
        op_histogram=onnxio.op_histogram(model), params=params, weight_bytes=weight_bytes,
        macs=sum(c.macs for c in costs), flops=sum(c.flops for c in costs),
        macs_by_op=dict(macs_by_op.most_common()), flops_by_op=dict(flops_by_op.most_common()),
        quantization=onnxio.quantization_info(model), cost_shapes=cost_shapes,
        unsized_nodes=sum(1 for c in costs if not c.shape_known), history=history,
    )


def _given_specs(input_shapes: Mapping[str, tuple[int, ...]] | list | None) -> list[TensorSpec]:
    """Accept {name: shape}, TensorSpecs or "name:1,3,224,224" strings."""
    if not input_shapes:
        return []
    if isinstance(input_shapes, Mapping):
        return [TensorSpec(k, tuple(int(d) for d in v)) for k, v in input_shapes.items()]
    from edgekit.specs import as_specs

    return as_specs(list(input_shapes))

