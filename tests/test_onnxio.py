"""ONNX loading errors, specs, quantization detection and the reference runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit import onnxio
from edgekit.errors import BadInputError


def tiny_model(dynamic: bool = False, qdq: bool = False) -> onnx.ModelProto:
    """x[N,4] @ W[4,3] + b -> Relu; optionally with a DequantizeLinear weight (QDQ)."""
    rng = np.random.default_rng(0)
    batch = "N" if dynamic else 2
    nodes, inits = [], [numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")]
    if qdq:
        inits += [numpy_helper.from_array(rng.integers(-5, 5, (4, 3)).astype(np.int8), "Wq"),
                  numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                  numpy_helper.from_array(np.array(0, np.int8), "z")]
        nodes.append(helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["W"]))
    else:
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W"))
    nodes += [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y0"]),
              helper.make_node("Relu", ["y0"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_load_errors_are_one_line_bad_input(tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    onnx.save(tiny_model(), str(good))
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "text.onnx").write_text("this is not a model, just text\n" * 20)
    (tmp_path / "cut.onnx").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases = {"missing.onnx": "no such file", "empty.onnx": "empty", "text.onnx": "not", "cut.onnx": "not"}
    for name, words in cases.items():
        with pytest.raises(BadInputError) as info:
            onnxio.load_onnx(tmp_path / name)
        assert words in info.value.message and info.value.path == str(tmp_path / name)
        assert "\n" not in info.value.one_line()
    with pytest.raises(BadInputError, match="directory"):
        onnxio.load_onnx(tmp_path)
    assert onnxio.load_onnx(good).graph.name == "tiny"


def test_specs_skip_initializers_and_name_dynamic_dims() -> None:
    model = tiny_model(dynamic=True)
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 3]))  # old-style weight input
    specs = onnxio.input_specs(model)
    assert [(s.name, s.shape) for s in specs] == [("x", ("N", 4))]
    assert onnxio.output_specs(model)[0].shape == ("N", 3)
    assert onnxio.opset_version(model) == 17
    assert onnxio.op_histogram(model) == {"Add": 1, "MatMul": 1, "Relu": 1}


def test_quantization_detection() -> None:
    assert not onnxio.quantization_info(tiny_model()).quantized
    info = onnxio.quantization_info(tiny_model(qdq=True))
    assert info.quantized and info.format == "QDQ" and info.ops == {"DequantizeLinear": 1}


def test_random_inputs_are_seeded_and_reference_runs() -> None:
    specs = onnxio.input_specs(tiny_model(dynamic=True))
    a = onnxio.random_inputs(specs, seed=3, dims={"N": 5})
    b = onnxio.random_inputs(specs, seed=3, dims={"N": 5})
    assert a["x"].shape == (5, 4) and np.array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], onnxio.random_inputs(specs, seed=4, dims={"N": 5})["x"])
    model = tiny_model(dynamic=True)
    out = onnxio.run_reference(model.SerializeToString(), a, threads=1)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    expected = np.maximum(a["x"] @ weights["W"] + weights["b"], 0)
    np.testing.assert_allclose(out["y"], expected, rtol=1e-5, atol=1e-6)


def image_model(path: Path | None = None) -> onnx.ModelProto:
    """x[N,3,H,W] -> Relu: dynamic batch and spatial dims, like a detector exported without sizes."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "img",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "height", "width"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "height", "width"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if path is not None:
        onnx.save(model, str(path))
    return model


def test_fix_input_dims_sets_sizes_and_reinfers_outputs() -> None:
    from edgekit.specs import parse_input_shape

    fixed = onnxio.fix_input_dims(image_model(), [parse_input_shape("x:1,3,320,320")])
    assert onnxio.input_specs(fixed)[0].shape == (1, 3, 320, 320)
    assert onnxio.output_specs(fixed)[0].shape == (1, 3, 320, 320)  # inferred again, not the stale symbols
    partial = onnxio.fix_input_dims(image_model(), [parse_input_shape("x:N,3,64,64")])
    assert onnxio.input_specs(partial)[0].shape == ("N", 3, 64, 64)  # a dim given as a name stays dynamic
    assert onnxio.input_specs(image_model())[0].shape == ("N", 3, "height", "width")  # the input is not mutated


@pytest.mark.parametrize("text, match", [
    ("y:1,3,8,8", r"recipe.toml: model.inputs: the model has no input 'y' \(its inputs: x:N,3,height,width"),
    ("x:1,3,8", "input 'x' has rank 4, got 3 dims"),
    ("x:1,4,8,8", "input 'x' dim 1 is fixed at 3 in the model, cannot set 4"),
    ("x:1,3,100000,100000", r"input 'x' at x:1,3,100000,100000:float32 would be 111.8 GiB"),
    ("x:1,3,99999999,1", "dim 2 is 99999999"),
])
def test_fix_input_dims_refuses_bad_sizes_naming_input_and_key(text: str, match: str) -> None:
    from edgekit.specs import parse_input_shape

    with pytest.raises(BadInputError, match=match) as info:
        onnxio.fix_input_dims(image_model(), [parse_input_shape(text)], argument="recipe.toml: model.inputs")
    assert info.value.exit_code == 2 and "model.inputs" in str(info.value)


def test_fix_input_dims_file_writes_a_static_copy(tmp_path: Path) -> None:
    from edgekit.specs import parse_input_shape

    src = tmp_path / "dyn.onnx"
    image_model(src)
    out = onnxio.fix_input_dims_file(src, [parse_input_shape("x:2,3,16,16")], tmp_path / "fixed.onnx")
    assert onnxio.input_specs(onnxio.load_onnx(out))[0].shape == (2, 3, 16, 16)
    assert onnxio.input_specs(onnxio.load_onnx(src))[0].shape == ("N", 3, "height", "width")


def test_require_static_names_every_unsized_dim_and_the_flag() -> None:
    spec = onnxio.input_specs(image_model())[0]
    onnxio.require_static([onnxio.resolve_dims(spec, {"N": 1, "height": 8, "width": 8})])  # all sized: fine
    with pytest.raises(BadInputError) as info:
        onnxio.require_static([onnxio.resolve_dims(spec, {"N": 1})], argument="--input-shape")
    text = str(info.value)
    assert info.value.exit_code == 2
    assert "input 'x' dim 2 ('height'); input 'x' dim 3 ('width') have no size" in text
    assert "--input-shape x:1,3,<height>,<width>" in text


def test_strict_random_inputs_never_fill_an_unsized_dim_with_1() -> None:
    specs = onnxio.input_specs(image_model())
    with pytest.raises(BadInputError, match="dim 2 \\('height'\\)"):
        onnxio.random_inputs(specs, dims={"N": 1}, strict=True)
    feeds = onnxio.random_inputs(specs, dims={"N": 1, "height": 4, "width": 6}, strict=True)
    assert feeds["x"].shape == (1, 3, 4, 6)
