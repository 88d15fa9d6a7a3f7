"""Calibration and evaluation data: one tiny reader protocol over several sources.

A reader is a re-iterable of `dict[input name, np.ndarray]` with `len()`, `.description` and
`.synthetic` (ORT's `CalibrationDataReader.get_next()` habit, without its one-shot state). Sources:

- a folder of `.npy` files (one sample each; single-input models) or `.npz` files (one array per
  input name; an optional `labels` array is kept aside for task accuracy),
- a folder of images (Pillow) with `Preprocess` (size, mean/std in pixel units, layout, grayscale),
- `py:module:function` (or `py:path/file.py:function`): a callable returning an iterable of input
  dicts. It runs user code, so it needs `allow_code=True` (CLI `--trust-code`),
- `synthetic`: seeded random inputs, flagged as not valid for accuracy,
- from Python, any re-iterable of input dicts (a list; an iterator is read once and kept).

`open_source` validates every sample (shape, dtype, NaN/Inf, readability) against the model inputs
before any work starts, streaming one sample at a time, so a bad file fails fast with its name and
memory stays bounded. Samples are produced lazily again on every iteration.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInputError
from edgekit.onnxio import check_input_bytes
from edgekit.plugins import load_user_callable
from edgekit.specs import Preprocess, TensorSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ARRAY_SUFFIXES = (".npy", ".npz")
LABELS_KEY = "labels"
SYNTHETIC = "synthetic"
DEFAULT_SYNTHETIC_SAMPLES = 100

Sample = dict[str, np.ndarray]


class CalibrationReader:
    """Base reader: subclasses yield `(source name, inputs, labels or None)` from `_iter_impl`.

    The public iteration applies the sample window (`limit`, `subset`) and the shape fix-up once, so
    each source stays a few lines.
    """

    synthetic: bool = False

    def __init__(self, inputs: list[TensorSpec], description: str, *, start: int = 0, stop: int | None = None):
        self.inputs = list(inputs)
        self.description = description
        self._start, self._stop = start, stop
        self._count: int | None = None
        self.has_labels = False

    # -- protocol -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Sample]:
        for _, sample, _ in self.iter_named():
            yield sample

    def __len__(self) -> int:
        if self._count is None:
            total = self._known_size()
            if total is not None:
                stop = total if self._stop is None else min(total, self._stop)
                self._count = max(0, stop - self._start)
            else:
                self._count = sum(1 for _ in self._window())
        return self._count

    def iter_labeled(self) -> Iterator[tuple[Sample, np.ndarray | None]]:
        """Samples with their labels (None when the source has none)."""
        for _, sample, labels in self.iter_named():
            yield sample, labels

    def iter_named(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        for name, raw, labels in self._window():
            yield name, conform(raw, self.inputs, name), labels

    def subset(self, start: int, stop: int | None) -> CalibrationReader:
        """A view on samples [start, stop) of this reader's window (same source, nothing loaded)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        base = self._start
        clone._start = base + start
        clone._stop = None if stop is None else base + stop
        if self._stop is not None:
            clone._stop = self._stop if clone._stop is None else min(clone._stop, self._stop)
        clone._count = None
        return clone

    def validate(self) -> int:
        """Load every sample once (streaming) and check it; returns the count. Raises BadInputError."""
        count = 0
        for name, sample, _ in self.iter_named():
            for key, array in sample.items():
                if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
                    raise BadInputError(f"input {key!r} holds {bad} NaN/Inf value(s)", path=name,
                                        hint="remove or fix this sample; calibration needs finite data")
            count += 1
        if count == 0:
            raise BadInputError("no samples found", path=self.description,
                                hint=f"put {', '.join(ARRAY_SUFFIXES)} or image files there")
        self._count = count
        return count

    # -- for subclasses ---------------------------------------------------------------------------
    def _window(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        return islice(self._iter_impl(), self._start, self._stop)

    def _known_size(self) -> int | None:
        """Number of samples without reading them, when the source knows it (file lists)."""
        return None

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        raise NotImplementedError


def conform(raw: dict[str, Any], inputs: list[TensorSpec], where: str) -> Sample:
    """Check names, shapes and dtypes of one sample against the model inputs; add a missing batch dim of 1."""
    names = [s.name for s in inputs]
    missing = [n for n in names if n not in raw]
    if missing:
        raise BadInputError(f"sample lacks model input(s) {missing}; it has {sorted(raw)}", path=where,
                            hint=f"name the arrays after the model inputs: {names}")
    out: Sample = {}
    for spec in inputs:
        array = np.asarray(raw[spec.name])
        want = spec.numpy_dtype()
        lead = spec.shape[0] if spec.shape else None
        if array.ndim == len(spec.shape) - 1 and (lead == 1 or not isinstance(lead, int)):
            array = array[None]  # a sample saved without its batch dim
        expected = tuple(spec.shape)
        ok = array.ndim == len(expected) and all(
            not isinstance(d, int) or d < 0 or d == got for d, got in zip(expected, array.shape, strict=False))
        if not ok:
            shown = "(" + ", ".join(str(d) for d in expected) + ")"
            raise BadInputError(f"input {spec.name!r}: expected shape {shown}, found {tuple(array.shape)}",
                                path=where, hint="resize/reshape the sample (or use --size for images)")
        if array.dtype != want:
            same_kind = (np.issubdtype(array.dtype, np.floating) and np.issubdtype(want, np.floating)) or (
                np.issubdtype(array.dtype, np.integer) and np.issubdtype(want, np.integer))
            if not same_kind:
                raise BadInputError(f"input {spec.name!r}: expected dtype {want}, found {array.dtype}", path=where,
                                    hint=f"save the sample as {want}")
            array = array.astype(want)
        out[spec.name] = np.asarray(array, order="C")  # keeps a 0-d input (silero-vad's `sr`) 0-d
    return out


class _FileListReader(CalibrationReader):
    """A reader over a sorted list of files, one sample each; subclasses decode one file in `_read`."""

    files: list[Path]

    def _known_size(self) -> int:
        return len(self.files)

    def _window(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        return self._read(self.files[self._start:self._stop])

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        return self._read(self.files)

    def _read(self, files: list[Path]) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        raise NotImplementedError


SAMPLES_ORIGIN = ".edgekit-samples.json"  # written beside samples an edgekit stage materialised (hidden: not a sample)


def read_samples_origin(folder: Path) -> tuple[str, bool] | None:
    """(description, synthetic) of samples an edgekit stage wrote, or None for a user's folder.

    Why: the pipeline stores seeded random samples as .npz files; read back as "N array files in <cache
    path>" they would be reported as real data. The marker can only describe the samples, never run code.
    """
    path = folder / SAMPLES_ORIGIN
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"unreadable samples record ({type(exc).__name__})", path=path,
                            hint="delete it: it only describes the samples") from None
    if not isinstance(data, dict) or not isinstance(data.get("description"), str) \
            or not isinstance(data.get("synthetic"), bool):
        raise BadInputError("samples record needs a text `description` and a true/false `synthetic`", path=path,
                            hint="delete it: it only describes the samples")
    return data["description"][:200], data["synthetic"]


class ArrayFolderReader(_FileListReader):
    """A folder of `.npy` (single input) and/or `.npz` (one array per input, optional `labels`) files."""

    def __init__(self, folder: Path, files: list[Path], inputs: list[TensorSpec], **kw: Any):
        super().__init__(inputs, f"{len(files)} array file(s) in {folder}", **kw)
        self.files = files
        self.has_labels = any(f.suffix == ".npz" for f in files)  # refined while reading
        origin = read_samples_origin(folder)
        if origin is not None:  # samples an edgekit stage materialised: say what they are, not where they lie
            self.description, self.synthetic = origin

    def _read(self, files: list[Path]) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        for file in files:
            if file.suffix == ".npy":
                if len(self.inputs) != 1:
                    raise BadInputError(f".npy holds one array but the model has {len(self.inputs)} inputs",
                                        path=file, hint="use .npz files with one array per input name")
                yield str(file), {self.inputs[0].name: load_arrays(file)[""]}, None
            else:
                raw = load_arrays(file)
                labels = raw.pop(LABELS_KEY, None)
                if len(self.inputs) == 1 and self.inputs[0].name not in raw and len(raw) == 1:
                    raw = {self.inputs[0].name: next(iter(raw.values()))}  # one unnamed array (arr_0)
                yield str(file), raw, labels


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an `.npz` by name (an `.npy`: its one array under ""), never unpickling.

    Why: an `.npz` may hold pickled objects, and unpickling runs code from the file; an object array
    (or a file numpy cannot read) is one line of bad input naming the file, not a traceback.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise BadInputError(f"cannot read array file ({type(exc).__name__}: {exc})", path=path,
                            hint="save numeric arrays with numpy.save / numpy.savez (pickled objects are never read)"
                            ) from None


class ImageFolderReader(_FileListReader):
    """A folder (searched recursively) of images, decoded with Pillow and preprocessed."""

    def __init__(self, folder: Path, files: list[Path], inputs: list[TensorSpec], preprocess: Preprocess, **kw: Any):
        super().__init__(inputs, f"{len(files)} image(s) in {folder}", **kw)
        if len(inputs) != 1:
            raise BadInputError(f"an image folder feeds one input, the model has {len(inputs)}", path=folder,
                                hint="use .npz files with one array per input name")
        self.files = files
        self.preprocess = preprocess
        self.size = _image_size(inputs[0], preprocess, folder)

    def _read(self, files: list[Path]) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        for file in files:
            yield str(file), {self.inputs[0].name: load_image(file, self.preprocess, self.size)}, None


def _image_size(spec: TensorSpec, pre: Preprocess, where: Path) -> tuple[int, int]:
    if pre.layout not in ("nchw", "nhwc"):
        raise BadInputError(f"unknown layout {pre.layout!r}", path="--layout", hint="nchw or nhwc")
    if len(spec.shape) != 4:
        raise BadInputError(f"model input {spec.name!r} has shape {spec.shape}, not an image batch (4-D)",
                            path=where, hint="use a folder of .npy/.npz arrays instead")
    if pre.size is not None:
        h, w = pre.size
    else:
        h, w = (spec.shape[2], spec.shape[3]) if pre.layout == "nchw" else (spec.shape[1], spec.shape[2])
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
            raise BadInputError(f"model input {spec.name!r} has dynamic height/width", path="--size",
                                hint="give --size H,W")
    channels = 1 if pre.grayscale else 3
    # one decoded, resized image must fit an input: refuse `--size 100000,100000` before allocating it
    layout_shape = (1, channels, h, w) if pre.layout == "nchw" else (1, h, w, channels)
    check_input_bytes(spec, layout_shape, argument="--size")
    return h, w


def load_image(path: str | Path, pre: Preprocess, size: tuple[int, int]) -> np.ndarray:
    """Decode, resize (bilinear), normalize ((x - mean) / std, pixel units), lay out as 1xCxHxW or 1xHxWxC."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: a bomb either way, refused
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image = image.convert("L" if pre.grayscale else "RGB")
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.float32)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInputError(f"image is larger than {Image.MAX_IMAGE_PIXELS} pixels (a decompression bomb?)",
                            path=path, hint="remove it, or downscale it before calibrating") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadInputError(f"unreadable image ({type(exc).__name__})", path=path,
                            hint="remove it or replace it with a valid image") from None
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    mean = np.asarray(pre.mean[:channels] if len(pre.mean) >= channels else pre.mean[:1] * channels, np.float32)
    std = np.asarray(pre.std[:channels] if len(pre.std) >= channels else pre.std[:1] * channels, np.float32)
    if not (np.all(np.isfinite(std)) and np.all(std != 0) and np.all(np.isfinite(mean))):
        raise BadInputError(f"mean {pre.mean} / std {pre.std} must be finite, std non-zero", path="--std",
                            hint="std values are divisors, in pixel units")
    array = (array - mean) / std
    if pre.layout == "nchw":
        array = array.transpose(2, 0, 1)
    return np.ascontiguousarray(array[None])


class CallableReader(CalibrationReader):
    """`py:module:function`: the function is called again for every pass and returns an iterable of dicts."""

    def __init__(self, ref: str, func: Callable[[], Any], inputs: list[TensorSpec], **kw: Any):
        super().__init__(inputs, f"samples from {ref}", **kw)
        self.func = func
        self.ref = ref

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        produced = self.func()
        if produced is None or isinstance(produced, dict):
            raise BadInputError("the callable must return an iterable of input dicts", path=self.ref)
        return _dict_items(produced, self.ref)


def _dict_items(items: Iterable[Any], where: str) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
    """Samples given as Python dicts (from a callable or an iterable), labels split off."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInputError(f"item {i} is {type(item).__name__}, expected a dict of input arrays", path=where)
        raw = dict(item)
        labels = raw.pop(LABELS_KEY, None)
        yield f"{where}[{i}]", raw, labels


class IterableReader(CalibrationReader):
    """Any re-iterable of input dicts given from Python (a list, another reader); one-shot iterators are listed."""

    def __init__(self, items: Iterable[Any], inputs: list[TensorSpec], limit: int | None = None, **kw: Any):
        if iter(items) is items:  # a generator/iterator can only be read once: keep the first `limit`
            items = list(islice(items, limit))
        super().__init__(inputs, str(getattr(items, "description", f"{type(items).__name__} of input dicts")),
                         stop=limit, **kw)
        self.items = items
        self.synthetic = bool(getattr(items, "synthetic", False))

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        return _dict_items(self.items, self.description)


class SyntheticReader(CalibrationReader):
    """Seeded random inputs. Useful to exercise the pipeline; the resulting INT8 accuracy means nothing."""

    synthetic = True

    def __init__(self, inputs: list[TensorSpec], count: int, **kw: Any):
        super().__init__(inputs, "synthetic random samples (NOT valid for accuracy)", **kw)
        self.count = count

    def _known_size(self) -> int:
        return self.count

    def _iter_impl(self) -> Iterator[tuple[str, Sample, np.ndarray | None]]:
        from edgekit.onnxio import random_inputs

        for i in range(self.count):
            yield f"synthetic[{i}]", random_inputs(self.inputs, seed=1000 + i), None


def _load_callable(ref: str) -> Callable[[], Any]:
    """The user callable behind `py:...` (one loader for data sources and metrics: `edgekit.plugins`)."""
    return load_user_callable(ref, argument="--calib")


def open_source(
    source: str | Path | CalibrationReader | Iterable[dict[str, np.ndarray]],
    inputs: list[TensorSpec],
    *,
    preprocess: Preprocess | None = None,
    allow_code: bool = False,
    limit: int | None = None,
    validate: bool = True,
) -> CalibrationReader:
    """Open a calibration/eval source for a model with `inputs`, validated before any work.

    `limit` keeps the first N samples (sorted file order). Raises BadInputError for a missing or empty
    folder, a sample whose shape/dtype does not match (naming the file), NaN/Inf, unreadable images,
    and `py:` sources without `allow_code`.
    """
    if limit is not None and limit < 1:
        raise BadInputError(f"sample limit must be >= 1, got {limit}", path="--calib-samples")
    if isinstance(source, CalibrationReader):
        reader = source if limit is None else source.subset(0, limit)
    elif not isinstance(source, (str, Path)) and hasattr(source, "__iter__"):
        reader = IterableReader(source, inputs, limit)
    else:
        reader = _open(str(source), inputs, preprocess or Preprocess(), allow_code, limit)
    if validate:
        reader.validate()
    return reader


def _open(text: str, inputs: list[TensorSpec], pre: Preprocess, allow_code: bool,
          limit: int | None) -> CalibrationReader:
    if not inputs:
        raise BadInputError("the model has no inputs to feed", path=text)
    window = {"stop": limit}
    if text == SYNTHETIC:
        return SyntheticReader(inputs, limit or DEFAULT_SYNTHETIC_SAMPLES)
    if text.startswith("py:"):
        if not allow_code:
            raise BadInputError("a py: source runs your code", path=text,
                                hint="pass --trust-code (allow_code=True in Python) if you trust it")
        return CallableReader(text, _load_callable(text), inputs, **window)
    folder = Path(text)
    if not folder.exists():
        raise BadInputError("no such folder", path=folder,
                            hint="give a folder of .npy/.npz/images, 'synthetic' or py:module:function")
    if folder.is_file():
        raise BadInputError("expected a folder of samples, got a file", path=folder,
                            hint="put one sample per .npy/.npz/image file in a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    arrays = [p for p in files if p.suffix.lower() in ARRAY_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if arrays and images:
        raise BadInputError(f"folder mixes {len(arrays)} array file(s) and {len(images)} image(s)", path=folder,
                            hint="keep one kind of sample per folder")
    if arrays:
        return ArrayFolderReader(folder, arrays, inputs, **window)
    if images:
        return ImageFolderReader(folder, images, inputs, pre, **window)
    raise BadInputError("folder holds no samples (.npy, .npz or images)" if not files else
                        f"folder holds {len(files)} file(s) but none is .npy, .npz or an image", path=folder,
                        hint="one sample per file: .npy/.npz arrays or images")


__all__ = [
    "ArrayFolderReader", "CalibrationReader", "CallableReader", "ImageFolderReader", "IterableReader", "Preprocess",
    "SyntheticReader", "conform", "load_image", "open_source",
]
