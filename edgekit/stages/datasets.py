"""Evaluation data in the formats users already have, as calibration readers that carry labels.

- one `.npz` with a batch axis: an array per model input (`input` for a one-input model) + optional `labels`;
- a COCO JSON (detection): `--eval annotations.json`, images found beside it (or in `images/`); labels are
  rows class, x1, y1, x2, y2 in the model input's pixels (plain resize, no letterbox);
- images + mask PNGs (segmentation): a folder with `images/` and `masks/` (same file stem), masks resized
  nearest to the input size, pixel values are class ids;
- images + `labels.csv` (`file,label`; label a class id or a class name) or the ImageFolder layout
  (one sub-folder per class, sorted names -> ids 0..K-1) for classification.

Everything a file names is data: paths resolve inside the data set's folder (no `..`, no symlink out),
numbers are bounded, object arrays are never unpickled, and each problem is one BadInputError line naming
the file. `open_data` tries these formats, then the plain sources of `edgekit.stages.calibration`.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInputError
from edgekit.specs import Preprocess, TensorSpec
from edgekit.stages.calibration import (
    IMAGE_SUFFIXES,
    CalibrationReader,
    _image_size,
    load_image,
    open_source,
)

MAX_JSON_BYTES = 256 << 20  # a COCO file larger than this is not an eval set
MAX_CSV_BYTES = 64 << 20
MAX_BOXES_PER_IMAGE = 10_000
MAX_COORDINATE = 1e6  # pixels
MAX_CLASS_ID = 1 << 20
MAX_MASK_PIXELS = 1 << 26

Sample = dict[str, np.ndarray]


def inside(root: Path, name: Any, where: Path, what: str = "file") -> Path:
    """`root/name`, refused unless it is a plain relative name that stays inside `root` (symlinks resolved)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise BadInputError(f"{what} name must be a non-empty string, got {name!r}", path=where)
    candidate = Path(name)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise BadInputError(f"{what} {name!r} leaves the data set folder", path=where,
                            hint="names are relative to the data set folder, without '..'")
    real_root = root.resolve()
    resolved = (root / candidate).resolve()
    if real_root != resolved and real_root not in resolved.parents:
        raise BadInputError(f"{what} {name!r} resolves outside the data set folder (symlink?)", path=where)
    if not resolved.is_file():
        raise BadInputError(f"{what} {name!r} does not exist", path=where, hint=f"looked in {root}")
    return resolved


def _number(value: Any, where: Path, what: str, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)) or \
            not low <= float(value) <= high:
        raise BadInputError(f"{what} must be a number from {low:g} to {high:g}, got {value!r}", path=where)
    return float(value)


def _single_input(inputs: list[TensorSpec], where: Path) -> TensorSpec:
    if len(inputs) != 1:
        raise BadInputError(f"an image data set feeds one input, the model has {len(inputs)}", path=where,
                            hint="use one .npz with an array per input name")
    return inputs[0]


# ------------------------------------------------------------------------------ one .npz, batch axis


