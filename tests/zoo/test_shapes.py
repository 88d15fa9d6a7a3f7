"""The trained shape segmenter and detector: FP32 vs INT8 task metrics, with labels and as agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.specs import Preprocess
from edgekit.zoo import shapes


def test_shapes_are_deterministic_and_consistent() -> None:
    images, masks, boxes = shapes.make_shapes(8, seed=3)
    again, _, _ = shapes.make_shapes(8, seed=3)
    assert np.array_equal(images, again) and images.shape == (8, 1, 64, 64) and 0 <= images.min() <= images.max() <= 1
    for mask, rows in zip(masks, boxes, strict=True):
        assert rows.shape[1] == 5 and set(np.unique(mask)) <= {0, 1, 2}
        for klass, x1, y1, x2, y2 in rows:
            assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64 and klass in (0, 1)


def test_zoo_lists_both_trained_models() -> None:
    from edgekit import zoo

    names = {e.name: e for e in zoo.list_models()}
    assert names["unet-shapes"].task == "segmentation" and names["yolo-shapes"].task == "detection"


@pytest.mark.slow
def test_trained_models_keep_their_task_metric_in_int8(tmp_path: Path) -> None:
    """~90 s on 2 cores: trains both models, then quantizes each with labels and as agreement."""
    pytest.importorskip("pycocotools")
    from edgekit.stages.quantize import quantize

    seg = shapes.export_onnx(shapes.trained_segmenter(), tmp_path / "seg.onnx", "logits")
    det = shapes.export_onnx(shapes.trained_detector(), tmp_path / "det.onnx", "detections")
    data = shapes.write_eval_sets(tmp_path / "data")
    pixels = Preprocess(std=(255.0,), grayscale=True)  # PNGs are 0..255, the models take 0..1
    dice = quantize(seg, tmp_path / "s.onnx", data["calib"], eval=data["seg"], metric="dice", preprocess=pixels,
                    sensitivity=False, speed=False).report.metric
    assert dice.mode == "accuracy" and dice.reference > 0.85 and dice.drop < 2.0
    mAP = quantize(det, tmp_path / "d.onnx", data["calib"], eval=data["det"], metric="map50", preprocess=pixels,
                   sensitivity=False, speed=False).report.metric
    assert mAP.mode == "accuracy" and mAP.reference > 0.85 and mAP.drop < 10.0
    agree = quantize(det, tmp_path / "d2.onnx", data["calib"], eval=data["eval"], metric="map50",
                     sensitivity=False, speed=False).report.metric
    assert agree.mode == "agreement" and agree.reference == 1.0 and agree.value > 0.9
    # a budget in metric terms drives the accuracy-aware search: the output Concat (pixels + scores) stays float
    budget = quantize(det, tmp_path / "d3.onnx", data["calib"], eval=data["det"], max_drop=1.0, metric="map50",
                      preprocess=pixels, speed=False)
    assert budget.report.metric.drop <= 1.0 and any("Concat" in n for n in budget.excluded)
