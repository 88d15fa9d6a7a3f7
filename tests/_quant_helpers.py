"""Tiny ONNX models and sample folders for the quantize tests (built in code, nothing checked in)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTLIER_NODES = ("conv_outlier", "conv_mix")


def outlier_model(path: Path, *, opset: int = 13) -> Path:
    """A classifier whose first conv output has one channel 1000x larger than the others.

    Per-tensor activation quantization of that tensor wipes out the small channels that the next conv
    reads, so naive INT8 destroys the logits; keeping `conv_outlier` and `conv_mix` in float fixes it.
    """
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.3
    w1[0] *= 1000.0  # the outlier channel
    w2 = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    w2[:, 0] = 1e-5  # ... which the next conv nearly ignores
    w3 = rng.standard_normal((10, 8)).astype(np.float32)
    b3 = np.zeros(10, np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y1"], name="conv_outlier", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["y1", "w2"], ["y2"], name="conv_mix"),
        helper.make_node("Relu", ["y2"], ["y3"], name="relu"),
        helper.make_node("GlobalAveragePool", ["y3"], ["y4"], name="gap"),
        helper.make_node("Flatten", ["y4"], ["y5"], name="flatten"),
        helper.make_node("Gemm", ["y5", "w3", "b3"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(w3, "w3"),
         numpy_helper.from_array(b3, "b3")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def small_conv_model(path: Path, *, opset: int = 12, shape: tuple[int, ...] = (1, 3, 8, 8)) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, at an old opset (tests the opset upgrade)."""
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((4, shape[1], 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((5, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w2"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 5])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return path


def write_npz(folder: Path, arrays: list[dict[str, np.ndarray]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(arrays):
        np.savez(folder / f"{i:04d}.npz", **sample)
    return folder


def random_samples(shape: tuple[int, ...], n: int, *, seed: int = 0, name: str = "x") -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def labelled_by_reference(model_path: Path, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Attach `labels` = FP32 argmax, so FP32 task accuracy is 100% and any INT8 flip costs points."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    out = []
    for sample in samples:
        logits = session.run(None, sample)[0]
        out.append({**sample, "labels": np.argmax(logits, axis=-1).astype(np.int64)})
    return out


class FixedOutputSession:
    """An ORT-session stand-in whose one output `y` is always `out` (to test the judging, not the runtime)."""

    def __init__(self, out: np.ndarray):
        self.out = out

    def get_outputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name="y")]

    def run(self, names: object, sample: object) -> list[np.ndarray]:
        return [self.out]


def outlier_assets(root: Path) -> dict[str, Path]:
    """The outlier model with 24 calibration samples and 48 eval samples labelled by its own FP32 argmax."""
    model = outlier_model(root / "outlier.onnx")
    calib = write_npz(root / "calib", random_samples((1, 4, 8, 8), 24, seed=0))
    evaluation = write_npz(root / "eval", labelled_by_reference(model, random_samples((1, 4, 8, 8), 48, seed=1)))
    return {"model": model, "calib": calib, "eval": evaluation, "root": root}


def digits_assets(root: Path) -> dict[str, Path]:
    """Train LeNet-5 on sklearn digits (seconds, cached per process), export ONNX, write calib/eval folders."""
    from edgekit.zoo import digits

    model = digits.trained_lenet5()
    onnx_path = digits.export_onnx(model, root / "lenet5_digits.onnx")
    calib, evaluation = digits.write_calibration_and_eval(root, calib_samples=100)
    return {"model": onnx_path, "calib": calib, "eval": evaluation}


def unet_like_model(path: Path, *, opset: int = 13) -> Path:
    """A two-level U-Net in miniature: Conv->Relu encoder, MaxPool, ConvTranspose and Resize decoders,
    a Concat skip connection and a Conv head writing the graph output.

    The shapes that make ORT's QDQ writer rename tensors: each Relu is folded into its Conv (the Conv then
    writes the Relu's output name), the head's output is a graph output (its producer is renamed).
    """
    rng = np.random.default_rng(3)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.4).astype(np.float32)

    inits = {"w1": w(4, 2, 3, 3), "w2": w(8, 4, 3, 3), "wt": w(8, 4, 2, 2), "w3": w(4, 8, 1, 1),
             "w4": w(4, 12, 3, 3), "w5": w(1, 4, 1, 1), "scales": np.array([1, 1, 2, 2], np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="enc1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="enc1_relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="enc2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="enc2_relu"),
        helper.make_node("ConvTranspose", ["r2", "wt"], ["u1"], name="up_t", strides=[2, 2]),
        helper.make_node("Resize", ["r2", "", "scales"], ["rs"], name="up_resize", mode="nearest"),
        helper.make_node("Conv", ["rs", "w3"], ["u2"], name="up_conv"),
        helper.make_node("Concat", ["u1", "u2", "r1"], ["cat"], name="skip", axis=1),
        helper.make_node("Conv", ["cat", "w4"], ["c4"], name="dec", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c4"], ["r4"], name="dec_relu"),
        helper.make_node("Conv", ["r4", "w5"], ["mask"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "unet_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 16, 16])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 16, 16])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
