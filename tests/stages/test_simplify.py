"""simplify(): shape fixing, onnxsim with onnxslim fallback, verification, manifest history, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.artifact import Manifest, manifest_path_for, sha256_file
from edgekit.errors import BadInputError, CheckFailedError, UnsupportedError
from edgekit.stages import simplify as simplify_mod
from edgekit.stages.simplify import simplify


def foldable_model(path: Path) -> Path:
    """x[N,4] -> Mul(x, Add(2, 3)) -> Reshape(x, Shape(x)) -> Relu: constants to fold, a shape chain to remove."""
    nodes = [
        helper.make_node("Add", ["two", "three"], ["five"]),
        helper.make_node("Mul", ["x", "five"], ["m"]),
        helper.make_node("Shape", ["m"], ["shape"]),
        helper.make_node("Reshape", ["m", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(3.0, np.float32), "three")]
    graph = helper.make_graph(nodes, "foldable", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_simplifies_fixes_shapes_and_verifies(tmp_path: Path) -> None:
    src = foldable_model(tmp_path / "in.onnx")
    result = simplify(src, tmp_path / "out.onnx", input_shapes=["x:3,4"])
    assert result.tool == "onnxsim" and result.fallback_reason is None
    assert result.before.node_count == 5 and result.after.node_count < 5
    assert result.before.op_histogram["Add"] == 1 and "Add" not in result.after.op_histogram
    assert result.after.inputs[0].shape == (3, 4) and result.fixed_shapes == {"x": [3, 4]}
    assert result.comparison is not None and result.comparison.passed
    manifest = Manifest.read(manifest_path_for(result.path))
    rec = manifest.history[-1]
    assert rec.stage == "simplify" and rec.metrics["tool"] == "onnxsim"
    assert rec.inputs == {"in.onnx": sha256_file(src)} and rec.outputs == {"out.onnx": sha256_file(result.path)}
    assert rec.metrics["nodes_before"] == 5 and "onnxsim" in rec.tool_versions


def test_falls_back_to_onnxslim_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: onnx.ModelProto) -> onnx.ModelProto:
        raise RuntimeError("No Op registered for FancyOp\nmore detail")

    monkeypatch.setattr(simplify_mod, "_run_onnxsim", broken)
    result = simplify(foldable_model(tmp_path / "in.onnx"), tmp_path / "out.onnx", input_shapes=["x:2,4"])
    assert result.tool == "onnxslim"
    assert result.fallback_reason == "onnxsim failed: No Op registered for FancyOp"
    assert result.comparison is not None and result.comparison.passed
    assert result.artifact.manifest.history[-1].metrics["fallback_reason"] == result.fallback_reason


def test_carries_export_history(zoo_onnx, tmp_path: Path) -> None:
    src = zoo_onnx("lenet5", dynamic_batch=True)
    result = simplify(src, tmp_path / "s.onnx", input_shapes=["input:2,1,32,32"])
    assert [r.stage for r in result.artifact.manifest.history] == ["export", "simplify"]
    assert result.artifact.manifest.info["zoo"] == "lenet5"
    assert result.after.inputs[0].shape == (2, 1, 32, 32)


def test_wrong_result_fails_check_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def corrupt(model: onnx.ModelProto) -> onnx.ModelProto:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        out.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(4.0, np.float32), "three"))
        return out

    monkeypatch.setattr(simplify_mod, "_run_onnxsim", corrupt)
    with pytest.raises(CheckFailedError, match="'y'") as info:
        simplify(foldable_model(tmp_path / "in.onnx"), tmp_path / "out.onnx", input_shapes=["x:2,4"])
    assert info.value.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"]


@pytest.mark.parametrize(("shape", "words"), [
    ("x:2,4,1", "rank"), ("z:2,4", "no input 'z'"), ("x:2;4", "bad dim"),
])
def test_bad_shapes(tmp_path: Path, shape: str, words: str) -> None:
    with pytest.raises(BadInputError, match=words):
        simplify(foldable_model(tmp_path / "in.onnx"), tmp_path / "out.onnx", input_shapes=[shape])


def test_fixed_dim_cannot_change(zoo_onnx, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="fixed at 32"):
        simplify(zoo_onnx("lenet5"), tmp_path / "o.onnx", input_shapes=["input:1,1,64,64"])


def test_bad_files_and_options(tmp_path: Path) -> None:
    src = foldable_model(tmp_path / "in.onnx")
    (tmp_path / "text.onnx").write_text("hello")
    (tmp_path / "cut.onnx").write_bytes(src.read_bytes()[:40])
    for bad in ("missing.onnx", "text.onnx", "cut.onnx"):
        with pytest.raises(BadInputError):
            simplify(tmp_path / bad, tmp_path / "o.onnx")
    with pytest.raises(BadInputError, match="overwrite"):
        simplify(src, src)
    with pytest.raises(BadInputError, match="tool"):
        simplify(src, tmp_path / "o.onnx", tool="magic")
    assert not (tmp_path / "o.onnx").exists()


def ir3_model(path: Path) -> Path:
    """An IR-3 model (the old style: its weight is also a graph input), as old exporters wrote them.

    onnxslim drops `w` from the graph inputs but keeps IR 3, where initializers must be inputs:
    its output fails the ONNX checker although the input model is valid.
    """
    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32) * 0.1, "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input1", "w"], ["y"], pads=[1, 1, 1, 1])], "old",
        [helper.make_tensor_value_info("input1", TensorProto.FLOAT, ["n", 1, "h", "w"]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "h", "w"])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _no_scratch_named(message: str, folder: Path) -> None:
    assert ".tmp" not in message and "tmp" not in message.replace(str(folder), "")


def test_a_simplifier_writing_an_invalid_model_is_its_fault_not_bad_input(tmp_path: Path) -> None:
    src = ir3_model(tmp_path / "common_old.onnx")
    with pytest.raises(UnsupportedError) as info:
        simplify(src, tmp_path / "out.onnx", input_shapes=["input1:1,1,64,256"], tool="onnxslim")
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "onnxslim produced an invalid model" in message and "initializer but not in graph input" in message
    _no_scratch_named(message, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["common_old.onnx"]


def test_auto_falls_back_when_onnxsim_writes_an_invalid_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def dangling(model: onnx.ModelProto) -> onnx.ModelProto:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        out.graph.node[0].input[0] = "nowhere"  # a value no node or input produces
        return out

    monkeypatch.setattr(simplify_mod, "_run_onnxsim", dangling)
    result = simplify(foldable_model(tmp_path / "in.onnx"), tmp_path / "out.onnx", input_shapes=["x:2,4"])
    assert result.tool == "onnxslim"
    assert result.fallback_reason is not None and result.fallback_reason.startswith("onnxsim produced an invalid model")
    assert result.comparison is not None and result.comparison.passed


def test_every_simplifier_failing_names_each_tool_and_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: onnx.ModelProto) -> onnx.ModelProto:
        raise RuntimeError("[ShapeInferenceError] Inferred shape and existing shape differ in rank\ntrace")

    monkeypatch.setattr(simplify_mod, "_run_onnxsim", broken)
    src = ir3_model(tmp_path / "common_old.onnx")
    with pytest.raises(UnsupportedError) as info:
        simplify(src, tmp_path / "out.onnx", input_shapes=["input1:1,1,64,256"])
    message = str(info.value)
    assert info.value.exit_code == 3
    assert "onnxsim failed: [ShapeInferenceError]" in message and "onnxslim produced an invalid model" in message
    _no_scratch_named(message, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["common_old.onnx"]
