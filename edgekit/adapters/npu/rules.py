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
from edgekit.adapters.npu.ruleset import CPU_FALLBACK, NPU, UNKNOWN, UNSUPPORTED, VERDICTS, OpRule, RuleSet

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
