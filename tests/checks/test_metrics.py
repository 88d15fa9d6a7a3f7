"""The metric registry: names, streaming accumulators, decoders, accuracy vs agreement."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.checks.metrics import (
    METRICS,
    MetricOptions,
    MetricTracker,
    get_metric,
    nms,
    parse_metric_options,
)
from edgekit.checks.verify import AccuracyAccumulator
from edgekit.errors import BadInputError


def test_every_metric_has_name_direction_unit():
    for name, (_, info, _) in METRICS.items():
        assert info.name == name and info.direction == "higher" and info.unit == "%" and info.title
        assert get_metric(name).name == name
    assert get_metric("mAP@0.5").name == "map50" and get_metric("IoU").name == "miou"
    with pytest.raises(BadInputError, match=r"unknown metric 'bleu'.*known: top1"):
        get_metric("bleu")


def test_topk_accuracy_and_agreement():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]])
    tracker = MetricTracker(get_metric("top1"), labelled=True)
    tracker.add({"y": logits}, {"y": np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.3]])}, np.array([1, 0]))
    fig = tracker.figure()
    assert fig.mode == "accuracy" and fig.reference == 1.0 and fig.value == 0.0 and fig.drop == 100.0
    top5 = MetricTracker(get_metric("top5"), labelled=False)
    top5.add({"y": logits}, {"y": logits * 2}, None)
    assert top5.figure().mode == "agreement" and top5.figure().value == 1.0


def test_dice_and_miou_with_threshold_and_argmax():
    target = np.zeros((1, 4, 4), np.int64)
    target[0, :2, :2] = 1
    prob = np.zeros((1, 1, 4, 4))
    prob[0, 0, :2, :1] = 0.9  # half of the object found
    dice = MetricTracker(get_metric("dice"), labelled=True)
    dice.add({"m": (target[:, None] * 1.0)}, {"m": prob}, target)
    assert dice.figure().value == pytest.approx(2 * 2 / (2 + 4))
    logits = np.stack([1 - target, target], axis=1).astype(np.float64)  # 2 classes: argmax
    miou = MetricTracker(get_metric("miou"), labelled=False)
    miou.add({"m": logits}, {"m": logits}, None)
    assert miou.figure().value == 1.0 and miou.figure().mode == "agreement"
    with pytest.raises(BadInputError, match="class mask of 4x4"):
        MetricTracker(get_metric("dice"), labelled=True).add({"m": prob}, {"m": prob}, np.zeros((3, 3)))


def _yolo_rows(boxes: list[tuple[float, float, float, float, float, int]], classes: int = 3) -> np.ndarray:
    rows = np.zeros((1, 50, 5 + classes), np.float32)
    for i, (x, y, w, h, score, c) in enumerate(boxes):
        rows[0, i, :5] = (x, y, w, h, 1.0)
        rows[0, i, 5 + c] = score
    return rows


def test_map50_against_labels_with_yolov5_rows_and_nms():
    pytest.importorskip("pycocotools")
    pred = _yolo_rows([(20, 20, 10, 10, 0.9, 0), (21, 20, 10, 10, 0.8, 0), (60, 60, 8, 8, 0.7, 2)])
    labels = np.array([[0, 15, 15, 25, 25], [2, 56, 56, 64, 64]], np.float64)
    tracker = MetricTracker(get_metric("map50"), labelled=True)
    tracker.add({"det": pred}, {"det": pred}, labels)
    fig = tracker.figure()
    assert fig.value == pytest.approx(1.0) and fig.reference == pytest.approx(1.0)
    missed = _yolo_rows([(20, 20, 10, 10, 0.9, 0)])
    miss = MetricTracker(get_metric("map50"), labelled=True)
    miss.add({"det": pred}, {"det": missed}, labels)
    assert miss.figure().value == pytest.approx(0.5) and miss.figure().drop == pytest.approx(50.0)


def test_map_agreement_uses_fp32_boxes_above_agreement_conf():
    pytest.importorskip("pycocotools")
    fp32 = _yolo_rows([(20, 20, 10, 10, 0.9, 0), (70, 70, 10, 10, 0.1, 1)])  # the 0.1 box is no ground truth
    tracker = MetricTracker(get_metric("map50"), labelled=False)
    tracker.add({"det": fp32}, {"det": fp32}, None)
    assert tracker.figure().mode == "agreement" and tracker.figure().value == pytest.approx(1.0)


def test_yolov8_transposed_and_grid_layouts_decode():
    v8 = np.zeros((1, 4 + 2, 10), np.float32)  # 4+C x N
    v8[0, :, 0] = (30, 30, 10, 10, 0.95, 0.0)
    metric = get_metric("map50", parse_metric_options(["layout=yolov8"]))
    boxes = metric.decode({"out": v8})
    assert boxes.shape == (1, 6) and boxes[0, :4].tolist() == [25, 25, 35, 35]
    heads = {f"h{i}": np.full((1, 3 * (5 + 2), s, s), -10.0, np.float32) for i, s in enumerate((8, 4, 2))}
    heads["h0"][0, 4, 3, 3] = heads["h0"][0, 5, 3, 3] = 10.0  # anchor 0 of stride 8, cell (3, 3): obj + class 0
    grid = get_metric("map50", MetricOptions(layout="grid")).decode(heads)
    assert len(grid) == 1 and grid[0, 5] == 0 and grid[0, 4] > 0.99


def test_nms_keeps_classes_apart():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float64)
    kept = nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), 0.5, 10)
    assert kept.tolist() == [0, 2]


def test_text_f1_from_probability_maps():
    prob = np.zeros((1, 1, 20, 20))
    prob[0, 0, 2:6, 2:10] = 0.9
    prob[0, 0, 12:16, 4:14] = 0.8
    boxes = np.array([[2, 2, 10, 6], [4, 12, 14, 16]], np.float64)
    tracker = MetricTracker(get_metric("text-f1"), labelled=True)
    half = prob.copy()
    half[0, 0, 12:16] = 0.0
    tracker.add({"p": prob}, {"p": half}, boxes)
    fig = tracker.figure()
    assert fig.reference == pytest.approx(1.0) and fig.value == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_user_metric_needs_trust(tmp_path):
    code = tmp_path / "mymetric.py"
    code.write_text("def score(outputs, target):\n    return 1.0\n")
    with pytest.raises(BadInputError, match="--trust-code"):
        get_metric(f"py:{code}:score")
    metric = get_metric(f"py:{code}:score", allow_code=True)
    assert metric.info.unit == "" and metric.info.scale == 1.0


def test_metric_options_are_checked():
    assert parse_metric_options(["conf=0.25", "max_det=100", "strides=8,16,32"]).conf == 0.25
    for bad, words in (("conf=2", "0 to 1"), ("layout=ssd", "unknown"), ("zz=1", "unknown metric option"),
                       ("max_det=1e12", "max_det"), ("conf", "KEY=VALUE"), ("max_det=1.5", "wrong type")):
        with pytest.raises(BadInputError, match=words):
            parse_metric_options([bad])


def test_accumulator_labels_the_metric_accuracy_or_agreement_and_flags_dead():
    ref = {"y": np.array([[0.1, 0.9, 0.0]])}
    acc = AccuracyAccumulator(metric=get_metric("top1"))
    acc.add(ref, {"y": np.array([[0.9, 0.1, 0.0]])})
    figures = acc.result("measured")
    assert figures.metric.mode == "agreement" and figures.accuracy is None
    assert figures.metric.value == 0.0 and any("agreement" in d for d in figures.dead)
    labelled = AccuracyAccumulator()
    labelled.add(ref, {"y": ref["y"]}, np.array([1]))
    assert labelled.result("measured").accuracy == 1.0
    with pytest.raises(BadInputError, match="some evaluation samples carry labels"):
        labelled.add(ref, {"y": ref["y"]}, None)


def test_user_metric_sees_labels_or_fp32_outputs(tmp_path):
    code = tmp_path / "close.py"
    code.write_text("import numpy as np\n"
                    "def score(outputs, target):\n"
                    "    ref = target['y'] if isinstance(target, dict) else target\n"
                    "    return float(np.abs(outputs['y'] - ref).max() < 0.5)\n")
    metric = get_metric(f"py:{code}:score", allow_code=True)
    agree = MetricTracker(metric, labelled=False)
    agree.add({"y": np.zeros(3)}, {"y": np.full(3, 0.1)}, None)
    agree.add({"y": np.zeros(3)}, {"y": np.full(3, 0.9)}, None)
    assert agree.figure().value == 0.5 and agree.figure().mode == "agreement"
    labelled = MetricTracker(metric, labelled=True)
    labelled.add({"y": np.zeros(3)}, {"y": np.ones(3)}, np.ones(3))
    fig = labelled.figure()
    assert fig.reference == 0.0 and fig.value == 1.0 and fig.drop == -1.0 and fig.unit == ""
    bad = tmp_path / "bad.py"
    bad.write_text("def score(outputs, target):\n    return 'x'\n")
    with pytest.raises(BadInputError, match="one finite number per sample"):
        MetricTracker(get_metric(f"py:{bad}:score", allow_code=True), labelled=False).add(
            {"y": np.zeros(1)}, {"y": np.zeros(1)}, None)
