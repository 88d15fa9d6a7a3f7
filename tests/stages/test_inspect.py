"""inspect() and node_costs(): op counts, parameters, MACs from inferred shapes, quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.errors import BadInputError
from edgekit.stages.inspect import inspect, node_costs


def conv_model(batch: int | str = 1) -> onnx.ModelProto:
    """Conv(3->8, 3x3, pad 1) -> ConvTranspose(8->4, 2x2, s2) -> Flatten -> Gemm(4*16*16 -> 10)."""
    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)  # noqa: E731
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("ConvTranspose", ["r1", "w2"], ["c2"], strides=[2, 2], kernel_shape=[2, 2]),
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [w("w1", 8, 3, 3, 3), w("b1", 8), w("w2", 8, 4, 2, 2), w("w3", 10, 4 * 16 * 16), w("b3", 10)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


CONV_MACS = 8 * 8 * 8 * 3 * 3 * 3  # out elems x Cin x k x k
DECONV_MACS = 8 * 8 * 8 * 4 * 2 * 2  # in elems x Cout x k x k
GEMM_MACS = 10 * 1024


def test_node_costs_exact_for_conv_deconv_gemm() -> None:
    costs = {c.op_type: c for c in node_costs(conv_model())}
    assert costs["Conv"].macs == CONV_MACS
    assert costs["ConvTranspose"].macs == DECONV_MACS
    assert costs["Gemm"].macs == GEMM_MACS
    assert costs["Relu"].macs == 0 and costs["Relu"].flops == 8 * 8 * 8
    assert costs["Conv"].weight_bytes == (8 * 27 + 8) * 4
    assert costs["Conv"].input_bytes == 3 * 64 * 4 and costs["Conv"].output_bytes == 8 * 64 * 4
    assert costs["Flatten"].flops == 0
    assert all(c.shape_known for c in costs.values())


def test_dynamic_batch_defaults_to_one_or_given_shape() -> None:
    model = conv_model(batch="N")
    assert sum(c.macs for c in node_costs(model)) == CONV_MACS + DECONV_MACS + GEMM_MACS
    assert sum(c.macs for c in node_costs(model, {"x": (4, 3, 8, 8)})) == 4 * (CONV_MACS + DECONV_MACS + GEMM_MACS)


def test_inspect_reports_everything(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(conv_model(batch="N"), str(path))
    info = inspect(path)
    assert info.inputs[0].shape == ("N", 3, 8, 8) and info.dynamic
    assert info.opset == 17 and info.node_count == 5
    assert info.op_histogram["Conv"] == 1
    assert info.params == 8 * 27 + 8 + 8 * 4 * 4 + 10 * 1024 + 10
    assert info.weight_bytes == info.params * 4
    assert info.macs == CONV_MACS + DECONV_MACS + GEMM_MACS
    assert info.macs_by_op == {"Gemm": GEMM_MACS, "ConvTranspose": DECONV_MACS, "Conv": CONV_MACS}
    assert info.flops >= 2 * info.macs
    assert not info.quantization.quantized
    assert info.cost_shapes == {"x": [1, 3, 8, 8]}
    data = info.to_json()
    assert data["macs"] == info.macs and data["provenance"] == "estimated"
    assert inspect(path, input_shapes=["x:2,3,8,8"]).macs == 2 * info.macs
    with pytest.raises(BadInputError, match="rank"):
        inspect(path, input_shapes=["x:2,3,8"])
    with pytest.raises(BadInputError, match="no input 'y'"):
        inspect(path, input_shapes={"y": (1, 3, 8, 8)})


def test_detects_qdq_quantized_model(tmp_path: Path) -> None:
    model = conv_model()
    q = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
         helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
    model.graph.node[0].input[0] = "xd"
    for i, node in enumerate(q):
        model.graph.node.insert(i, node)
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                                    numpy_helper.from_array(np.array(0, np.int8), "z")])
    path = tmp_path / "q.onnx"
    onnx.save(model, str(path))
    info = inspect(path)
    assert info.quantization.quantized and info.quantization.format == "QDQ"


def test_qdq_weights_are_charged_to_their_consumer_in_int8() -> None:
    model = conv_model()
    w1 = next(i for i in model.graph.initializer if i.name == "w1")
    q = np.clip(np.round(numpy_helper.to_array(w1) / 0.01), -127, 127).astype(np.int8)
    w1.CopyFrom(numpy_helper.from_array(q, "w1_q"))
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
                                    numpy_helper.from_array(np.array(0, np.int8), "wz")])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["w1_q", "ws", "wz"], ["w1"]))
    costs = {c.op_type: c for c in node_costs(model)}
    assert costs["Conv"].weight_bytes == 8 * 27 * 1 + 8 * 4  # int8 weight + fp32 bias
    assert costs["Conv"].input_bytes == 3 * 64 * 4 and costs["Conv"].macs == CONV_MACS
    assert costs["DequantizeLinear"].weight_bytes == 0 and costs["DequantizeLinear"].input_bytes == 0


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "x.onnx").write_text("not onnx at all")
    for p in (tmp_path / "missing.onnx", tmp_path / "x.onnx"):
        with pytest.raises(BadInputError):
            inspect(p)


def test_resnet18_at_224_is_1_81_gmacs(zoo_onnx) -> None:
    info = inspect(zoo_onnx("resnet18"))
    assert abs(info.macs - 1.81e9) / 1.81e9 < 0.03
    assert abs(info.params - 11.69e6) / 11.69e6 < 0.01  # BN folded into conv biases
    assert info.history == ["export"]
