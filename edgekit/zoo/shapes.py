"""A small segmenter and a small detector, really trained in seconds on shapes this module draws.

The data: 64x64 grey images with one to three shapes (class 0 square, class 1 disc) on mild noise, with
their masks (0 background, 1 square, 2 disc) and boxes (class, x1, y1, x2, y2 in pixels). Drawn with
numpy from a seed, so the same images come back everywhere (tests, docs, benchmarks) with no download.

- `unet-shapes`: a two-level U-Net, logits 1x3x64x64 (argmax = class per pixel): Dice / mean IoU.
- `yolo-shapes`: a YOLO-style single-scale detector (8x8 grid, stride 8, one box per cell) whose graph decodes
  its rows like YOLOv5 exports do: 1x64x7 = x, y, w, h (pixels), objectness, 2 class scores: mAP.

Training is deterministic (fixed seeds, one thread) and cached per process like `edgekit.zoo.digits`.
Importing this module registers both zoo entries; torch is imported only inside functions.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.specs import TensorSpec

if TYPE_CHECKING:
    import torch

SIZE = 64
STRIDE = 8
GRID = SIZE // STRIDE
CLASSES = ("square", "disc")
INPUT_NAME = "image"
INPUT_SHAPE = (1, 1, SIZE, SIZE)
TRAIN_SEED, TEST_SEED = 0, 1
ANCHOR = 16.0  # pixels: w = h = ANCHOR * exp(t)


def make_shapes(count: int, seed: int = TEST_SEED) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(images N x 1 x 64 x 64 float32 in 0..1, masks N x 64 x 64 int64, boxes: per image k x 5 float rows)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = np.empty((count, 1, SIZE, SIZE), np.float32)
    masks = np.zeros((count, SIZE, SIZE), np.int64)
    boxes: list[np.ndarray] = []
    for i in range(count):
        image = rng.random((SIZE, SIZE), dtype=np.float32) * 0.15
        rows = []
        for _ in range(int(rng.integers(1, 4))):
            klass = int(rng.integers(0, 2))
            half = int(rng.integers(5, 12))
            cy, cx = (int(v) for v in rng.integers(half, SIZE - half, size=2))
            if klass == 0:
                inside = (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
            else:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= half * half
            image[inside] = 0.55 + 0.45 * float(rng.random())
            masks[i][inside] = klass + 1
            rows.append([klass, cx - half, cy - half, cx + half + 1, cy + half + 1])
        images[i, 0] = image
        boxes.append(np.asarray(rows, np.float64))
    return images, masks, boxes


# ------------------------------------------------------------------------------ models


def _conv(c_in: int, c_out: int, stride: int = 1) -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ReLU())


def segmenter() -> torch.nn.Module:
    """Two-level U-Net: 1 -> 8 -> 16 -> 32 channels, nearest upsampling, 3-class logits at full size."""
    import torch
    from torch import nn

    class TinyUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc1 = nn.Sequential(_conv(1, 16, 2), _conv(16, 16))  # 32x32
            self.enc2 = nn.Sequential(_conv(16, 32), _conv(32, 32))  # 16x16
            self.mid = nn.Sequential(_conv(32, 32), _conv(32, 32))  # 8x8
            self.dec2 = _conv(64, 32)
            self.dec1 = _conv(48, 16)
            self.head = nn.Conv2d(16, len(CLASSES) + 1, 3, padding=1)
            self.pool, self.upsample = nn.MaxPool2d(2), nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e1 = self.enc1(x)
            e2 = self.enc2(self.pool(e1))
            m = self.mid(self.pool(e2))
            d2 = self.dec2(torch.cat([self.upsample(m), e2], 1))
            d1 = self.dec1(torch.cat([self.upsample(d2), e1], 1))
            return self.head(self.upsample(d1))

    return TinyUNet()


def detector() -> torch.nn.Module:
    """Stride-8 backbone and a 1x1 head; `decode` (export) turns raw cells into YOLOv5-style rows."""
    import torch
    from torch import nn

    class TinyYolo(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(_conv(1, 16, 2), _conv(16, 16), _conv(16, 32, 2), _conv(32, 32),
                                      _conv(32, 64, 2), _conv(64, 64))
            self.head = nn.Conv2d(64, 5 + len(CLASSES), 1)
            self.decode = True
            gy, gx = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
            self.register_buffer("grid", torch.stack([gx, gy], -1).float().reshape(1, GRID * GRID, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raw = self.head(self.body(x)).flatten(2).transpose(1, 2)  # B x 64 x 7
            if not self.decode:
                return raw
            xy = (torch.sigmoid(raw[..., :2]) + self.grid) * STRIDE
            wh = torch.exp(raw[..., 2:4].clamp(-4.0, 4.0)) * ANCHOR
            return torch.cat([xy, wh, torch.sigmoid(raw[..., 4:])], -1)

    return TinyYolo()


def _detection_targets(boxes: list[np.ndarray]) -> np.ndarray:
    """Per image and cell: objectness, class, x/y offset in the cell, log(w/ANCHOR), log(h/ANCHOR)."""
    target = np.zeros((len(boxes), GRID * GRID, 6), np.float32)
    for i, rows in enumerate(boxes):
        for klass, x1, y1, x2, y2 in sorted(rows.tolist(), key=lambda r: (r[3] - r[1]) * (r[4] - r[2])):
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            cell = int(cy // STRIDE) * GRID + int(cx // STRIDE)
            target[i, cell] = (1.0, klass, cx / STRIDE % 1, cy / STRIDE % 1, np.log(w / ANCHOR), np.log(h / ANCHOR))
    return target


def _train(model: Any, loss_fn: Any, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int, lr: float,
           batch: int = 32) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is faster and bit-reproducible
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in model.modules():  # a seeded init of every weight and bias: the same model everywhere
                if isinstance(module, torch.nn.Conv2d):
                    module.reset_parameters()
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            steps = epochs * ((len(x) + batch - 1) // batch)
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            generator = torch.Generator().manual_seed(seed)
            model.train()
            for _ in range(epochs):
                perm = torch.randperm(len(xt), generator=generator)
                for start in range(0, len(xt), batch):
                    idx = perm[start:start + batch]
                    optimizer.zero_grad()
                    loss_fn(model(xt[idx]), yt[idx]).backward()
                    optimizer.step()
                    schedule.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()


@functools.lru_cache(maxsize=2)
def _segmenter_state(epochs: int, seed: int) -> dict[str, Any]:
    import torch

    images, masks, _ = make_shapes(512, TRAIN_SEED)
    model = segmenter()
    _train(model, torch.nn.functional.cross_entropy, images, masks, epochs=epochs, seed=seed, lr=1e-2, batch=16)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@functools.lru_cache(maxsize=2)
def _detector_state(epochs: int, seed: int) -> dict[str, Any]:
    import torch
    from torch.nn import functional

    images, _, boxes = make_shapes(1024, TRAIN_SEED)
    model = detector()
    model.decode = False

    def loss(raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        obj = target[..., 0]
        positive = obj > 0
        total = functional.binary_cross_entropy_with_logits(raw[..., 4], obj)
        if positive.any():
            p, t = raw[positive], target[positive]
            onehot = functional.one_hot(t[:, 1].long(), len(CLASSES)).float()
            total = total + functional.binary_cross_entropy_with_logits(p[:, 5:], onehot)
            total = total + 5 * functional.mse_loss(torch.sigmoid(p[:, :2]), t[:, 2:4])
            total = total + 2 * functional.mse_loss(p[:, 2:4], t[:, 4:6])
        return total

    _train(model, loss, images, _detection_targets(boxes), epochs=epochs, seed=seed, lr=1e-2)
    model.decode = True
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trained_segmenter(epochs: int = 14, seed: int = 1) -> torch.nn.Module:
    """The U-Net trained on shapes (deterministic; cached per process)."""
    model = segmenter()
    model.load_state_dict(_segmenter_state(epochs, seed))
    return model.eval()


def trained_detector(epochs: int = 12, seed: int = 0) -> torch.nn.Module:
    """The YOLO-style detector trained on shapes (deterministic; cached per process), decoded rows out."""
    model = detector()
    model.load_state_dict(_detector_state(epochs, seed))
    return model.eval()


def export_onnx(model: torch.nn.Module, path: str | Path, output: str, *, opset: int = 17) -> Path:
    """Export a 1x1x64x64 model to ONNX (TorchScript exporter; input `image`)."""
    import torch

    from edgekit.artifact import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.onnx.export(model.eval(), (torch.zeros(INPUT_SHAPE),), str(tmp), input_names=[INPUT_NAME],
                          output_names=[output], opset_version=opset, dynamo=False)
    return path


def write_eval_sets(folder: str | Path, *, count: int = 64, seed: int = TEST_SEED) -> dict[str, Path]:
    """The same `count` test images as users would have them: PNGs + mask PNGs, PNGs + a COCO JSON, one .npz.

    `seg/images`, `seg/masks` (masks: 0 background, 1 square, 2 disc), `det/images` + `det/instances.json`
    (category ids 0 square, 1 disc), `eval.npz` (`input`, no labels) and `calib.npz` (other images).
    """
    from PIL import Image

    folder = Path(folder)
    images, masks, boxes = make_shapes(count, seed)
    for sub in ("seg/images", "seg/masks", "det/images"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": i, "name": n}
                                                                            for i, n in enumerate(CLASSES)]}
    for i in range(count):
        pixels = Image.fromarray((images[i, 0] * 255).round().astype(np.uint8))
        pixels.save(folder / "seg/images" / f"{i:04d}.png")
        pixels.save(folder / "det/images" / f"{i:04d}.png")
        Image.fromarray(masks[i].astype(np.uint8)).save(folder / "seg/masks" / f"{i:04d}.png")
        coco["images"].append({"id": i, "file_name": f"{i:04d}.png", "width": SIZE, "height": SIZE})
        for klass, x1, y1, x2, y2 in boxes[i].tolist():
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i, "category_id": int(klass),
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    (folder / "det/instances.json").write_text(json.dumps(coco))
    np.savez(folder / "eval.npz", input=images)
    calib, _, _ = make_shapes(64, seed + 100)
    np.savez(folder / "calib.npz", input=calib)
    return {"seg": folder / "seg", "det": folder / "det/instances.json", "eval": folder / "eval.npz",
            "calib": folder / "calib.npz", "images": folder / "det/images"}


def _register() -> None:
    from edgekit.zoo import ZooEntry, register

    spec = [TensorSpec(INPUT_NAME, INPUT_SHAPE, "float32", "nchw")]
    register(ZooEntry("unet-shapes", "two-level U-Net trained on drawn shapes, 3-class logits 1x3x64x64 "
                      "(Dice/mIoU)", "segmentation", spec, ["logits"], 60_691, 20_791_296,
                      "edgekit.zoo.shapes:trained_segmenter"), trained_segmenter)
    register(ZooEntry("yolo-shapes", "YOLO-style detector trained on drawn shapes, decoded rows 1x64x7 "
                      "(x, y, w, h, obj, 2 classes; mAP)", "detection", spec, ["detections"], 72_247, 9_613_312,
                      "edgekit.zoo.shapes:trained_detector"), trained_detector)


_register()
