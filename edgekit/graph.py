"""Per-node cost of an ONNX graph at fixed input shapes: MACs, FLOPs, weight and activation bytes.

Core, below stages and adapters: `inspect` totals these figures, and the NPU partition and roofline
(adapters/npu) need the same per-node numbers. MACs are counted from shapes inferred by
`onnx.shape_inference` (dynamic dims replaced by the shapes given, else 1) rather than by onnx-tool: the
count is a few lines per op and prints nothing. Every figure here is `estimated`: counted, not measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import onnx

from edgekit.onnxio import fix_input_dims
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


def fixed_shapes(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
                 fill: int = 1) -> onnx.ModelProto:
    """A copy with inputs fixed to `input_shapes` (by name), other dynamic dims `fill`, intermediate shapes inferred."""
    specs = [TensorSpec(name, tuple(int(d) for d in shape)) for name, shape in (input_shapes or {}).items()]
    return fix_input_dims(model, specs, fill=fill)


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
    inferred = fixed_shapes(model, input_shapes)
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
