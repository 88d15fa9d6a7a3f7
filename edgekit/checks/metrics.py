"""Task metrics a user judges a model by: top-1/top-5, Dice and mean IoU, mAP, text-detection F1, or their own.

Each metric has a name, a direction, a unit and a streaming accumulator (`add` one sample, `value` at the
end), so a 640x640 detector over 200 images holds boxes, not outputs. A metric reads the model's raw
outputs through its own decoder (argmax; threshold or argmax over classes; YOLO rows or grids -> boxes ->
NMS; DB probability map -> regions), whose options are data (`MetricOptions`), not hard-wired to one model.

Ground truth or not: with labels the figure is task *accuracy*; without, the same metric is computed against
the FP32 model's own decoded predictions and called *agreement* (INT8 boxes vs FP32 boxes), never accuracy.
Values are fractions 0..1 shown in %, drops in percentage points; a user metric (`py:module:function`,
runs user code: needs the trust flag) keeps its own unit.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

import numpy as np

from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.plugins import load_user_callable

MAX_BOXES = 10_000  # per image, after the score threshold: beyond that the decode options are wrong


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is: its name, what it means, which way is better, its unit and what labels it reads."""

    name: str
    title: str
    task: str  # classification | segmentation | detection | text | user
    direction: str = "higher"  # higher is better (every built-in)
    unit: str = "%"  # values are fractions shown in %, drops in points; "" for user metrics
    labels: str = ""  # the ground truth it reads, for error messages and docs

    @property
    def scale(self) -> float:
        """Multiplier from value to drop units: 100 (points) for fractions, 1 for a user metric's own unit."""
        return 100.0 if self.unit == "%" else 1.0