class NpzBatchReader(CalibrationReader):
    """One `.npz` whose arrays have the samples on axis 0: model input names (or `input`) and `labels`."""

    def __init__(self, path: Path, inputs: list[TensorSpec], **kw: Any):
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise BadInputError(f"cannot read .npz ({type(exc).__name__}: {str(exc)[:160]})", path=path,
                                hint="numpy.savez(file, input=N x ..., labels=N x ...); object arrays are refused"
                                ) from None
        names = [s.name for s in inputs]
        if len(names) == 1 and names[0] not in arrays and "input" in arrays:
            arrays[names[0]] = arrays.pop("input")
        missing = [n for n in names if n not in arrays]
        if missing:
            raise BadInputError(f"no array for model input(s) {missing}; the file has {sorted(arrays)}", path=path,
                                hint="name arrays after the model inputs (or `input` for one input), samples on axis 0")
        labels = arrays.get("labels")
        counts = {n: arrays[n].shape[0] if arrays[n].ndim else 0 for n in names}
        if labels is not None:
            counts["labels"] = labels.shape[0] if labels.ndim else 0
        for key in [*names, *(["labels"] if labels is not None else [])]:
            if not np.issubdtype(arrays[key].dtype, np.number) and arrays[key].dtype != np.bool_:
                raise BadInputError(f"array {key!r} holds {arrays[key].dtype}, not numbers", path=path)
        if len(set(counts.values())) != 1 or 0 in counts.values():
            raise BadInputError(f"arrays disagree on the number of samples (axis 0): {counts}", path=path,
                                hint="every array holds the same N samples on axis 0")
        super().__init__(inputs, f"{next(iter(counts.values()))} sample(s) in {path.name}", **kw)
        self.path = path
        self.arrays = {n: arrays[n] for n in names}
        self.labels = labels
        self.has_labels = labels is not None
        self.count = next(iter(counts.values()))

    def _known_size(self) -> int:
        return self.count

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        for i in range(self.count):
            label = None if self.labels is None else self.labels[i:i + 1]
            yield f"{self.path}[{i}]", {n: a[i:i + 1] for n, a in self.arrays.items()}, label


# ------------------------------------------------------------------------------ images + labels


