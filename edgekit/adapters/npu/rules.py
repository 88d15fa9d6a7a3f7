"""Operator rule engine: per ONNX op type a verdict for an NPU, with its constraints and source.

Verdicts: `npu` (the vendor compiler maps it to the device), `cpu-fallback` (runs, but on a CPU
engine), `unsupported` (the vendor's own list or constraints exclude it), `unknown` (we found no vendor
statement either way: never guessed as supported). Rule sets are data (one dict per vendor), picked by
the `rules` key of a target profile's `[npu]` section; a profile may override single ops with
`[npu.rule_overrides.<Op>] verdict = ..., source = ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgekit.adapters.base import NodeVerdict
from edgekit.adapters.npu.rknn_rules import rknn_rules
from edgekit.adapters.npu.ruleset import CPU_FALLBACK, NPU, UNKNOWN, UNSUPPORTED, VERDICTS, Limit, OpRule, RuleSet

_SEVERITY = {NPU: 0, CPU_FALLBACK: 1, UNKNOWN: 2, UNSUPPORTED: 3}

# --- Sources (doc title + URL + section) -------------------------------------------------------------
CANN_ONNX_LIST = (
    "Huawei CANN 'Supported ONNX Operators' (operator list, CANN 5.0.4 / 8.x): "
    "https://www.hiascend.com/document/detail/zh/canncommercial/5046/reference/fwoperatorlist/operatorlist_0071.html"
)
CANN_ATC_ONNX_SPEC = (
    "Huawei CANN ATC tool guide, 'ONNX operator specification' (ONNX 1.12, opset v9–v18): "
    "https://www.hiascend.com/document/detail/zh/canncommercial/700/inferapplicationdev/atctool/atlasatc_16_0201.html"
)
CANN_RESIZE = (
    "Huawei CANN ONNX operator 'Resize', section 约束 (constraints): "
    "https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/latest/API/aolapi/atlasoxol_09_0131.html"
)
CANN_IF = (
    "Huawei CANN ONNX operator 'If' (opset v8–v18, constraints: none): "
    "https://www.hiascend.com/document/detail/zh/canncommercial/latest/API/aolapi/atlasoxol_09_0081.html"
)
CANN_NMS = (
    "Huawei CANN ONNX operator 'NonMaxSuppression', section 约束与限制: "
    "https://www.hiascend.com/document/detail/zh/canncommercial/850/API/aolapi/atlasoxol_09_0106.html"
)
CANN_NONZERO = (
    "Huawei CANN ONNX operator 'NonZero' (opset v9–v18, constraints: none): "
    "https://www.hiascend.com/document/detail/en/canncommercial/latest/API/aolapi/atlasoxol_09_0107.html"
)
CANN_ATC_DYNAMIC = "Huawei CANN ATC tool guide: --dynamic_batch_size / --dynamic_image_size / --dynamic_dims"
MAGICMIND_NO_LIST = (
    "no public Cambricon MagicMind ONNX operator support table was found (Cambricon/magicmind_cloud and "
    "Cambricon/magicmind_edge samples build models through the parsers but publish no per-op list)"
)
MAGICMIND_RESNET50_SAMPLE = (
    "Cambricon/magicmind_cloud buildin/cv/classification/resnet50_onnx (vendor sample): MagicMind's ONNX parser "
    "builds ONNX model zoo resnet50-v1-7.onnx at force_float32/force_float16/qint8_mixed_float16; evidence for "
    "the ops of that model, not a support table"
)
MAGICMIND_RESNET50_OPS = ("Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "GlobalAveragePool", "Flatten",
                          "Gemm")
EDGEKIT_ZERO_DIM = (
    "no vendor statement found on empty tensors; static-shape NPU compilers allocate fixed buffers, so "
    "edgekit refuses to guess"
)

# Ops in the CANN ONNX operator list (names as in ONNX; the list spells a few differently).
_CANN_LISTED = tuple("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BitShift Cast Ceil
Celu Clip Compress Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace Det Div
Dropout Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual HardSigmoid Hardmax HardSwish Identity If
InstanceNormalization LRN LSTM LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization LpPool MatMul Max
MaxPool MaxRoiPool MaxUnpool Mean MeanVarianceNormalization Min Mod Mul Multinomial Neg NonMaxSuppression
NonZero Not OneHot Or PRelu Pad Pow RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize ReverseSequence RoiAlign Round Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh
TfIdfVectorizer ThresholdedRelu Tile TopK Transpose Unsqueeze Where Xor
""".split())  # noqa: SIM905 - kept as text, easy to compare with the vendor page


