"""The symptoms of issue 14: dead INT8 models, eval sets without signal, n/a sensitivity, image preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.checks.numerics import compare_outputs
from edgekit.errors import BadInputError, CheckFailedError
from edgekit.stages._quant_eval import EvalSet, SpillList, evaluate, rank_nodes
from edgekit.stages.quantize import quantize
from tests._quant_helpers import FixedOutputSession, random_samples, small_conv_model, write_npz


def _quiet_model(path: Path, scale: float = 1e-6) -> Path:
    """Conv -> Sigmoid -> x scale: a 'text map' whose output barely moves (max |y| ~ 1e-6) on any input."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Mul", ["s", "k"], ["y"], name="scale")]
    graph = helper.make_graph(nodes, "quiet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32([scale]), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_no_signal_eval_set_is_reported_and_not_searched_on(tmp_path):
    model = _quiet_model(tmp_path / "quiet.onnx")
    calib = write_npz(tmp_path / "calib", random_samples((1, 3, 8, 8), 12, seed=0))
    evaluation = write_npz(tmp_path / "eval", random_samples((1, 3, 8, 8), 6, seed=1))
    with pytest.raises(BadInputError, match="~constant on the eval set; the metric cannot judge it") as info:
        quantize(model, tmp_path / "q.onnx", calib, eval=evaluation, min_sqnr=20.0, speed=False)
    assert info.value.exit_code == 2 and "cannot be searched on" in str(info.value)
    assert not (tmp_path / "q.onnx").exists()
    result = quantize(model, tmp_path / "q.onnx", calib, eval=evaluation, speed=False)
    assert any("give data where it responds, or a task metric" in w for w in result.warnings)
    assert result.report.min_sqnr_db is None and result.report.outputs[0].note.startswith("FP32 output is ~constant")
    assert not result.sensitivity and any("sensitivity: n/a" in n for n in result.notes)


def test_sensitivity_that_cannot_be_computed_is_na_never_minus_infinity():
    ref = np.zeros((1, 4), np.float32)  # FP32 output with no signal at all
    evalset = EvalSet([{"x": np.zeros((1, 4), np.float32)}], None, "fake", True, [{"y": ref}])
    ranked = rank_nodes([("a", "Conv"), ("b", "Conv")], str.encode,
                        lambda data: FixedOutputSession(ref + (0.5 if data == b"a" else 0.0)), evalset)
    for node in ranked:
        assert node.sqnr_db is None and node.cosine is None
        assert node.note.startswith("n/a (") and "no signal" in node.note


def test_dead_outputs_are_named_with_their_reason():
    ref = {"y": np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)}
    for got, words in ((np.zeros((1, 16), np.float32), "all zeros"), (np.full((1, 16), 0.3, np.float32), "constant"),
                       (np.full((1, 16), np.nan, np.float32), "NaN/inf")):
        with np.errstate(invalid="ignore"):
            comparison = compare_outputs(ref, {"y": got}, atol=float("inf"), rtol=0.0)
        assert comparison.dead and words in comparison.dead[0]
    rng = np.random.default_rng(0)
    uncorrelated = compare_outputs(ref, {"y": rng.permutation(ref["y"][0])[None] * 0 + rng.standard_normal((1, 16))},
                                   atol=float("inf"), rtol=0.0)
    assert not uncorrelated.dead or "cosine" in uncorrelated.dead[0]
    fine = compare_outputs(ref, {"y": ref["y"] + 0.01}, atol=float("inf"), rtol=0.0)
    assert not fine.dead


def test_compile_judge_rejects_a_dead_int8_model_whatever_the_thresholds():
    from edgekit.stages.compile import Thresholds, judge

    ref = {"y": np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)}
    comparison = compare_outputs(ref, {"y": np.zeros((1, 16), np.float32)}, atol=float("inf"), rtol=0.0)
    ok, why = judge(comparison, "int8", Thresholds(int8_cosine=0.0, int8_sqnr_db=-1000.0))
    assert not ok and "no longer works" in why and "all zeros" in why