@dataclass(frozen=True)
class MetricOptions:
    """Decoder options, one typed set for every metric (the ones a metric does not read are ignored).

    output: which model output to read (default: the first). threshold: probability cut for one-channel
    segmentation and DB text maps. activation: auto | sigmoid | none for one-channel maps (auto: sigmoid
    when the FP32 output leaves 0..1). Detection: layout yolov5 (rows x,y,w,h,obj,classes...) | yolov8
    (x,y,w,h,classes..., rows or transposed) | boxes (x1,y1,x2,y2,score,class, already NMS-ed) | grid (raw
    heads 1 x A*(5+C) x H x W, one output per stride, decoded with `anchors` and `strides`); box xywh | xyxy;
    conf (score floor for mAP), agreement_conf (FP32 boxes kept as ground truth without labels), iou (NMS),
    max_det. Text: box_threshold (mean probability inside a region), min_area (pixels).
    """

    output: str | None = None
    threshold: float = 0.5
    activation: str = "auto"
    layout: str = "yolov5"
    box: str = "xywh"
    conf: float = 0.001
    agreement_conf: float = 0.25
    iou: float = 0.6
    max_det: int = 300
    anchors: tuple[float, ...] = (10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326)
    strides: tuple[int, ...] = (8, 16, 32)
    box_threshold: float = 0.6
    min_area: int = 4
    match_iou: float = 0.5

    def check(self, argument: str) -> MetricOptions:
        unit = {"threshold", "conf", "agreement_conf", "iou", "box_threshold", "match_iou"}
        for name in unit:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
                raise BadInputError(f"metric option {name} must be a number from 0 to 1, got {value!r}",
                                    path=argument)
        if not 1 <= self.max_det <= MAX_BOXES:
            raise BadInputError(f"metric option max_det must be 1..{MAX_BOXES}, got {self.max_det}", path=argument)
        if not 0 <= self.min_area <= 1 << 24:
            raise BadInputError(f"metric option min_area out of range: {self.min_area}", path=argument)
        choices = {"activation": ("auto", "sigmoid", "none"), "layout": ("yolov5", "yolov8", "boxes", "grid"),
                   "box": ("xywh", "xyxy")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BadInputError(f"metric option {name}={getattr(self, name)!r} is unknown", path=argument,
                                    hint=f"one of {', '.join(allowed)}")
        if len(self.anchors) % 2 or len(self.anchors) // 2 % max(1, len(self.strides)) or not self.strides:
            raise BadInputError("metric option anchors must hold w,h pairs, the same count per stride",
                                path=argument)
        return self


def parse_metric_options(items: Mapping[str, Any] | list[str] | tuple[str, ...] | None, *,
                         argument: str = "--metric-option") -> MetricOptions:
    """`["conf=0.25", "layout=yolov8"]` or a mapping (a recipe table) -> checked MetricOptions."""
    if not items:
        return MetricOptions()
    pairs: dict[str, Any] = {}
    if isinstance(items, Mapping):
        pairs = dict(items)
    else:
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep or not key.strip():
                raise BadInputError(f"cannot parse metric option {item!r}", path=argument, hint="write KEY=VALUE")
            pairs[key.strip()] = value.strip()
    known = {f.name: f for f in fields(MetricOptions)}
    values: dict[str, Any] = {}
    default = MetricOptions()
    for key, value in pairs.items():
        if key not in known:
            raise BadInputError(f"unknown metric option {key!r}", path=argument, hint=f"known: {', '.join(known)}")
        current = getattr(default, key)
        try:
            if isinstance(current, tuple):
                parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
                kind = type(current[0])
                values[key] = tuple(kind(float(p)) if kind is int else float(p) for p in parts if str(p).strip())
            elif isinstance(current, bool) or current is None or isinstance(current, str):
                if not isinstance(value, str):
                    raise ValueError(value)
                values[key] = value
            elif isinstance(current, int):
                number = float(value)
                if not number.is_integer():
                    raise ValueError(value)
                values[key] = int(number)
            else:
                values[key] = float(value)
        except (TypeError, ValueError):
            example = ",".join(map(str, current)) if isinstance(current, tuple) else current
            raise BadInputError(f"metric option {key}={value!r} has the wrong type", path=argument,
                                hint=f"like {key}={example}") from None
    return replace(default, **values).check(argument)


class MetricAccumulator(Protocol):
    """Streaming state of one metric: `add` a decoded prediction and its target, `value` at the end (None: n/a)."""

    def add(self, prediction: Any, target: Any) -> None: ...

    def value(self) -> float | None: ...


@dataclass(frozen=True)
class Metric:
    """A metric with its decoder. Subclasses fill in `decode`, `target`, `accumulator` (and `resolve`)."""

    info: MetricInfo
    options: MetricOptions = field(default_factory=MetricOptions)

    @property
    def name(self) -> str:
        return self.info.name

    def resolve(self, reference: Mapping[str, np.ndarray]) -> Metric:
        """Fix data-dependent choices on the first FP32 outputs (so FP32 and INT8 are decoded the same way)."""
        return self

    def _output(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        name = self.options.output
        if name is None:
            return np.asarray(next(iter(outputs.values())))
        if name not in outputs:
            raise BadInputError(f"metric {self.name}: the model has no output {name!r}", path="--metric-option",
                                hint=f"outputs: {', '.join(outputs)}")
        return np.asarray(outputs[name])

    def decode(self, outputs: Mapping[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def target(self, label: Any, reference: Mapping[str, np.ndarray]) -> Any:
        """A label from the data set in the form `accumulator().add` takes."""
        return label

    def target_from(self, prediction: Any) -> Any:
        """FP32's own decoded prediction used as ground truth (agreement)."""
        return prediction

    def agreement_target(self, reference: Mapping[str, np.ndarray]) -> Any:
        """Ground truth without labels: the FP32 outputs, decoded like the candidate's."""
        return self.target_from(self.decode(reference))

    def accumulator(self) -> MetricAccumulator:
        raise NotImplementedError


# ------------------------------------------------------------------------------ classification


class _Mean:
    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add_many(self, values: np.ndarray) -> None:
        self.total += float(np.sum(values))
        self.count += int(np.size(values))

    def value(self) -> float | None:
        return self.total / self.count if self.count else None


class _TopKAcc(_Mean):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        k = min(self.k, prediction.shape[1])
        top = np.argpartition(-prediction, k - 1, axis=1)[:, :k]
        self.add_many(np.any(top == target.reshape(-1, 1), axis=1))


@dataclass(frozen=True)
class TopK(Metric):
    k: int = 1

    def decode(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self._output(outputs)
        if out.ndim < 1 or out.shape[-1] < 2:
            raise BadInputError(f"metric {self.name} reads class scores, the output has shape {out.shape}",
                                path="--metric", hint="top1/top5 fit classifiers ([N, classes] outputs)")
        return out.reshape(-1, out.shape[-1]).astype(np.float64)

    def target(self, label: Any, reference: Mapping[str, np.ndarray]) -> np.ndarray:
        rows = self.decode(reference).shape[0]
        ids = np.asarray(label).reshape(-1)
        if ids.size != rows or not np.issubdtype(ids.dtype, np.number) or not np.all(np.isfinite(ids)):
            raise BadInputError(f"metric {self.name} needs one class id per output row ({rows}); the label "
                                f"has {ids.size} value(s) of {ids.dtype}", path="labels",
                                hint="labels are integer class ids, one per sample")
        return ids.astype(np.int64)

    def target_from(self, prediction: np.ndarray) -> np.ndarray:
        return np.argmax(prediction, axis=1)

    def accumulator(self) -> MetricAccumulator:
        return _TopKAcc(self.k)


# ------------------------------------------------------------------------------ segmentation


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class _Overlap:
    """Per-class intersection, predicted and true pixel counts summed over the eval set."""

    def __init__(self, mode: str):
        self.mode = mode
        self.inter: np.ndarray = np.zeros(0)
        self.pred: np.ndarray = np.zeros(0)
        self.true: np.ndarray = np.zeros(0)

    def add(self, prediction: tuple[np.ndarray, int], target: np.ndarray) -> None:
        mask, classes = prediction
        if target.shape != mask.shape:
            raise BadInputError(f"mask shape {target.shape} does not match the prediction {mask.shape}",
                                path="labels", hint="masks have the model output's height and width")
        n = max(classes, int(target.max(initial=0)) + 1, len(self.inter))
        for name in ("inter", "pred", "true"):
            arr = getattr(self, name)
            if len(arr) < n:
                setattr(self, name, np.concatenate([arr, np.zeros(n - len(arr))]))
        flat_p, flat_t = mask.ravel(), target.ravel()
        self.pred += np.bincount(flat_p, minlength=n)[:n]
        self.true += np.bincount(flat_t, minlength=n)[:n]
        self.inter += np.bincount(flat_p[flat_p == flat_t], minlength=n)[:n]

    def value(self) -> float | None:
        if self.mode == "dice":
            denom = self.pred[1:] + self.true[1:]
            have = denom > 0
            return float(np.mean(2 * self.inter[1:][have] / denom[have])) if have.any() else None
        union = self.pred + self.true - self.inter
        have = union > 0
        return float(np.mean(self.inter[have] / union[have])) if have.any() else None


@dataclass(frozen=True)
class Segmentation(Metric):
    mode: str = "dice"  # dice (foreground classes) | miou (every class, background included)

    def resolve(self, reference: Mapping[str, np.ndarray]) -> Metric:
        out = self._output(reference)
        if self.options.activation == "auto" and self._channels(out) == 1:
            outside = bool(out.size) and (float(out.min()) < 0.0 or float(out.max()) > 1.0)
            return replace(self, options=replace(self.options, activation="sigmoid" if outside else "none"))
        return self

    @staticmethod
    def _channels(out: np.ndarray) -> int:
        return int(out.shape[1]) if out.ndim == 4 else 1

    def decode(self, outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
        out = self._output(outputs).astype(np.float64)
        if out.ndim not in (3, 4):
            raise BadInputError(f"metric {self.name} reads N x C x H x W (or N x H x W) maps; the output has "
                                f"shape {out.shape}", path="--metric")
        if out.ndim == 4 and out.shape[1] > 1:
            return np.argmax(out, axis=1).astype(np.int64), int(out.shape[1])
        maps = out.reshape(out.shape[0], out.shape[-2], out.shape[-1])
        if self.options.activation == "sigmoid":
            maps = _sigmoid(maps)
        return (maps > self.options.threshold).astype(np.int64), 2

    def target(self, label: Any, reference: Mapping[str, np.ndarray]) -> np.ndarray:
        mask, _ = self.decode(reference)
        array = np.asarray(label)
        if not np.issubdtype(array.dtype, np.number) or array.size != mask.size:
            raise BadInputError(f"a {self.name} label is a class mask of {mask.shape[-2]}x{mask.shape[-1]} "
                                f"pixels; got shape {array.shape} ({array.dtype})", path="labels",
                                hint="mask PNGs/arrays with the model output's height and width")
        array = array.reshape(mask.shape)
        if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise BadInputError("mask values must be class ids 0..65535", path="labels")
        return array.astype(np.int64)

    def target_from(self, prediction: tuple[np.ndarray, int]) -> np.ndarray:
        return prediction[0]

    def accumulator(self) -> MetricAccumulator:
        return _Overlap(self.mode)


# ------------------------------------------------------------------------------ detection


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes x1,y1,x2,y2 (len(a) x len(b))."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:4] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:4] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Greedy per-class NMS (boxes offset by class so classes never suppress each other); kept indices."""
    order = np.argsort(-scores, kind="stable")
    shifted = boxes + (classes.astype(np.float64) * (float(np.abs(boxes).max(initial=0)) + 1.0))[:, None]
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou(shifted[i:i + 1], shifted[rest])[0] <= iou]
    return np.asarray(keep, dtype=np.int64)


@dataclass(frozen=True)
class Detection(Metric):
    """mAP of decoded, NMS-ed boxes. Prediction/target rows: x1, y1, x2, y2, score, class (target score 1)."""

    iou_range: str = "0.5"  # 0.5 (mAP@0.5) | 0.5:0.95 (COCO mAP)

    def _rows(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        o = self.options
        if o.layout == "grid":
            return self._grid(outputs)
        out = self._output(outputs).astype(np.float64)
        if out.ndim == 3:
            out = out[0]
        if out.ndim != 2:
            raise BadInputError(f"metric {self.name}: detection output of shape {out.shape} is not rows of boxes",
                                path="--metric-option", hint="set layout=yolov5|yolov8|boxes|grid")
        if o.layout == "yolov8" and out.shape[0] < out.shape[1]:
            out = out.T  # 4+C x N -> N x 4+C
        return out

    def _grid(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        o = self.options
        heads = [np.asarray(v, dtype=np.float64) for v in outputs.values() if np.asarray(v).ndim in (4, 5)]
        if len(heads) != len(o.strides):
            raise BadInputError(f"layout=grid needs one raw head per stride ({len(o.strides)}), the model has "
                                f"{len(heads)}", path="--metric-option", hint="set strides=... and anchors=...")
        per = len(o.anchors) // 2 // len(o.strides)
        anchors = np.asarray(o.anchors, dtype=np.float64).reshape(len(o.strides), per, 2)
        rows = []
        for level, (head, stride) in enumerate(zip(heads, o.strides, strict=True)):
            h, w = head.shape[-2:]
            head = head.reshape(per, -1, h, w)  # A x (5+C) x H x W
            p = _sigmoid(head)
            gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            x = (p[:, 0] * 2 - 0.5 + gx) * stride
            y = (p[:, 1] * 2 - 0.5 + gy) * stride
            bw = (p[:, 2] * 2) ** 2 * anchors[level, :, 0, None, None]
            bh = (p[:, 3] * 2) ** 2 * anchors[level, :, 1, None, None]
            fields_ = np.stack([x, y, bw, bh, *p[:, 4:].transpose(1, 0, 2, 3)], axis=-1)
            rows.append(fields_.reshape(-1, fields_.shape[-1]))
        return np.concatenate(rows)

    def _boxes(self, outputs: Mapping[str, np.ndarray], floor: float) -> np.ndarray:
        o = self.options
        rows = self._rows(outputs)
        if o.layout == "boxes":
            if rows.shape[1] < 6:
                raise BadInputError("layout=boxes needs rows x1,y1,x2,y2,score,class", path="--metric-option")
            boxes, scores, classes = rows[:, :4], rows[:, 4], rows[:, 5]
            keep = scores >= floor
            det = np.column_stack([boxes[keep], scores[keep], classes[keep]])
            return det[np.argsort(-det[:, 4], kind="stable")][:o.max_det]
        first = 5 if o.layout in ("yolov5", "grid") else 4
        if rows.shape[1] <= first:
            raise BadInputError(f"layout={o.layout} needs more than {first} values per box row, got {rows.shape[1]}",
                                path="--metric-option")
        cls_scores = rows[:, first:]
        classes = np.argmax(cls_scores, axis=1)
        scores = cls_scores[np.arange(len(rows)), classes]
        if first == 5:
            scores = scores * rows[:, 4]
        keep = np.isfinite(scores) & (scores >= floor)
        boxes, scores, classes = rows[keep, :4], scores[keep], classes[keep]
        if len(scores) > MAX_BOXES:
            top = np.argsort(-scores, kind="stable")[:MAX_BOXES]
            boxes, scores, classes = boxes[top], scores[top], classes[top]
        if o.box == "xywh":
            boxes = np.column_stack([boxes[:, :2] - boxes[:, 2:4] / 2, boxes[:, :2] + boxes[:, 2:4] / 2])
        kept = nms(boxes, scores, classes, o.iou, o.max_det)
        return np.column_stack([boxes[kept], scores[kept], classes[kept]]) if len(kept) else np.zeros((0, 6))

    def decode(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._boxes(outputs, self.options.conf)

    def target(self, label: Any, reference: Mapping[str, np.ndarray]) -> np.ndarray:
        array = np.asarray(label, dtype=np.float64) if np.asarray(label).size else np.zeros((0, 5))
        if array.ndim != 2 or array.shape[1] != 5 or not np.all(np.isfinite(array)):
            raise BadInputError(f"a {self.name} label is rows of class, x1, y1, x2, y2; got shape {array.shape}",
                                path="labels", hint="COCO JSON boxes are converted to this; check the data set")
        return np.column_stack([array[:, 1:5], np.ones(len(array)), array[:, 0]])

    def target_from(self, prediction: np.ndarray) -> np.ndarray:
        kept = prediction[prediction[:, 4] >= self.options.agreement_conf] if len(prediction) else prediction
        return np.column_stack([kept[:, :4], np.ones(len(kept)), kept[:, 5]]) if len(kept) else np.zeros((0, 6))

    def agreement_target(self, reference: Mapping[str, np.ndarray]) -> np.ndarray:
        """FP32 boxes above `agreement_conf` become the ground truth (low-score boxes are no objects)."""
        return self.target_from(self._boxes(reference, min(self.options.conf, self.options.agreement_conf)))

    def accumulator(self) -> MetricAccumulator:
        return _CocoMap(self.iou_range)


def _coco_classes() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
        return COCO, COCOeval
    except ImportError:
        pass
    try:
        from faster_coco_eval import COCO, COCOeval_faster
        return COCO, COCOeval_faster
    except ImportError:
        raise ToolchainMissingError("mAP needs a COCO evaluator (pycocotools or faster-coco-eval)", path="--metric",
                                    hint="pip install 'edgekit[metrics]'") from None


class _CocoMap:
    """Boxes of every image kept (small), evaluated once by the maintained COCO evaluator."""

    def __init__(self, iou_range: str):
        self.iou_range = iou_range
        self.images: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, prediction: np.ndarray, target: np.ndarray) -> None:
        self.images.append((np.asarray(prediction, dtype=np.float64).reshape(-1, 6),
                            np.asarray(target, dtype=np.float64).reshape(-1, 6)))

    def value(self) -> float | None:
        gts = [(i, t) for i, (_, t) in enumerate(self.images) for t in t]
        if not gts:
            return None
        coco_cls, eval_cls = _coco_classes()
        classes = sorted({int(t[5]) for _, t in gts} | {int(p[5]) for p, _ in self.images for p in p})
        annotations = [{"id": n + 1, "image_id": i, "category_id": int(t[5]), "iscrowd": 0,
                        "bbox": [float(t[0]), float(t[1]), float(t[2] - t[0]), float(t[3] - t[1])],
                        "area": float(max(t[2] - t[0], 0) * max(t[3] - t[1], 0))} for n, (i, t) in enumerate(gts)]
        dets = [{"image_id": i, "category_id": int(p[5]), "score": float(p[4]),
                 "bbox": [float(p[0]), float(p[1]), float(p[2] - p[0]), float(p[3] - p[1])]}
                for i, (pred, _) in enumerate(self.images) for p in pred]
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco_cls()
            gt.dataset = {"images": [{"id": i} for i in range(len(self.images))], "annotations": annotations,
                          "categories": [{"id": c} for c in classes]}
            gt.createIndex()
            if not dets:
                return 0.0
            dt = gt.loadRes(dets)
            ev = eval_cls(gt, dt, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        value = float(ev.stats[1] if self.iou_range == "0.5" else ev.stats[0])
        return max(value, 0.0)  # the evaluator writes -1 for "no ground truth"


# ------------------------------------------------------------------------------ text detection


def regions(mask: np.ndarray, prob: np.ndarray | None, options: MetricOptions) -> np.ndarray:
    """Connected regions of a binary map as boxes x1,y1,x2,y2 (DB post-processing, axis-aligned)."""
    try:
        from scipy import ndimage
    except ImportError:
        raise ToolchainMissingError("text-f1 needs scipy", path="--metric", hint="pip install 'edgekit[metrics]'") \
            from None

    labels, count = ndimage.label(mask)
    if not count:
        return np.zeros((0, 4))
    boxes = []
    for index, found in enumerate(ndimage.find_objects(labels), 1):
        if found is None:
            continue
        ys, xs = found
        area = int(np.sum(labels[found] == index))
        if area < options.min_area:
            continue
        if prob is not None and float(prob[found][labels[found] == index].mean()) < options.box_threshold:
            continue
        boxes.append((xs.start, ys.start, xs.stop, ys.stop))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


class _MatchF1:
    def __init__(self, iou: float):
        self.iou = iou
        self.tp = self.n_pred = self.n_true = 0

    def add(self, prediction: list[np.ndarray], target: list[np.ndarray]) -> None:
        for pred, true in zip(prediction, target, strict=True):
            self.n_pred += len(pred)
            self.n_true += len(true)
            ious = box_iou(pred, true)
            pairs = sorted(((float(ious[i, j]), i, j) for i, j in zip(*np.nonzero(ious >= self.iou), strict=True)),
                           reverse=True)
            used_p: set[int] = set()
            used_t: set[int] = set()
            for _, i, j in pairs:  # greedy one-to-one matching, best overlaps first
                if i not in used_p and j not in used_t:
                    used_p.add(i)
                    used_t.add(j)
            self.tp += len(used_p)

    def value(self) -> float | None:
        if self.n_true == 0 and self.n_pred == 0:
            return None
        precision = self.tp / self.n_pred if self.n_pred else 0.0
        recall = self.tp / self.n_true if self.n_true else 0.0
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@dataclass(frozen=True)
class TextF1(Metric):
    """DB-style text detection: probability map -> binarized regions -> precision/recall/F1 at IoU 0.5."""

    def _maps(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        out = self._output(outputs).astype(np.float64)
        if out.ndim == 4:
            out = out[:, 0]
        if out.ndim != 3:
            raise BadInputError(f"metric {self.name} reads N x 1 x H x W probability maps; the output has shape "
                                f"{out.shape}", path="--metric")
        return out

    def decode(self, outputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        maps = self._maps(outputs)
        return [regions(m > self.options.threshold, m, self.options) for m in maps]

    def target(self, label: Any, reference: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        array = np.asarray(label)
        maps = self._maps(reference)
        if array.ndim >= 2 and array.shape[-2:] == maps.shape[-2:]:  # a text mask
            masks = array.reshape(-1, *maps.shape[-2:])
            plain = replace(self.options, min_area=0)
            return [regions(m > 0, None, plain) for m in masks]
        boxes = np.asarray(array, dtype=np.float64).reshape(-1, 4) if array.size else np.zeros((0, 4))
        if not np.all(np.isfinite(boxes)):
            raise BadInputError("text boxes must be finite x1,y1,x2,y2 rows", path="labels")
        return [boxes]

    def accumulator(self) -> MetricAccumulator:
        return _MatchF1(self.options.match_iou)


# ------------------------------------------------------------------------------ user metric


class _UserMean(_Mean):
    def __init__(self, func: Callable[..., Any], ref: str):
        super().__init__()
        self.func, self.ref = func, ref

    def add(self, prediction: Mapping[str, np.ndarray], target: Any) -> None:
        value = self.func(prediction, target)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or \
                not math.isfinite(float(value)):
            raise BadInputError(f"{self.ref} returned {value!r}; a metric returns one finite number per sample",
                                path=self.ref)
        self.add_many(np.asarray([float(value)]))


@dataclass(frozen=True)
class UserMetric(Metric):
    """`py:module:function(outputs, target) -> float`, averaged over samples; target is the label, or FP32's outputs."""

    func: Callable[..., Any] | None = None

    def decode(self, outputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return outputs

    def agreement_target(self, reference: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        return reference  # the user's function compares outputs with FP32's outputs itself

    def accumulator(self) -> MetricAccumulator:
        if self.func is None:
            raise BadInputError(f"user metric {self.name} has no function", path="--metric")
        return _UserMean(self.func, self.name)


# ------------------------------------------------------------------------------ registry

METRICS: dict[str, tuple[type[Metric], MetricInfo, dict[str, Any]]] = {
    info.name: (cls, info, extra) for cls, info, extra in (
        (TopK, MetricInfo("top1", "top-1 accuracy", "classification", labels="class ids"), {"k": 1}),
        (TopK, MetricInfo("top5", "top-5 accuracy", "classification", labels="class ids"), {"k": 5}),
        (Segmentation, MetricInfo("dice", "Dice (foreground classes)", "segmentation", labels="masks"),
         {"mode": "dice"}),
        (Segmentation, MetricInfo("miou", "mean IoU (all classes)", "segmentation", labels="masks"),
         {"mode": "miou"}),
        (Detection, MetricInfo("map50", "mAP@0.5", "detection", labels="boxes"), {"iou_range": "0.5"}),
        (Detection, MetricInfo("map", "mAP@0.5:0.95", "detection", labels="boxes"), {"iou_range": "0.5:0.95"}),
        (TextF1, MetricInfo("text-f1", "text detection F1 at IoU 0.5", "text", labels="text boxes or masks"), {}),
    )
}
ALIASES = {"top-1": "top1", "top-5": "top5", "accuracy": "top1", "iou": "miou", "mean_iou": "miou",
           "map@0.5": "map50", "map_50": "map50", "map50-95": "map", "map@0.5:0.95": "map", "f1": "text-f1",
           "text_f1": "text-f1"}


def metric_names() -> list[str]:
    return [*METRICS, "py:module:function"]


def canonical_metric_name(name: str, *, argument: str = "--metric") -> str:
    """A built-in metric's name (aliases folded), or a `py:` reference as given; unknown names list the known."""
    text = str(name).strip()
    if text.startswith("py:"):
        return text
    key = ALIASES.get(text.lower(), text.lower())
    if key not in METRICS:
        raise BadInputError(f"unknown metric {name!r}", path=argument, hint=f"known: {', '.join(metric_names())}")
    return key


def get_metric(name: str, options: MetricOptions | None = None, *, allow_code: bool = False,
               argument: str = "--metric") -> Metric:
    """A metric by name (`top1`, `dice`, `map50`, ...) or `py:module:function` (needs `allow_code`)."""
    key = canonical_metric_name(name, argument=argument)
    opts = options or MetricOptions()
    if key.startswith("py:"):
        if not allow_code:
            raise BadInputError("a py: metric runs your code", path=argument,
                                hint="pass --trust-code (allow_code=True in Python) if you trust it")
        func = load_user_callable(key, argument=argument)
        return UserMetric(MetricInfo(key, f"user metric {key}", "user", unit=""), opts, func=func)
    cls, info, extra = METRICS[key]
    return cls(info, opts, **extra)


def default_metric(reference: Mapping[str, np.ndarray], label: Any) -> Metric | None:
    """top-1 when labels are class ids, one per row of a classifier-shaped first output; else None."""
    out = np.asarray(next(iter(reference.values())))
    ids = np.asarray(label)
    if out.ndim >= 1 and out.shape[-1] > 1 and ids.size and ids.size == out.size // out.shape[-1] and \
            np.issubdtype(ids.dtype, np.integer):
        return get_metric("top1")
    return None


# ------------------------------------------------------------------------------ FP32 vs candidate


@dataclass(frozen=True)
class MetricFigure:
    """One metric, FP32 and candidate, with its mode: accuracy (vs labels) or agreement (vs FP32 predictions)."""

    name: str
    title: str
    unit: str
    direction: str
    mode: str  # accuracy | agreement
    reference: float | None  # FP32's value (agreement: 1.0 by definition)
    value: float | None  # the candidate's value
    samples: int
    scale: float = 100.0
    note: str = ""

    @property
    def drop(self) -> float | None:
        """FP32 minus candidate, in points (percentage points) or the user metric's unit."""
        if self.reference is None or self.value is None:
            return None
        return self.scale * (self.reference - self.value)

    def show(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        return f"{100 * value:.2f}%" if self.unit == "%" else f"{value:.4g}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "unit": self.unit, "direction": self.direction,
                "mode": self.mode, "fp32": self.reference, "value": self.value, "drop": self.drop,
                "drop_unit": "points" if self.unit == "%" else self.unit, "samples": self.samples,
                "note": self.note}


class MetricTracker:
    """A metric on FP32 and candidate outputs, sample by sample: accuracy with labels, agreement without."""

    def __init__(self, metric: Metric | None, *, labelled: bool):
        self.metric = metric
        self.labelled = labelled
        self._cand: MetricAccumulator | None = None
        self._ref: MetricAccumulator | None = None
        self.samples = 0
        self.note = ""

    def add(self, reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], label: Any) -> None:
        if self.note:
            return  # labels that no default metric reads: ignored (said once in `note`)
        if (label is not None) != self.labelled:
            raise BadInputError("some evaluation samples carry labels and others do not", path="labels",
                                hint="label every sample (accuracy) or none (agreement with FP32)")
        if self.metric is None:
            self.metric = default_metric(reference, label)
            if self.metric is None:
                self.note = "labels ignored: they are not class ids for a classifier output; choose --metric"
                return
        if self._cand is None:
            self.metric = self.metric.resolve(reference)
            self._cand = self.metric.accumulator()
            self._ref = self.metric.accumulator() if self.labelled else None
        metric = self.metric
        self.samples += 1
        got_pred = metric.decode(got)
        if self.labelled:
            target = metric.target(label, reference)
            self._cand.add(got_pred, target)
            if self._ref is not None:
                self._ref.add(metric.decode(reference), target)
        else:
            self._cand.add(got_pred, metric.agreement_target(reference))

    def figure(self, reference_value: float | None = None) -> MetricFigure:
        metric = self.metric
        if metric is None:
            return MetricFigure("none", "no metric", "", "higher", "agreement", None, None, 0, note=self.note)
        value = self._cand.value() if self._cand is not None else None
        if self.labelled:
            ref = reference_value if reference_value is not None else (self._ref.value() if self._ref else None)
        else:
            ref = 1.0 if metric.info.unit == "%" and value is not None else None
        note = self.note
        if value is None:
            note = note or (f"{metric.name}: nothing to score (no ground truth objects"
                            f"{'' if self.labelled else ' in the FP32 predictions'})")
        return MetricFigure(metric.name, metric.info.title, metric.info.unit, metric.info.direction,
                            "accuracy" if self.labelled else "agreement", ref, value, self.samples,
                            metric.info.scale, note)