def _ascend_rules() -> RuleSet:
    listed = {op: OpRule(op, NPU, CANN_ONNX_LIST, "in the CANN ONNX operator list") for op in _CANN_LISTED}
    listed["Resize"] = OpRule("Resize", NPU, CANN_RESIZE, "nearest/linear with constant scales/sizes",
                              (10, 18), ("resize_ascend",))
    listed["If"] = OpRule("If", NPU, CANN_IF, "control flow If is listed; both branches are checked too", (8, 18))
    listed["NonMaxSuppression"] = OpRule(
        "NonMaxSuppression", NPU, CANN_NMS, "listed; boxes/scores computed in fp16 on Atlas 200/300/500",
        (11, 18), ("nms_ascend",))
    listed["NonZero"] = OpRule("NonZero", NPU, CANN_NONZERO,
                               "listed without constraints; output shape is data-dependent", (9, 18))
    listed["TopK"] = OpRule("TopK", NPU, CANN_ONNX_LIST, "listed in the CANN ONNX operator list")
    for op in ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
               "MatMulInteger", "DynamicQuantizeLinear"):
        listed[op] = OpRule(op, UNSUPPORTED, CANN_ONNX_LIST,
                            "ONNX quantization ops are not in the CANN list: give ATC the fp32 model and quantize "
                            "with AMCT (edgekit compile --precision int8 writes the AMCT plan)")
    listed["Loop"] = OpRule("Loop", UNSUPPORTED, CANN_ONNX_LIST,
                            "Loop is not in the CANN ONNX operator list (If is); unroll the loop before export")
    listed["Scan"] = OpRule("Scan", UNSUPPORTED, CANN_ONNX_LIST, "Scan is not in the CANN ONNX operator list")
    default = OpRule("*", UNSUPPORTED, CANN_ONNX_LIST, "not in the CANN ONNX operator list")
    return RuleSet("ascend-cann", "Huawei CANN / ATC (ONNX framework=5)", default, (9, 18), CANN_ATC_ONNX_SPEC, listed)


def _magicmind_rules() -> RuleSet:
    default = OpRule("*", UNKNOWN, MAGICMIND_NO_LIST,
                     "no vendor statement found: verify with the MagicMind parser on a host with MagicMind")
    rules = {
        op: OpRule(op, UNKNOWN, MAGICMIND_NO_LIST, "control flow: no MagicMind statement found for ONNX " + op)
        for op in ("If", "Loop", "Scan")
    }
    rules.update({op: OpRule(op, NPU, MAGICMIND_RESNET50_SAMPLE, "built by a Cambricon ONNX sample (ResNet-50)")
                  for op in MAGICMIND_RESNET50_OPS})
    return RuleSet("cambricon-magicmind", "Cambricon MagicMind (ONNX parser)", default, None, MAGICMIND_NO_LIST, rules)


RULE_SETS: dict[str, Callable[[], RuleSet]] = {"ascend-cann": _ascend_rules, "cambricon-magicmind": _magicmind_rules,
                                               "rockchip-rknn": rknn_rules}


def get_rule_set(name: str, overrides: dict[str, dict[str, Any]] | None = None) -> RuleSet:
    """A rule set by name, with per-op overrides from the profile applied."""
    from edgekit.errors import BadInputError

    if name not in RULE_SETS:
        raise BadInputError(f"unknown NPU rule set {name!r}", path="targets/*.toml [npu] rules",
                            hint=f"known: {', '.join(RULE_SETS)}")
    rules = RULE_SETS[name]()
    if overrides:
        merged = dict(rules.rules)
        for op, data in overrides.items():
            verdict = str(data.get("verdict", UNKNOWN))
            if verdict not in VERDICTS or not data.get("source"):
                raise BadInputError(f"rule override for {op} needs a verdict in {VERDICTS} and a source",
                                    path="targets/*.toml [npu.rule_overrides]")
            merged[op] = OpRule(op, verdict, str(data["source"]), str(data.get("reason", "profile override")))
        rules = RuleSet(rules.name, rules.title, rules.default, rules.opsets, rules.opset_source, merged,
                        rules.generic_checks)
    return rules