def test_evaluation_streams_and_spills_past_its_memory_cap(tmp_path):
    spill = SpillList(tmp_path / "spill", budget=1000)
    for i in range(5):
        spill.append({"y": np.full((1, 100), i, np.float32)})  # 400 bytes each: 2 in memory, 3 on disk
    assert len(list((tmp_path / "spill").glob("*.npz"))) == 3
    assert [float(s["y"][0, 0]) for s in spill] == [0.0, 1.0, 2.0, 3.0, 4.0]
    ref = [{"y": np.arange(4, dtype=np.float32)[None] + i} for i in range(3)]
    evalset = EvalSet(SpillList(tmp_path / "in", 0, [{"x": np.zeros((1, 4), np.float32)}] * 3), None, "e", False,
                      SpillList(tmp_path / "ref", 0, ref))
    report = evaluate(evalset, FixedOutputSession(np.zeros((1, 4), np.float32)))
    assert report.samples == 3 and report.dead and "all zeros" in report.dead[0]


def test_compile_uses_mean_std_for_image_folder_calibration(tmp_path):
    """--mean/--std mean the same in compile as in quantize: the calibration images are normalized with them."""
    from PIL import Image

    from edgekit.stages.compile import compile as compile_model

    model = small_conv_model(tmp_path / "m.onnx", opset=13, shape=(1, 3, 8, 8))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    plain = compile_model(model, output=tmp_path / "plain", precision="int8", calib=str(folder), target="cpu",
                          backend="onnxruntime")
    normalized = compile_model(model, output=tmp_path / "norm", precision="int8", calib=str(folder), target="cpu",
                               backend="onnxruntime", mean=(127.5, 127.5, 127.5), std=(64.0, 64.0, 64.0))
    assert plain.verification["min_cosine"] != normalized.verification["min_cosine"]
    assert "127.5" not in str(plain.bundle.manifest.info.get("calibration"))


def test_quantize_dead_model_error_carries_the_result(tmp_path):
    from tests._quant_helpers import OUTLIER_NODES, labelled_by_reference, outlier_model

    model = outlier_model(tmp_path / "o.onnx")
    calib = write_npz(tmp_path / "calib", random_samples((1, 4, 8, 8), 16, seed=0))
    evaluation = write_npz(tmp_path / "eval", labelled_by_reference(model, random_samples((1, 4, 8, 8), 16, seed=1)))
    with pytest.raises(CheckFailedError, match="no longer works") as info:
        quantize(model, tmp_path / "q.onnx", calib, eval=evaluation, sensitivity=False)
    assert info.value.exit_code == 1 and info.value.result.report.dead
    assert info.value.result.speed is None  # judged before any speed verdict
    assert not (tmp_path / "q.onnx").exists()
    ok = quantize(model, tmp_path / "q.onnx", calib, eval=evaluation, sensitivity=False, speed=False,
                  exclude=OUTLIER_NODES)
    assert not ok.report.dead


def test_failed_symbolic_shape_inference_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """ORT saves `sym_shape_infer_temp.onnx` into the current directory when it gives up; quantize runs it
    in its work folder, so the user's directory stays clean."""
    import onnxruntime.tools.symbolic_shape_infer as ssi

    def give_up(model, *args, **kwargs):
        onnx.save_model(model, "sym_shape_infer_temp.onnx")
        raise Exception("Incomplete symbolic shape inference")

    monkeypatch.setattr(ssi.SymbolicShapeInference, "infer_shapes", staticmethod(give_up))
    cwd = tmp_path / "user"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    model = small_conv_model(tmp_path / "m.onnx", opset=13, shape=(1, 3, 8, 8))
    calib = write_npz(tmp_path / "calib", random_samples((1, 3, 8, 8), 8))
    result = quantize(model, tmp_path / "q.onnx", calib, sensitivity=False, speed=False)
    assert any("symbolic shape inference failed" in n for n in result.notes)
    assert list(cwd.iterdir()) == []