class LabelledImageReader(CalibrationReader):
    """Images with one label array each (class id, box rows or a mask), decoded and preprocessed lazily."""

    def __init__(self, description: str, files: list[Path], labels: list[Any], inputs: list[TensorSpec],
                 preprocess: Preprocess, where: Path, **kw: Any):
        super().__init__(inputs, description, **kw)
        self.spec = _single_input(inputs, where)
        self.files = files
        self.label_of = labels
        self.preprocess = preprocess
        self.size = _image_size(self.spec, preprocess, where)
        self.has_labels = True

    def _label(self, index: int) -> np.ndarray:
        return np.asarray(self.label_of[index])

    def _known_size(self) -> int:
        return len(self.files)

    def _window(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        return self._pairs(range(len(self.files))[self._start:self._stop])

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        return self._pairs(range(len(self.files)))

    def _pairs(self, indices: Iterable[int]) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        for i in indices:
            file = self.files[i]
            yield str(file), {self.spec.name: load_image(file, self.preprocess, self.size)}, self._label(i)


class MaskReader(LabelledImageReader):
    """Segmentation: the mask of each image read as class ids and resized (nearest) to the input size."""

    def _label(self, index: int) -> np.ndarray:
        return read_mask(self.label_of[index], self.size)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask image as (1, H, W) int64 class ids (palette/grey values), resized nearest to `size`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > MAX_MASK_PIXELS:
                    raise BadInputError(f"mask is {image.width}x{image.height} pixels, over the limit", path=path)
                if image.mode not in ("L", "P", "1", "I", "I;16"):
                    image = image.convert("L")
                image = image.resize((size[1], size[0]), Image.Resampling.NEAREST)
                array = np.asarray(image)
    except BadInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        raise BadInputError(f"unreadable mask ({type(exc).__name__})", path=path,
                            hint="masks are single-channel PNGs whose values are class ids") from None
    if array.ndim != 2:
        raise BadInputError(f"mask has {array.ndim} dimensions, expected a single-channel image", path=path)
    return array.astype(np.int64)[None]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _contained(root: Path, files: Iterable[Path], where: Path) -> list[Path]:
    real = root.resolve()
    out = []
    for file in files:
        resolved = file.resolve()
        if real not in resolved.parents:
            raise BadInputError(f"{file.name} resolves outside the data set folder (symlink?)", path=file)
        out.append(file)
    return out


def open_masks(folder: Path, inputs: list[TensorSpec], pre: Preprocess, **kw: Any) -> MaskReader:
    images = _contained(folder, _images(folder / "images"), folder)
    masks = {p.relative_to(folder / "masks").with_suffix("").as_posix(): p
             for p in _contained(folder, _images(folder / "masks"), folder)}
    pairs = []
    for image in images:
        key = image.relative_to(folder / "images").with_suffix("").as_posix()
        if key not in masks:
            raise BadInputError(f"image {image.name} has no mask", path=folder / "masks",
                                hint="one mask per image, same name (any image suffix, e.g. .png)")
        pairs.append((image, masks[key]))
    if not pairs:
        raise BadInputError("no images under images/", path=folder)
    return MaskReader(f"{len(pairs)} image(s) + masks in {folder}", [p for p, _ in pairs], [m for _, m in pairs],
                      inputs, pre, folder, **kw)


def open_csv(folder: Path, inputs: list[TensorSpec], pre: Preprocess, **kw: Any) -> LabelledImageReader:
    """`labels.csv` rows `file,label` (a header row is skipped); labels are ids, or names mapped sorted -> ids."""
    table = folder / "labels.csv"
    if table.stat().st_size > MAX_CSV_BYTES:
        raise BadInputError("labels.csv is too large", path=table)
    try:
        rows = list(csv.reader(table.read_text(encoding="utf-8").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"cannot read labels.csv ({type(exc).__name__})", path=table) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().lower() in ("file", "filename", "image", "path"):
        rows = rows[1:]
    if not rows:
        raise BadInputError("labels.csv has no rows", path=table, hint="rows: file,label")
    for n, row in enumerate(rows, 1):
        if len(row) != 2:
            raise BadInputError(f"row {n} has {len(row)} fields, expected file,label", path=table)
    raw = [r[1].strip() for r in rows]
    numeric = all(v.lstrip("-").isdigit() for v in raw)
    names = sorted(set(raw))
    labels = []
    for value in raw:
        ident = int(value) if numeric else names.index(value)
        if not 0 <= ident <= MAX_CLASS_ID:
            raise BadInputError(f"class id {value} out of range 0..{MAX_CLASS_ID}", path=table)
        labels.append(np.asarray([ident], np.int64))
    files = [inside(folder, r[0].strip(), table, "image") for r in rows]
    return LabelledImageReader(f"{len(files)} image(s) listed in {table}", files, labels, inputs, pre, folder, **kw)


def open_image_folder(folder: Path, classes: list[Path], inputs: list[TensorSpec], pre: Preprocess,
                      **kw: Any) -> LabelledImageReader:
    files, labels = [], []
    for ident, sub in enumerate(classes):
        for image in _contained(folder, _images(sub), folder):
            files.append(image)
            labels.append(np.asarray([ident], np.int64))
    names = ", ".join(f"{i}={c.name}" for i, c in enumerate(classes[:6]))
    return LabelledImageReader(f"{len(files)} image(s) in {len(classes)} class folders of {folder} ({names}"
                               f"{', ...' if len(classes) > 6 else ''})", files, labels, inputs, pre, folder, **kw)


def _imagefolder_classes(folder: Path) -> list[Path] | None:
    """Sub-folders holding images, with no loose images beside them: the ImageFolder layout (2+ classes)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return None
    classes = sorted(p for p in entries if p.is_dir() and _images(p))
    return classes if len(classes) >= 2 else None


# ------------------------------------------------------------------------------ COCO detection


def open_coco(path: Path, inputs: list[TensorSpec], pre: Preprocess, **kw: Any) -> LabelledImageReader:
    """COCO instances JSON -> images with box rows (class, x1, y1, x2, y2) scaled to the model input."""
    if path.stat().st_size > MAX_JSON_BYTES:
        raise BadInputError(f"COCO file is over {MAX_JSON_BYTES >> 20} MB", path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadInputError(f"not valid JSON ({type(exc).__name__})", path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
            not isinstance(data.get("annotations", []), list):
        raise BadInputError("not a COCO file: needs `images` and `annotations` lists", path=path)
    spec = _single_input(inputs, path)
    height, width = _image_size(spec, pre, path)
    root = path.parent
    images: dict[int, tuple[Path, float, float]] = {}
    for n, item in enumerate(data["images"]):
        if not isinstance(item, dict):
            raise BadInputError(f"images[{n}] is not an object", path=path)
        ident = int(_number(item.get("id"), path, f"images[{n}].id", low=0, high=2**62))
        name = item.get("file_name")
        if isinstance(name, str) and not (root / name).exists() and (root / "images" / name).exists():
            name = f"images/{name}"
        file = inside(root, name, path, "image")
        w = _number(item.get("width"), path, f"images[{n}].width", low=1, high=MAX_COORDINATE)
        h = _number(item.get("height"), path, f"images[{n}].height", low=1, high=MAX_COORDINATE)
        images[ident] = (file, width / w, height / h)
    categories = sorted({int(_number(c.get("id"), path, "categories[].id", low=0, high=MAX_CLASS_ID))
                         for c in data.get("categories", []) if isinstance(c, dict)})
    contiguous = categories == list(range(len(categories)))
    boxes: dict[int, list[list[float]]] = {i: [] for i in images}
    for n, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            raise BadInputError(f"annotations[{n}] is not an object", path=path)
        if ann.get("iscrowd"):
            continue
        image_id = int(_number(ann.get("image_id"), path, f"annotations[{n}].image_id", low=0, high=2**62))
        if image_id not in images:
            raise BadInputError(f"annotations[{n}] names image_id {image_id}, which is not in `images`", path=path)
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise BadInputError(f"annotations[{n}].bbox must be [x, y, w, h]", path=path)
        x, y, w, h = (_number(v, path, f"annotations[{n}].bbox", low=0 if i >= 2 else -MAX_COORDINATE,
                              high=MAX_COORDINATE) for i, v in enumerate(bbox))
        category = int(_number(ann.get("category_id"), path, f"annotations[{n}].category_id", low=0,
                               high=MAX_CLASS_ID))
        if categories and category not in categories:
            raise BadInputError(f"annotations[{n}].category_id {category} is not in `categories`", path=path)
        klass = category if contiguous or not categories else categories.index(category)
        _, sx, sy = images[image_id]
        boxes[image_id].append([klass, x * sx, y * sy, (x + w) * sx, (y + h) * sy])
        if len(boxes[image_id]) > MAX_BOXES_PER_IMAGE:
            raise BadInputError(f"image {image_id} has over {MAX_BOXES_PER_IMAGE} boxes", path=path)
    order = sorted(images)
    if not order:
        raise BadInputError("COCO file lists no images", path=path)
    labels = [np.asarray(boxes[i], np.float64).reshape(-1, 5) for i in order]
    return LabelledImageReader(f"{len(order)} image(s) of {path.name} (COCO boxes)", [images[i][0] for i in order],
                               labels, inputs, pre, path, **kw)


# ------------------------------------------------------------------------------ the one opener


def open_data(
    source: Any,
    inputs: list[TensorSpec],
    *,
    preprocess: Preprocess | None = None,
    allow_code: bool = False,
    limit: int | None = None,
    validate: bool = True,
) -> CalibrationReader:
    """Open calibration/eval data in any supported format (above), else as `calibration.open_source` does."""
    if isinstance(source, (str, Path)) and not str(source).startswith("py:") and str(source) != "synthetic":
        path = Path(source)
        pre = preprocess or Preprocess()
        window = {"stop": limit}
        reader: CalibrationReader | None = None
        if path.is_file() and path.suffix.lower() == ".npz":
            reader = NpzBatchReader(path, inputs, **window)
        elif path.is_file() and path.suffix.lower() == ".json":
            reader = open_coco(path, inputs, pre, **window)
        elif path.is_dir() and (path / "labels.csv").is_file():
            reader = open_csv(path, inputs, pre, **window)
        elif path.is_dir() and (path / "images").is_dir() and (path / "masks").is_dir():
            reader = open_masks(path, inputs, pre, **window)
        elif path.is_dir() and (classes := _imagefolder_classes(path)) is not None:
            reader = open_image_folder(path, classes, inputs, pre, **window)
        if reader is not None:
            if validate:
                reader.validate()
            return reader
    return open_source(source, inputs, preprocess=preprocess, allow_code=allow_code, limit=limit, validate=validate)


__all__ = ["LabelledImageReader", "MaskReader", "NpzBatchReader", "inside", "open_coco", "open_csv", "open_data",
           "open_image_folder", "open_masks", "read_mask"]
