"""Operator rule engine: verdicts with sources for Ascend (CANN list) and Cambricon (no public list)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.adapters.npu.rules import (
    CANN_IF,
    CANN_ONNX_LIST,
    MAGICMIND_NO_LIST,
    MAGICMIND_RESNET50_OPS,
    MAGICMIND_RESNET50_SAMPLE,
    GraphFacts,
    evaluate_model,
    get_rule_set,
)
from edgekit.errors import BadInputError
from tests._npu_helpers import detector, if_model, loop_model, segmenter

ASCEND = get_rule_set("ascend-cann")
MAGICMIND = get_rule_set("cambricon-magicmind")


def _by_node(model_path):
    return {v.node: v for v in evaluate_model(onnx.load(str(model_path)), ASCEND)}


def test_detector_runs_on_ascend_with_a_resize_note(tmp_path):
    verdicts = _by_node(detector(tmp_path / "det.onnx"))
    assert {v.verdict for v in verdicts.values()} == {"npu"}
    resize = verdicts["upsample"]
    assert "hiascend.com" in resize.source and "Resize" in resize.source
    assert "round_prefer_ceil" in resize.reason  # ONNX default nearest_mode differs from Ascend's


def test_resize_with_runtime_scales_is_unsupported_on_ascend(tmp_path):
    resize = _by_node(detector(tmp_path / "det.onnx", dynamic_scales=True))["upsample"]
    assert resize.verdict == "unsupported"
    assert "simplify" in resize.reason and "scales" in resize.reason


def test_resize_cubic_is_unsupported_linear_is_fine(tmp_path):
    assert _by_node(detector(tmp_path / "c.onnx", resize_mode="cubic"))["upsample"].verdict == "unsupported"
    linear = _by_node(detector(tmp_path / "l.onnx", resize_mode="linear"))["upsample"]
    assert linear.verdict == "npu" and "round_prefer_ceil" not in linear.reason


def test_segmenter_convtranspose_and_linear_resize(tmp_path):
    verdicts = _by_node(segmenter(tmp_path / "seg.onnx"))
    assert verdicts["up_convT"].verdict == "npu" and verdicts["up_convT"].source == CANN_ONNX_LIST
    assert verdicts["up_resize"].verdict == "npu"


def test_if_is_listed_and_its_branches_are_checked(tmp_path):
    verdicts = _by_node(if_model(tmp_path / "if.onnx"))
    assert verdicts["branch"].verdict == "npu" and verdicts["branch"].source == CANN_IF
    assert "branch/then_branch/then_relu" in verdicts and "branch/else_branch/else_sigmoid" in verdicts


def test_loop_is_unsupported_on_ascend_with_the_list_as_source(tmp_path):
    loop = _by_node(loop_model(tmp_path / "loop.onnx"))["repeat"]
    assert loop.verdict == "unsupported"
    assert loop.source == CANN_ONNX_LIST and "not in the CANN" in loop.reason


def test_magicmind_never_claims_support_it_cannot_source(tmp_path):
    for path in (detector(tmp_path / "d.onnx"), if_model(tmp_path / "i.onnx"), loop_model(tmp_path / "l.onnx")):
        verdicts = evaluate_model(onnx.load(str(path)), MAGICMIND)
        for v in verdicts:
            if v.op_type in MAGICMIND_RESNET50_OPS:  # the vendor's own ONNX ResNet-50 sample builds these
                assert v.verdict == "npu" and v.source == MAGICMIND_RESNET50_SAMPLE
            else:
                assert v.verdict == "unknown" and v.source == MAGICMIND_NO_LIST
    verdicts = {v.node: v.verdict for v in evaluate_model(onnx.load(str(tmp_path / "l.onnx")), MAGICMIND)}
    assert verdicts["repeat"] == "unknown"


def _single_node_model(node: onnx.NodeProto, inputs, outputs, inits=(), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph([node], "one", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_nms_topk_nonzero_follow_the_vendor_pages():
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 100, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 100])
    sel = helper.make_tensor_value_info("sel", TensorProto.INT64, None)
    for max_boxes, expected in ((100, "npu"), (1000, "unknown")):
        node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "maxb"], ["sel"], name="nms")
        model = _single_node_model(node, [boxes, scores], [sel],
                                   [numpy_helper.from_array(np.array([max_boxes], np.int64), "maxb")], opset=11)
        (verdict,) = evaluate_model(model, ASCEND)
        assert verdict.verdict == expected and "atlasoxol_09_0106" in verdict.source
        assert "float16" in verdict.reason
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])
    nz = _single_node_model(helper.make_node("NonZero", ["x"], ["y"], name="nz"), [x],
                            [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    assert evaluate_model(nz, ASCEND)[0].verdict == "npu"
    topk = _single_node_model(helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"), [x],
                              [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("i", TensorProto.INT64, None)],
                              [numpy_helper.from_array(np.array([2], np.int64), "k")])
    assert evaluate_model(topk, ASCEND)[0].verdict == "npu"


def test_opset_outside_documented_range_is_unknown_not_supported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    model = _single_node_model(helper.make_node("Relu", ["x"], ["y"], name="relu"), [x], [y], opset=21)
    (verdict,) = evaluate_model(model, ASCEND)
    assert verdict.verdict == "unknown" and "opset 21" in verdict.reason


def test_zero_size_dims_and_custom_ops_are_not_called_supported():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [0, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [0, 4])
    model = _single_node_model(helper.make_node("Relu", ["x"], ["y"], name="relu"), [x], [y])
    assert evaluate_model(model, ASCEND)[0].verdict == "unknown"
    custom = helper.make_node("MyOp", ["x"], ["y"], name="mine", domain="com.example")
    assert ASCEND.rule_for(custom.op_type, custom.domain).verdict == "unsupported"


def test_qdq_ops_are_unsupported_on_ascend_with_the_amct_hint():
    rule = ASCEND.rule_for("QuantizeLinear")
    assert rule.verdict == "unsupported" and "AMCT" in rule.reason


def test_profile_overrides_need_a_source():
    rules = get_rule_set("ascend-cann", {"TopK": {"verdict": "cpu-fallback", "source": "my lab test, 2026"}})
    assert rules.rule_for("TopK").verdict == "cpu-fallback"
    with pytest.raises(BadInputError, match="source"):
        get_rule_set("ascend-cann", {"TopK": {"verdict": "npu"}})
    with pytest.raises(BadInputError, match="unknown NPU rule set"):
        get_rule_set("nope")


def test_graph_facts_see_constants_and_shapes(tmp_path):
    facts = GraphFacts.of(onnx.load(str(detector(tmp_path / "d.onnx"))))
    assert "scales" in facts.constants and facts.shapes["images"] == (1, 3, 32, 32) and facts.opset == 13


RKNN = get_rule_set("rockchip-rknn")


def test_every_rknn_limit_shown_is_checked_or_says_it_is_not():
    import re

    from edgekit.adapters.npu.rknn_rules import TABLE_REMARKS, remark_limits

    for op, remark in TABLE_REMARKS.items():
        rule = RKNN.rules[op]
        limits, unchecked = remark_limits(op, remark)  # raises on an item no parser knows
        texts = {limit.text for limit in limits}
        for part in remark.split(";"):
            for item in re.split(r",\s*(?![^\[]*\])", part.removeprefix(" ").removeprefix("NPU limit: ")):
                if item.strip():
                    assert item.strip() in texts or item.strip() in unchecked, (op, item)
        assert rule.limits == limits
        assert all(f"not checked from the graph: {', '.join(unchecked)}" in rule.reason for _ in unchecked[:1])


def _conv(kernel: int, batch: int | str = 1) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.zeros((4, 3, kernel, kernel), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv", kernel_shape=[kernel, kernel])
    return _single_node_model(node, [x], [y], [w])


def test_rknn_conv_kernel_limit_is_applied():
    assert evaluate_model(_conv(3), RKNN)[0].verdict == "npu"
    (big,) = evaluate_model(_conv(33), RKNN)
    assert big.verdict == "cpu-fallback"
    assert "kernel_shape is [33, 33]: outside the limit 'kernel [1, 31]'" in big.reason


def test_rknn_limits_on_a_dynamic_dim_are_unknown_not_passed():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])
    (v,) = evaluate_model(_single_node_model(helper.make_node("Softmax", ["x"], ["y"], axis=1), [x], [y]), RKNN)
    assert v.verdict == "unknown" and "cannot check 'batch size 1'" in v.reason
    x2 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8, 8])
    (v2,) = evaluate_model(_single_node_model(helper.make_node("Softmax", ["x"], ["y"], axis=1), [x2], [y]), RKNN)
    assert v2.verdict == "unsupported" and "batch (dim 0) is 2" in v2.reason


def test_rknn_softmax_default_axis_follows_the_opset():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    node = helper.make_node("Softmax", ["x"], ["y"])  # no axis: 1 before opset 13, -1 (here 3) from 13
    assert evaluate_model(_single_node_model(node, [x], [y], opset=12), RKNN)[0].verdict == "npu"
    assert evaluate_model(_single_node_model(node, [x], [y], opset=13), RKNN)[0].verdict == "cpu-fallback"


def test_rknn_average_pool_counts_pads_only_when_it_has_some():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    plain = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    assert evaluate_model(_single_node_model(plain, [x], [y]), RKNN)[0].verdict == "npu"
    padded = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    (v,) = evaluate_model(_single_node_model(padded, [x], [y]), RKNN)
    assert v.verdict == "cpu-fallback" and "count_include_pad is 0" in v.reason
