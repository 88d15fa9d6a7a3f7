"""Rockchip RKNN operator rules, from Rockchip's published ONNX op-support table.

Source: rockchip-linux/rknn-toolkit2 `doc/RKNNToolKit2_OP_Support-1.4.0.md` ("ONNX OPs supported by
RKNN Toolkit2", which points to RKNN_Compiler_Support_Operator_List.pdf for more restrictions). Ops the
table lists without "Not Supported" map to the NPU (with the table's limits as the reason); ops it marks
"Not Supported" are unsupported by that list; ops it does not name are unknown. Newer toolkits (2.x, which
edgekit installs) support more ops than the 1.4.0 table: the real build (`edgekit compile --target rk3588`)
is the final word, and a profile can override single ops with `[npu.rule_overrides.<Op>]`.

Every limit in a remark is parsed into a `Limit` the engine checks per node (a limit shown is a limit
applied): limits after "NPU limit:" send a node outside them to the CPU (cpu-fallback), the others
(e.g. "batch size 1") make it unsupported. The few remarks a graph cannot decide (broadcast kinds)
are shown as "not checked", never silently passed.
"""

from __future__ import annotations

import re

from edgekit.adapters.npu.ruleset import CPU_FALLBACK, NPU, UNKNOWN, UNSUPPORTED, Limit, OpRule, RuleSet

RKNN_OP_LIST = (
    "Rockchip RKNN-Toolkit2 'ONNX OPs supported by RKNN Toolkit2' (doc/RKNNToolKit2_OP_Support-1.4.0.md, "
    "rockchip-linux/rknn-toolkit2; details in RKNN_Compiler_Support_Operator_List.pdf)"
)
RKNN_OPSET_SOURCE = (
    "RKNN SDK 1.6.0 release notes: ONNX opset 12-19 supported (earlier op table written for opset 12)"
)

# op -> remark from the table ("" = listed without limits).
TABLE_REMARKS: dict[str, str] = {
    "Add": "", "ArgMax": "", "ArgMin": "",
    "AveragePool": "NPU limit: channel [1, 8192], stride [1, 8], pad [0, 7], auto_pad NOTSET, count_include_pad 1, "
                   "ceil_mode 0",
    "BatchNormalization": "NPU limit: channel [1, 8192], height [1, 8192], width [1, 8176]",
    "Cast": "only bool/int8/float", "Clip": "", "Concat": "", "Constant": "", "ConstantOfShape": "",
    "Conv": "NPU limit: kernel [1, 31], stride [1, 7], pad [0, 15]",
    "ConvTranspose": "NPU limit: kernel [1, 31], stride 2/4/8, pad [0, 15]",
    "DepthToSpace": "", "DequantizeLinear": "", "Det": "",
    "Div": "NPU limit: broadcast per-element/other", "Dropout": "",
    "Elu": "channel [1, 8192], height [1, 8192], width [1, 8176]", "Equal": "", "Exp": "",
    "EyeLike": "only constant input", "Flatten": "", "GRU": "batch size 1", "Gather": "", "Gemm": "",
    "GlobalAveragePool": "channel [1, 8192], kernel [1, 343]", "GlobalMaxPool": "channel [1, 8192], kernel [1, 343]",
    "Greater": "NPU limit: broadcast per-element/other", "GreaterOrEqual": "", "HardSigmoid": "", "HardSwish": "",
    "Identity": "", "If": "only constant input", "InstanceNormalization": "", "LRN": "",
    "LSTM": "batch size 1, input_forget 0", "LeakyRelu": "", "Less": "NPU limit: broadcast per-element/other",
    "LessOrEqual": "", "LogSoftmax": "batch size 1", "LpNormalization": "", "MatMul": "",
    "Max": "NPU limit: channel [1, 8192], height [1, 8192], width [1, 8176]",
    "MaxPool": "NPU limit: channel [1, 8192], stride [1, 8], pad [0, 7], auto_pad NOTSET, ceil_mode 0, dilations 1",
    "MaxRoiPool": "", "MaxUnpool": "",
    "Min": "NPU limit: channel [1, 8192], height [1, 8192], width [1, 8176]",
    "Mul": "NPU limit: broadcast per-layer/channel/element", "PRelu": "slope broadcast per-layer/channel",
    "Pad": "NPU limit: width [1, 8176], mode constant", "Pow": "", "QuantizeLinear": "", "ReduceMax": "",
    "ReduceMean": "NPU limit: channel/height/width [1, 8192]", "ReduceMin": "",
    "ReduceSum": "NPU limit: channel/height/width [1, 8192]", "ReduceSumSquare": "", "Relu": "",
    "Reshape": "NPU limit: channel [1, 8192], height [1, 8192], width [1, 8176]",
    "Resize": "NPU limit: channel [1, 8192], height [1, 8192], width [1, 8176], scales [1, 8]",
    "ReverseSequence": "", "RoiAlign": "average pooling, batch size 1", "Shape": "", "Sigmoid": "", "Size": "",
    "Slice": "batch size 1; NPU limit: steps 1", "Softmax": "batch size 1; NPU limit: channel [1, 8192], axis 1",
    "Softplus": "", "SpaceToDepth": "", "Split": "", "Sqrt": "", "Squeeze": "",
    "Sub": "NPU limit: broadcast per-layer/channel/element", "Tanh": "", "Tile": "batch size 1, no broadcast",
    "Transpose": "NPU limit: channel [1, 8192], height [1, 8192], width [1, 8176]", "Unsqueeze": "", "Where": "",
}