# --- Graph facts the checks need ---------------------------------------------------------------------
@dataclass
class GraphFacts:
    """Constants, shapes and dtypes of a model (after ONNX shape inference)."""

    opset: int
    constants: dict[str, np.ndarray]
    shapes: dict[str, tuple[int | str, ...]]
    dtypes: dict[str, int]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphFacts:
        from edgekit.onnxio import opset_version

        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # shape inference is best effort; checks degrade to "unknown shape"
            inferred = model
        constants: dict[str, np.ndarray] = {}
        shapes: dict[str, tuple[int | str, ...]] = {}
        dtypes: dict[str, int] = {}

        def visit(graph: onnx.GraphProto) -> None:
            for init in graph.initializer:
                constants[init.name] = numpy_helper.to_array(init)
                shapes[init.name] = tuple(init.dims)
                dtypes[init.name] = init.data_type
            for node in graph.node:
                if node.op_type == "Constant" and node.output:
                    for attr in node.attribute:
                        if attr.name == "value":
                            constants[node.output[0]] = numpy_helper.to_array(attr.t)
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        visit(attr.g)
            for value in list(graph.input) + list(graph.output) + list(graph.value_info):
                ttype = value.type.tensor_type
                if not value.type.HasField("tensor_type"):
                    continue
                dtypes[value.name] = ttype.elem_type
                if ttype.HasField("shape"):
                    shapes[value.name] = tuple(
                        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in ttype.shape.dim)

        visit(inferred.graph)
        return cls(opset_version(model), constants, shapes, dtypes)


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return default


CheckResult = tuple[str, str] | None  # (verdict, reason) when the check changes the verdict


