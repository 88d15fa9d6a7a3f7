"""Budgets in metric terms through recipes, precision auto and gate: `accuracy = "dice drop<=5"`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.pipeline import Pipeline
from tests._pipeline_helpers import write_recipe


def _tiny_segmenter(folder: Path, *, labels: bool) -> None:
    """input [1,1,8,8] -> 1x1 Conv -> logits [1,2,8,8]: class 1 where the pixel is positive."""
    w = np.array([[[[-1.0]]], [[[1.0]]]], np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"], name="conv")], "seg",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "tiny.onnx"))
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    extra = {"labels": (x[:, 0] > 0).astype(np.int64)} if labels else {}
    np.savez(folder / "eval.npz", input=x, **extra)


@pytest.mark.parametrize("labels", [True, False])
def test_recipe_dice_budget_is_accuracy_with_labels_and_agreement_without(tmp_path: Path, labels: bool) -> None:
    from edgekit.pipeline import gate

    _tiny_segmenter(tmp_path, labels=labels)
    recipe = write_recipe(tmp_path, 'accuracy = "dice drop<=5"\n', max_drop=None, precision="int8")
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    [cpu] = result.targets
    assert cpu.status == "passed", cpu.reason
    metric = cpu.accuracy["metric"]
    assert metric["name"] == "dice" and metric["unit"] == "%" and metric["mode"] == ("accuracy" if labels
                                                                                     else "agreement")
    assert metric["fp32"] == pytest.approx(1.0) and 0.9 < metric["value"] <= 1.0 and metric["drop"] <= 5
    [verdict] = [v for v in cpu.verdicts if v.kind == "accuracy"]
    assert verdict.name == "dice drop<=5.0" and verdict.status == "pass" and metric["mode"] in verdict.note
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    assert manifest["info"]["budgets"]["accuracy"] == {"max_drop": 5.0, "metric": "dice"}
    gated = gate(tmp_path / "out" / "cpu")
    [drop] = [v for v in gated.verdicts if v.kind == "accuracy"]
    assert drop.status == "pass" and drop.measured == pytest.approx(metric["drop"])


def test_compile_auto_takes_a_metric_budget(tmp_path: Path) -> None:
    from edgekit.pipeline.auto import compile_auto

    _tiny_segmenter(tmp_path, labels=False)
    result = compile_auto(tmp_path / "tiny.onnx", output=tmp_path / "bundle", target="cpu", backend="onnxruntime",
                          accuracy_budget="miou drop<=50", calib=tmp_path / "eval.npz", eval=tmp_path / "eval.npz",
                          metric_options=["activation=none"])
    int8 = [c for c in result.candidates if c.precision == "int8"]
    assert int8 and int8[0].metric["name"] == "miou" and int8[0].metric["mode"] == "agreement"
    stored = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["info"]["budgets"]["accuracy"]
    assert stored == {"max_drop": 50.0, "metric": "miou", "metric_options": ["activation=none"]}


def test_recipe_refuses_an_unknown_metric(tmp_path: Path) -> None:
    from edgekit.errors import BadInputError

    _tiny_segmenter(tmp_path, labels=True)
    recipe = write_recipe(tmp_path, 'accuracy = "bleu drop<=5"\n', max_drop=None)
    with pytest.raises(BadInputError, match="unknown metric 'bleu'"):
        Pipeline.from_recipe(recipe)


def test_a_dead_int8_candidate_fails_the_target(tmp_path: Path) -> None:
    """Naive INT8 of the outlier model outputs zeros: the recipe run fails (exit 1) with the reason."""
    from tests._quant_helpers import outlier_model, random_samples

    outlier_model(tmp_path / "tiny.onnx")
    x = np.concatenate([s["x"] for s in random_samples((1, 4, 8, 8), 16, seed=1)])
    np.savez(tmp_path / "eval.npz", x=x)
    recipe = write_recipe(tmp_path, max_drop=None, precision="int8")
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    [cpu] = result.targets
    assert cpu.status == "failed" and result.exit_code == 1
    assert "no longer works" in cpu.reason and "all zeros" in cpu.reason


def test_compile_auto_normalizes_image_folders_with_mean_std(tmp_path: Path) -> None:
    """`compile -p auto --mean/--std` means what it means in quantize: the images are normalized with it."""
    from PIL import Image

    from edgekit.pipeline.auto import compile_auto
    from tests._quant_helpers import small_conv_model

    model = small_conv_model(tmp_path / "m.onnx", opset=13, shape=(1, 3, 8, 8))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")

    def int8_sqnr(**kw) -> float:
        result = compile_auto(model, output=tmp_path / f"b{len(kw)}", target="cpu", backend="onnxruntime",
                              accuracy_budget="sqnr>=0dB", calib=folder, eval=folder, cache_dir=tmp_path / "c", **kw)
        return next(c.sqnr_db for c in result.candidates if c.precision == "int8")

    assert int8_sqnr() != int8_sqnr(mean=(127.5, 127.5, 127.5), std=(64.0, 64.0, 64.0))
