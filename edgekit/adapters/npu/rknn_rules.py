"""Rockchip RKNN operator rules, from Rockchip's published ONNX op-support table.

Source: rockchip-linux/rknn-toolkit2 `doc/RKNNToolKit2_OP_Support-1.4.0.md` ("ONNX OPs supported by
RKNN Toolkit2", which points to RKNN_Compiler_Support_Operator_List.pdf for more restrictions). Ops the
table lists without "Not Supported" map to the NPU (with the table's limits as the reason); ops it marks
"Not Supported" are unsupported by that list; ops it does not name are unknown. Newer toolkits (2.x, which
edgekit installs) support more ops than the 1.4.0 table: the real build (`edgekit compile --target rk3588`)
is the final word, and a profile can override single ops with `[npu.rule_overrides.<Op>]`.
"""

from __future__ import annotations

from edgekit.adapters.npu.ruleset import NPU, UNKNOWN, UNSUPPORTED, OpRule, RuleSet

RKNN_OP_LIST = (
    "Rockchip RKNN-Toolkit2 'ONNX OPs supported by RKNN Toolkit2' (doc/RKNNToolKit2_OP_Support-1.4.0.md, "
    "rockchip-linux/rknn-toolkit2; details in RKNN_Compiler_Support_Operator_List.pdf)"
)
RKNN_OPSET_SOURCE = (
    "RKNN SDK 1.6.0 release notes: ONNX opset 12-19 supported (earlier op table written for opset 12)"
)

# op -> remark from the table ("" = listed without limits).
_SUPPORTED: dict[str, str] = {
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


def rknn_rules() -> RuleSet:
    rules = {op: OpRule(op, NPU, RKNN_OP_LIST, remark or "listed in the RKNN ONNX op table")
             for op, remark in _SUPPORTED.items()}
    for op in _NOT_SUPPORTED:
        rules[op] = OpRule(op, UNSUPPORTED, RKNN_OP_LIST,
                           "marked 'Not Supported' in the RKNN ONNX op table (1.4.0); toolkit 2.x may accept it: "
                           "a real build with `edgekit compile --target rk3588` decides")
    default = OpRule("*", UNKNOWN, RKNN_OP_LIST, "not named in the RKNN ONNX op table")
    return RuleSet("rockchip-rknn", "Rockchip RKNN-Toolkit2 (ONNX)", default, (12, 19), RKNN_OPSET_SOURCE, rules)