def _check_resize_ascend(node: onnx.NodeProto, facts: GraphFacts) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    mode = _attr(node, "mode", "nearest")
    if mode not in ("nearest", "linear"):
        problems.append((UNSUPPORTED, f"Resize mode={mode!r}: Ascend supports only nearest and linear"))
    # opset 10: inputs (X, scales); opset 11+: (X, roi, scales, sizes)
    param_inputs = [n for n in list(node.input)[1:] if n]
    if facts.opset >= 11:
        param_inputs = [n for i, n in enumerate(node.input) if i >= 2 and n]
    dynamic = [n for n in param_inputs if n not in facts.constants]
    if dynamic:
        problems.append((UNSUPPORTED, f"Resize scales/sizes {dynamic} are computed at run time; Ascend needs constants "
                                      "(run `edgekit simplify` to fold them)"))
    rank = len(facts.shapes.get(node.input[0], ())) if node.input else 0
    if rank == 5:
        ctm = _attr(node, "coordinate_transformation_mode", "half_pixel")
        if mode != "linear" or ctm not in ("align_corners", "pytorch_half_pixel"):
            problems.append((UNSUPPORTED,
                             "5-D Resize: Ascend supports only linear with align_corners/pytorch_half_pixel"))
    dtype = facts.dtypes.get(node.input[0]) if node.input else None
    if facts.opset >= 11 and dtype not in (None, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
        name = onnx.TensorProto.DataType.Name(dtype)
        problems.append((UNSUPPORTED, f"Resize input dtype {name}: float16/float only"))
    if mode == "nearest" and not problems:
        nearest_mode = _attr(node, "nearest_mode", "round_prefer_floor")
        if nearest_mode != "round_prefer_ceil":
            problems.append((NPU, f"nearest_mode={nearest_mode!r}: Ascend implements only round_prefer_ceil, so "
                                  "results may differ from onnxruntime at some pixels"))
    return problems


def _check_nms_ascend(node: onnx.NodeProto, facts: GraphFacts) -> list[tuple[str, str]]:
    notes = [(NPU, "boxes/scores are computed in float16 on Atlas 200/300/500 inference products")]
    if len(node.input) > 2 and node.input[2] in facts.constants:
        max_boxes = int(np.asarray(facts.constants[node.input[2]]).reshape(-1)[0])
        if max_boxes > 700:
            notes.append((UNKNOWN, f"max_output_boxes_per_class={max_boxes} > 700 may exhaust hardware resources"))
    return notes


def _check_zero_dims(node: onnx.NodeProto, facts: GraphFacts) -> list[tuple[str, str]]:
    for name in list(node.input) + list(node.output):
        shape = facts.shapes.get(name)
        if shape and any(d == 0 for d in shape) and name not in facts.constants:
            return [(UNKNOWN, f"tensor {name!r} has a zero-size dim {shape}: {EDGEKIT_ZERO_DIM}")]
    return []


CHECKS: dict[str, Callable[[onnx.NodeProto, GraphFacts], list[tuple[str, str]]]] = {
    "resize_ascend": _check_resize_ascend,
    "nms_ascend": _check_nms_ascend,
    "zero_dims": _check_zero_dims,
}


_ATTR_DEFAULTS: dict[str, Any] = {"auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0, "input_forget": 0,
                                  "mode": None, "dilations": 1, "strides": 1, "pads": 0}
_MODE_DEFAULTS = {"Pad": "constant", "RoiAlign": "avg", "Resize": "nearest"}


def _input_dims(node: onnx.NodeProto, facts: GraphFacts) -> dict[str, tuple[int, Any]]:
    """batch/channel/height/width of input 0 as (axis, size): NCHW, NCW or NC by rank; LSTM/GRU batch is axis 1."""
    shape = facts.shapes.get(node.input[0]) if node.input else None
    if shape is None:
        return {}
    rank = len(shape)
    axes: dict[str, int] = {}
    if rank >= 2:
        seq_major = node.op_type in ("LSTM", "GRU", "RNN") and not _attr(node, "layout", 0)
        axes |= {"batch": 1 if seq_major else 0, "channel": 1}
    if rank == 4:
        axes["height"] = 2
    if rank >= 3:
        axes["width"] = rank - 1
    return {name: (axis, shape[axis]) for name, axis in axes.items()}


def _limit_values(node: onnx.NodeProto, facts: GraphFacts, limit: Limit) -> tuple[str, list[Any]] | str:
    """(what was measured, its values) for one limit, or why the graph does not tell."""
    if limit.what in ("batch", "channel", "height", "width"):
        dims = _input_dims(node, facts)
        if limit.what not in dims:
            return ("", [])  # the input has no such dim at its rank: the limit does not apply
        axis, size = dims[limit.what]
        if not isinstance(size, int):
            return f"{limit.what} (dim {axis}) is {size!r}, not fixed (run `edgekit simplify -s` first)"
        return (f"{limit.what} (dim {axis})", [size])
    if limit.what == "spatial":
        sizes = [size for d, (_, size) in _input_dims(node, facts).items() if d in ("height", "width")]
        if not all(isinstance(size, int) for size in sizes):
            return f"input H, W {sizes} are not fixed (run `edgekit simplify -s` first)"
        return ("kernel (input H, W)", sizes)
    if limit.what == "attr":
        if limit.name == "axis":  # Softmax/LogSoftmax: default 1 before opset 13, -1 from 13; negative counts back
            value = _attr(node, "axis", 1 if facts.opset < 13 else -1)
            rank = len(facts.shapes.get(node.input[0], ())) if node.input else 0
            if value < 0 and not rank:
                return f"axis {value} with an input of unknown rank"
            return ("axis", [value + rank if value < 0 else value])
        value = _attr(node, limit.name)
        if limit.name == "count_include_pad" and not any(_attr(node, "pads", [0])) and \
                _attr(node, "auto_pad", "NOTSET") in ("NOTSET", "VALID"):
            return ("", [])  # no padding: whether pads are counted cannot matter
        if value is None and limit.name == "kernel_shape" and len(node.input) > 1:
            weight = facts.shapes.get(node.input[1])
            value = list(weight[2:]) if weight else None
        if value is None:
            value = _MODE_DEFAULTS.get(node.op_type) if limit.name == "mode" else _ATTR_DEFAULTS.get(limit.name)
        if value is None:
            return f"{limit.name} is not known from the graph"
        return (limit.name, list(value) if isinstance(value, (list, tuple)) else [value])
    if limit.what == "input_values":
        index = limit.index
        if limit.name == "scales":
            index = 2 if facts.opset >= 11 else 1
        if len(node.input) <= index or not node.input[index]:
            return ("", []) if limit.name != "scales" else "Resize by sizes, not scales"
        name = node.input[index]
        if name not in facts.constants:
            return f"input {name!r} is computed at run time"
        values = [v.item() for v in np.asarray(facts.constants[name]).reshape(-1)]
        if limit.name == "scales":
            values = values[2:]  # N and C scale by 1
        return (limit.name or f"input {index}", values)
    if limit.what == "const_input":
        name = node.input[limit.index] if len(node.input) > limit.index else ""
        return (f"input {name!r} is computed at run time", [int(not name or name in facts.constants)])
    if limit.what == "cast_to":
        to = _attr(node, "to")
        return ("to", [onnx.TensorProto.DataType.Name(to) if to is not None else "?"])
    return f"no check for limit kind {limit.what!r}"


def check_limits(node: onnx.NodeProto, facts: GraphFacts, limits: tuple[Limit, ...]) -> list[tuple[str, str]]:
    """Each vendor limit applied to the node: outside -> the limit's verdict; not decidable -> unknown."""
    problems: list[tuple[str, str]] = []
    for limit in limits:
        found = _limit_values(node, facts, limit)
        if isinstance(found, str):
            problems.append((UNKNOWN, f"cannot check '{limit.text}': {found}"))
            continue
        label, values = found
        if limit.what == "const_input":
            ok = bool(values[0])
        elif limit.values:
            ok = all(v in limit.values for v in values)
        else:
            ok = all((limit.low is None or v >= limit.low) and (limit.high is None or v <= limit.high)
                     for v in values)
        if not ok:
            shown = label if limit.what == "const_input" else f"{label} is {_fmt(values)}"
            where = "runs on the CPU" if limit.verdict == CPU_FALLBACK else "not supported"
            problems.append((limit.verdict, f"{shown}: outside the limit '{limit.text}' ({where})"))
    return problems


def _fmt(values: list[Any]) -> str:
    return str(values[0]) if len(values) == 1 else "[" + ", ".join(map(str, values)) + "]"


def _worse(a: str, b: str) -> str:
    return a if _SEVERITY[a] >= _SEVERITY[b] else b


def evaluate_node(node: onnx.NodeProto, rules: RuleSet, facts: GraphFacts, *, prefix: str = "",
                  index: int = 0) -> NodeVerdict:
    """The verdict of one node: the op rule, then opset range, then attribute/dtype/shape checks."""
    rule = rules.rule_for(node.op_type, node.domain)
    verdict, reasons, source = rule.verdict, [rule.reason] if rule.reason else [], rule.source
    opsets = rule.opsets or rules.opsets
    if opsets and verdict in (NPU, CPU_FALLBACK) and not (opsets[0] <= facts.opset <= opsets[1]):
        verdict = _worse(verdict, UNKNOWN)
        reasons.append(f"model opset {facts.opset} is outside the documented range v{opsets[0]}–v{opsets[1]} "
                       f"({rules.opset_source}); re-export with an opset in range")
    if verdict != UNSUPPORTED:
        for check in rule.checks + rules.generic_checks:
            for new_verdict, reason in CHECKS[check](node, facts):
                verdict = _worse(verdict, new_verdict)
                reasons.append(reason)
        for new_verdict, reason in check_limits(node, facts, rule.limits):
            verdict = _worse(verdict, new_verdict)
            reasons.append(reason)
    name = node.name or f"{node.op_type}_{index}"  # same fallback name as inspect.node_costs
    return NodeVerdict(f"{prefix}{name}", node.op_type, verdict, "; ".join(r for r in reasons if r), source)


def iter_nodes(graph: onnx.GraphProto, prefix: str = "") -> Iterator[tuple[str, int, onnx.NodeProto]]:
    """Every node, including those inside If/Loop bodies (prefixed with the parent node name)."""
    for i, node in enumerate(graph.node):
        yield prefix, i, node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g, f"{prefix}{node.name or f'{node.op_type}_{i}'}/{attr.name}/")


def evaluate_model(model: onnx.ModelProto, rules: RuleSet, facts: GraphFacts | None = None) -> list[NodeVerdict]:
    """Verdicts for every node: top-level nodes first in graph order are those without a `/` prefix."""
    facts = facts or GraphFacts.of(model)
    return [evaluate_node(node, rules, facts, prefix=prefix, index=i) for prefix, i, node in iter_nodes(model.graph)]
