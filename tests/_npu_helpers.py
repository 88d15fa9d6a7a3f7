"""Small ONNX models for the NPU tests, built in code: a detector-style graph (Resize + Concat), a
segmenter (ConvTranspose + Resize), and control flow (If, Loop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR = 8


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _w(rng: np.random.Generator, name: str, *shape: int, scale: float = 0.2) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def detector(path: Path, *, size: int = 32, batch: int | str = 1, dynamic_scales: bool = False,
             resize_mode: str = "nearest", opset: int = 13) -> Path:
    """Conv stem -> stride-2 conv -> Resize x2 -> Concat with the stem -> 1x1 head -> Sigmoid."""
    rng = np.random.default_rng(0)
    inits = [_w(rng, "w1", 8, 3, 3, 3), _w(rng, "w2", 8, 8, 3, 3), _w(rng, "w3", 12, 16, 1, 1)]
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="stem_act"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="down", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="down_act"),
    ]
    if dynamic_scales:  # scales computed at run time from the input shape: not foldable without simplify
        nodes += [
            helper.make_node("Shape", ["r2"], ["shp"], name="shape"),
            helper.make_node("Cast", ["shp"], ["shpf"], name="cast", to=TensorProto.FLOAT),
            helper.make_node("Div", ["shpf", "shpf"], ["ones"], name="div"),
            helper.make_node("Mul", ["ones", "two"], ["scales"], name="mul"),
        ]
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "two"))
    else:
        inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    nodes += [
        helper.make_node("Resize", ["r2", "", "scales"], ["up"], name="upsample", mode=resize_mode),
        helper.make_node("Concat", ["up", "r1"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "w3"], ["head"], name="head"),
        helper.make_node("Sigmoid", ["head"], ["detections"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "detector", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [batch, 12, size, size])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR), path)


def segmenter(path: Path, *, size: int = 32) -> Path:
    """Conv -> MaxPool -> Conv -> ConvTranspose (x2) -> Resize (linear, x2) -> Conv -> mask."""
    rng = np.random.default_rng(1)
    inits = [_w(rng, "w1", 8, 1, 3, 3), _w(rng, "w2", 8, 8, 3, 3), _w(rng, "wt", 8, 8, 2, 2),
             _w(rng, "w3", 1, 8, 1, 1), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], name="enc1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="enc1_act"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="enc2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="enc2_act"),
        helper.make_node("ConvTranspose", ["r2", "wt"], ["u1"], name="up_convT", strides=[2, 2]),
        helper.make_node("Resize", ["u1", "", "scales"], ["u2"], name="up_resize", mode="linear"),
        helper.make_node("Conv", ["u2", "w3"], ["mask"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "segmenter", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, size, size])], inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=IR), path)


def if_model(path: Path) -> Path:
    """Conv -> ReduceMean > 0 ? Relu : Sigmoid (an If with two one-node branches)."""
    rng = np.random.default_rng(2)
    then_g = helper.make_graph([helper.make_node("Relu", ["c"], ["t_out"], name="then_relu")], "then", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, None)])
    else_g = helper.make_graph([helper.make_node("Sigmoid", ["c"], ["e_out"], name="else_sigmoid")], "else", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c"], ["m"], name="mean", keepdims=0),
        helper.make_node("Greater", ["m", "zero"], ["cond"], name="greater"),
        helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes, "if_model", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [_w(rng, "w", 4, 3, 3, 3), numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=IR), path)


def loop_model(path: Path, trips: int = 3) -> Path:
    """Conv, then a Loop that adds the conv output to an accumulator `trips` times."""
    rng = np.random.default_rng(3)
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
         helper.make_node("Add", ["acc_in", "c"], ["acc_out"], name="accumulate")],
        "body",
        [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Loop", ["trips", "true", "c"], ["y"], name="repeat", body=body),
    ]
    graph = helper.make_graph(
        nodes, "loop_model", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [_w(rng, "w", 4, 3, 3, 3), numpy_helper.from_array(np.array(trips, np.int64), "trips"),
         numpy_helper.from_array(np.array(True), "true")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=IR), path)
