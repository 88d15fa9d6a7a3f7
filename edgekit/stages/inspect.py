"""What is in an ONNX model: inputs/outputs, ops, parameters, weight bytes, MACs/FLOPs, quantization.

MACs are counted from shapes inferred by `onnx.shape_inference` (dynamic dims replaced by the shapes
given, else 1) rather than by onnx-tool: the count is a few lines per op, prints nothing, and the NPU
roofline and partition reports need the same per-node figures (`node_costs`). Every figure here is
`estimated` provenance: counted from the graph, not measured.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgekit import onnxio
from edgekit.artifact import MANIFEST_SUFFIX, Manifest, manifest_path_for, sha256_file, to_jsonable
from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec

# Ops that move or reinterpret data without arithmetic: no FLOPs.
_DATA_MOVEMENT = {
    "Reshape", "Transpose", "Concat", "Split", "Slice", "Gather", "GatherElements", "GatherND", "Squeeze",
    "Unsqueeze", "Flatten", "Identity", "Shape", "Size", "Constant", "ConstantOfShape", "Expand", "Tile", "Pad",
    "Cast", "CastLike", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements", "Range", "NonZero",
    "QuantizeLinear", "DequantizeLinear", "Dropout", "Resize", "Upsample",
}
_POOLS = {"MaxPool", "AveragePool", "LpPool"}
_GLOBAL_POOLS = {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum", "ReduceMax",
                 "ReduceMin", "ReduceProd", "ReduceL2"}
_DTYPE_BYTES = {
    onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2, onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT16: 2, onnx.TensorProto.UINT16: 2,
    onnx.TensorProto.INT32: 4, onnx.TensorProto.UINT32: 4, onnx.TensorProto.INT64: 8, onnx.TensorProto.UINT64: 8,
    onnx.TensorProto.BOOL: 1, onnx.TensorProto.INT4: 1, onnx.TensorProto.UINT4: 1,
}


@dataclass(frozen=True)
class NodeCost:
    """Cost of one node at fixed shapes (estimated): multiply-accumulates and bytes moved."""

    name: str
    op_type: str
    macs: int
    weight_bytes: int
    input_bytes: int  # activations read (initializers excluded)
    output_bytes: int
    flops: int = 0  # 2 * MACs for MAC ops, ~1 per output element (x window for pools) otherwise
    shape_known: bool = True  # False when shape inference could not size this node (costs are then 0)


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


def fix_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None,
                     default: int = 1) -> onnx.ModelProto:
    """A copy whose graph inputs have fixed dims: from `shapes` by input name, else dynamic dims -> `default`."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    shapes = dict(shapes or {})
    weights = {init.name for init in fixed.graph.initializer}
    for value in fixed.graph.input:
        if value.name in weights:
            continue
        dims = value.type.tensor_type.shape.dim
        wanted = shapes.get(value.name)
        if wanted is not None and len(wanted) == len(dims):
            for dim, size in zip(dims, wanted, strict=True):
                dim.Clear()
                dim.dim_value = int(size)
        else:
            for dim in dims:
                if not (dim.HasField("dim_value") and dim.dim_value > 0):
                    dim.Clear()
                    dim.dim_value = default
    # stale intermediate shapes (e.g. with a symbolic batch) would stop inference from refining them
    del fixed.graph.value_info[:]
    for out in fixed.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    return fixed


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # a model with an op onnx cannot infer: keep what we have
        return model