_NOT_SUPPORTED = tuple("""
Abs Acos Acosh And Asin Asinh Atan Atanh BitShift Ceil Celu Compress ConcatFromSequence ConvInteger Cos Cosh
CumSum Einsum Erf Expand Floor GatherElements GatherND GlobalLpPool Hardmax IsInf IsNaN Log Loop LpPool
MatMulInteger Mean Mod Multinomial Neg NonMaxSuppression NonZero Not OneHot Or QLinearConv QLinearMatMul RNN
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceProd Round Scan ScatterElements ScatterND Selu SequenceAt SequenceConstruct SequenceEmpty
SequenceErase SequenceInsert SequenceLength Shrink Sign Sin Sinh Softsign SplitToSequence StringNormalizer Sum
Tan TfIdfVectorizer ThresholdedRelu TopK Trilu Unique Xor
""".split())  # noqa: SIM905 - kept as text, easy to compare with the vendor table


_RANGE = r"\[(\d+), (\d+)\]"
_ATTR_VALUE = {"auto_pad": "auto_pad", "count_include_pad": "count_include_pad", "ceil_mode": "ceil_mode",
               "dilations": "dilations", "axis": "axis", "input_forget": "input_forget"}


def _item_limits(op: str, item: str, verdict: str) -> list[Limit] | None:
    """The limits one remark item states, or None when the graph cannot decide it (broadcast kinds)."""
    if item == "batch size 1":
        return [Limit("batch", item, 1, 1, verdict=verdict)]
    match = re.fullmatch(rf"((?:channel|height|width)(?:/(?:channel|height|width))*) {_RANGE}", item)
    if match:
        low, high = int(match[2]), int(match[3])
        return [Limit(dim, item, low, high, verdict=verdict) for dim in match[1].split("/")]
    match = re.fullmatch(rf"(kernel|stride|pad) {_RANGE}", item)
    if match:
        low, high = int(match[2]), int(match[3])
        if match[1] == "kernel" and op.startswith("Global"):
            return [Limit("spatial", item, low, high, verdict=verdict)]
        name = {"kernel": "kernel_shape", "stride": "strides", "pad": "pads"}[match[1]]
        return [Limit("attr", item, low, high, name=name, verdict=verdict)]
    match = re.fullmatch(r"stride (\d+(?:/\d+)+)", item)
    if match:
        return [Limit("attr", item, values=tuple(int(v) for v in match[1].split("/")), name="strides",
                      verdict=verdict)]
    match = re.fullmatch(r"(\w+) (\w+)", item)
    if match and match[1] in _ATTR_VALUE:
        value: int | str = int(match[2]) if match[2].isdigit() else match[2]
        return [Limit("attr", item, values=(value,), name=_ATTR_VALUE[match[1]], verdict=verdict)]
    if item == "steps 1":
        return [Limit("input_values", item, values=(1,), index=4, verdict=verdict)]
    match = re.fullmatch(rf"scales {_RANGE}", item)
    if match:
        return [Limit("input_values", item, int(match[1]), int(match[2]), name="scales", verdict=verdict)]
    if item == "mode constant":
        return [Limit("attr", item, values=("constant",), name="mode", verdict=verdict)]
    if item == "average pooling":
        return [Limit("attr", item, values=("avg",), name="mode", verdict=verdict)]
    if item == "only constant input":
        return [Limit("const_input", item, verdict=verdict)]
    if item == "only bool/int8/float":
        return [Limit("cast_to", item, values=("BOOL", "INT8", "FLOAT"), verdict=verdict)]
    if "broadcast" in item:
        return None
    raise ValueError(f"RKNN remark item {item!r} of {op} has no limit parser")  # a new table entry needs one


def remark_limits(op: str, remark: str) -> tuple[tuple[Limit, ...], tuple[str, ...]]:
    """(limits the engine checks, items it cannot check) of one table remark."""
    limits: list[Limit] = []
    unchecked: list[str] = []
    for part in (p.strip() for p in remark.split(";") if p.strip()):
        verdict = UNSUPPORTED
        if part.startswith("NPU limit:"):
            part, verdict = part.removeprefix("NPU limit:").strip(), CPU_FALLBACK
        for item in re.split(r",\s*(?![^\[]*\])", part):
            found = _item_limits(op, item.strip(), verdict)
            if found is None:
                unchecked.append(item.strip())
            else:
                limits += found
    return tuple(limits), tuple(unchecked)


def _rule(op: str, remark: str) -> OpRule:
    limits, unchecked = remark_limits(op, remark)
    reason = remark or "listed in the RKNN ONNX op table"
    if unchecked:
        reason += f" (not checked from the graph: {', '.join(unchecked)})"
    return OpRule(op, NPU, RKNN_OP_LIST, reason, limits=limits)


def rknn_rules() -> RuleSet:
    rules = {op: _rule(op, remark) for op, remark in TABLE_REMARKS.items()}
    for op in _NOT_SUPPORTED:
        rules[op] = OpRule(op, UNSUPPORTED, RKNN_OP_LIST,
                           "marked 'Not Supported' in the RKNN ONNX op table (1.4.0); toolkit 2.x may accept it: "
                           "a real build with `edgekit compile --target rk3588` decides")
    default = OpRule("*", UNKNOWN, RKNN_OP_LIST, "not named in the RKNN ONNX op table")
    return RuleSet("rockchip-rknn", "Rockchip RKNN-Toolkit2 (ONNX)", default, (12, 19), RKNN_OPSET_SOURCE, rules)
