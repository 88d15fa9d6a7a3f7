"""Tiny recipes for pipeline tests: an ONNX classifier built in code and a labelled .npz eval set.

No torch, no export: a full run (compile → accuracy → bench → checks → report) takes about a second.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_classifier(path: Path, *, features: int = 16, classes: int = 4, seed: int = 0) -> Path:
    """input [1, features] -> Gemm -> Relu -> Gemm -> logits [1, classes] (opset 17)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((features, 32)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((32, classes)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1"], ["h"], name="fc1"),
            helper.make_node("Relu", ["h"], ["hr"], name="relu"),
            helper.make_node("Gemm", ["hr", "w2"], ["logits"], name="fc2"),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def labelled_eval(path: Path, model: Path, *, samples: int = 24, seed: int = 1) -> Path:
    """One .npz with `input` (N, features) and `labels` = the FP32 model's argmax (so FP32 accuracy is 1.0)."""
    from edgekit.onnxio import run_reference

    rng = np.random.default_rng(seed)
    features = onnx.load(str(model)).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    x = rng.standard_normal((samples, features)).astype(np.float32)
    labels = np.array([int(np.argmax(run_reference(model, {"input": x[i:i + 1]})["logits"])) for i in range(samples)])
    np.savez(path, input=x, labels=labels)
    return path


def write_recipe(folder: Path, body: str = "", *, latency: str = "p90<=1000ms", max_drop: float | None = 5.0,
                 precision: str = "fp32", extra_targets: str = "", name: str = "tiny") -> Path:
    """A recipe next to tiny.onnx and eval.npz in `folder` (built once)."""
    model = folder / "tiny.onnx"
    if not model.exists():
        tiny_classifier(model)
        labelled_eval(folder / "eval.npz", model)
    budgets = f'latency = ["{latency}"]\n' if latency else ""
    accuracy = f"[budgets.accuracy]\nmax_drop = {max_drop}\n" if max_drop is not None else ""
    text = textwrap.dedent(f"""\
        name = "{name}"
        simplify = false

        [model]
        onnx = "tiny.onnx"

        [data]
        eval = "eval.npz"
        calibration = "eval.npz"

        [[targets]]
        name = "cpu"
        backend = "onnxruntime"
        precision = "{precision}"
        """) + extra_targets + textwrap.dedent("""
        [bench]
        warmup = 2
        iterations = 10

        [budgets]
        """) + budgets + accuracy + body
    path = folder / "recipe.toml"
    path.write_text(text)
    return path