def _shape_table(model: onnx.ModelProto) -> dict[str, tuple[list[int] | None, int]]:
    """Tensor name -> (static shape or None, element bytes)."""
    table: dict[str, tuple[list[int] | None, int]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        ttype = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in ttype.shape.dim]
        shape = None if not ttype.HasField("shape") or None in dims else [int(d) for d in dims]  # type: ignore[misc]
        table[value.name] = (shape, _DTYPE_BYTES.get(ttype.elem_type, 4))
    for init in model.graph.initializer:
        table[init.name] = (list(init.dims), _DTYPE_BYTES.get(init.data_type, 4))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    table[node.output[0]] = (list(attr.t.dims), _DTYPE_BYTES.get(attr.t.data_type, 4))
    return table


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _numel(shape: list[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _node_macs(node: onnx.NodeProto, shape_of: Any) -> int | None:
    """MACs of a MAC-type op, 0 for others, None when its shapes are unknown."""
    op = node.op_type
    out = shape_of(node.output[0]) if node.output else None
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shape_of(node.input[3] if op == "QLinearConv" else node.input[1])
        if out is None or w is None:
            return None
        return _numel(out) * math.prod(w[1:])  # out elements x (Cin/groups * kernel)
    if op == "ConvTranspose":
        x, w = shape_of(node.input[0]), shape_of(node.input[1])
        if x is None or w is None:
            return None
        return _numel(x) * math.prod(w[1:])  # every input element is scattered into Cout/groups * kernel
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shape_of(node.input[0])
        if out is None or a is None:
            return None
        return _numel(out) * (a[-1] if a else 1)
    if op in ("Gemm", "QGemm"):
        a = shape_of(node.input[0])
        if out is None or a is None or len(a) != 2:
            return None
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return _numel(out) * k
    if op in ("Einsum",):
        return None
    return 0


def _node_flops(node: onnx.NodeProto, macs: int, shape_of: Any) -> int:
    op = node.op_type
    if macs:
        return 2 * macs
    if op in _DATA_MOVEMENT or not node.output:
        return 0
    out = _numel(shape_of(node.output[0]))
    if op in _POOLS:
        return out * math.prod(_attr(node, "kernel_shape", [1]))
    if op in _GLOBAL_POOLS or op in ("Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization"):
        x = shape_of(node.input[0]) if node.input else None
        return max(_numel(x), out)
    return out


def node_costs(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> list[NodeCost]:
    """Per-node MACs and bytes at fixed input shapes (dynamic dims: `input_shapes`, else 1), in graph order."""
    inferred = _infer(fix_input_shapes(model, input_shapes))
    table = _shape_table(inferred)
    weights = {init.name for init in inferred.graph.initializer}
    weights |= {n.output[0] for n in inferred.graph.node if n.op_type == "Constant" and n.output}
    # QDQ: a DequantizeLinear of a stored weight is folded by every compiler; its consumer reads the int8 bytes.
    dq_weights = {n.output[0]: n.input[0] for n in inferred.graph.node
                  if n.op_type == "DequantizeLinear" and n.input and n.input[0] in weights}

    def shape_of(name: str) -> list[int] | None:
        return table.get(name, (None, 4))[0]

    def nbytes(name: str) -> int | None:
        shape, size = table.get(name, (None, 4))
        return None if shape is None else _numel(shape) * size

    costs: list[NodeCost] = []
    for i, node in enumerate(inferred.graph.node):
        macs = _node_macs(node, shape_of)
        known = macs is not None and all(nbytes(o) is not None for o in node.output if o)
        macs = macs or 0
        if node.op_type == "DequantizeLinear" and node.output and node.output[0] in dq_weights:
            w_bytes = in_bytes = 0  # accounted to the consumer
        else:
            w_bytes = sum(nbytes(n) or 0 for n in node.input if n in weights)
            w_bytes += sum(nbytes(dq_weights[n]) or 0 for n in node.input if n in dq_weights)
            in_bytes = sum(nbytes(n) or 0 for n in node.input if n and n not in weights and n not in dq_weights)
        out_bytes = sum(nbytes(n) or 0 for n in node.output if n)
        costs.append(NodeCost(
            name=node.name or f"{node.op_type}_{i}", op_type=node.op_type, macs=int(macs), weight_bytes=int(w_bytes),
            input_bytes=int(in_bytes), output_bytes=int(out_bytes), flops=int(_node_flops(node, macs, shape_of)),
            shape_known=bool(known or node.op_type == "Constant"),
        ))
    return costs


def parameter_count(model: onnx.ModelProto) -> tuple[int, int]:
    """(elements, bytes) of all initializers and Constant tensors that hold weights (more than a scalar)."""
    count, size = 0, 0
    tensors = list(model.graph.initializer)
    tensors += [onnx.helper.get_attribute_value(a) for n in model.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    for tensor in tensors:
        numel = math.prod(tensor.dims) if tensor.dims else 1
        if tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and numel <= 8:
            continue  # shape constants, axes, indices: not weights
        count += numel
        size += numel * _DTYPE_BYTES.get(tensor.data_type, 4)
    return count, size


def inspect(path: str | Path, *, input_shapes: Mapping[str, tuple[int, ...]] | list | None = None) -> ModelInfo:
    """Load an ONNX file (clear error if missing/not ONNX/truncated) and describe it."""
    path = Path(path)
    model = onnxio.load_onnx(path)
    shapes = _shape_dict(input_shapes)
    declared = {spec.name: spec for spec in onnxio.input_specs(model)}
    for name, shape in shapes.items():
        if name not in declared:
            raise BadInputError(f"the model has no input {name!r}", path="--input-shape",
                                hint="inputs: " + " ".join(str(s) for s in declared.values()))
        if len(shape) != len(declared[name].shape):
            raise BadInputError(f"input {name!r} has rank {len(declared[name].shape)}, got {len(shape)} dims",
                                path="--input-shape", hint=f"the model declares {declared[name]}")
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


def _shape_dict(input_shapes: Mapping[str, tuple[int, ...]] | list | None) -> dict[str, tuple[int, ...]]:
    """Accept {name: shape}, TensorSpecs or "name:1,3,224,224" strings."""
    if not input_shapes:
        return {}
    if isinstance(input_shapes, Mapping):
        return {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
    from edgekit.specs import as_specs

    return {s.name: s.concrete_shape() for s in as_specs(list(input_shapes))}

