"""Tensor specs: names, shapes (with named dynamic dims), dtypes and layout.

Parsing lives here so that `--input-shape images:1,3,640,640` means the same thing in every verb.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import BadInputError

Dim = int | str  # an int is fixed; a str names a dynamic dim ("batch", "height")

_DTYPES = {
    "float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
}
DTYPES = frozenset(_DTYPES)  # the dtype vocabulary, public (manifests are validated against it)
DEFAULT_DTYPE = "float32"  # what `NAME:DIMS` without `:dtype` means
_SPEC_RE = re.compile(r"^(?P<name>[^:]+):(?P<dims>[^:]+)(?::(?P<dtype>[a-z0-9]+))?$")
# export's `h=12`: a dim named h that stays dynamic, traced and verified at 12
_SIZED_DIM_RE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<size>\S*)$")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output. `shape` entries are ints (fixed) or names (dynamic)."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    layout: str | None = None

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) and d >= 0 for d in self.shape)

    @property
    def dynamic_dims(self) -> dict[int, str]:
        """Axis -> name of every dim that is not a fixed int."""
        return {i: str(d) for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 0}

    def concrete_shape(self, overrides: dict[str, int] | None = None, default: int = 1) -> tuple[int, ...]:
        """Fill dynamic dims from `overrides` (by dim name), else with `default`."""
        overrides = overrides or {}
        return tuple(d if isinstance(d, int) and d >= 0 else overrides.get(str(d), default) for d in self.shape)

    def numpy_dtype(self) -> np.dtype:
        if self.dtype == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(data["name"], tuple(data["shape"]), data.get("dtype", "float32"), data.get("layout"))

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{self.name}:{dims}:{self.dtype}"


def parse_input_shape(text: str, *, argument: str = "--input-shape") -> TensorSpec:
    """Parse `NAME:1,3,224,224[:dtype]`; a dim may be a name (`batch`) to keep it dynamic."""
    match = _SPEC_RE.match(text.strip())
    if not match:
        raise BadInputError(
            f"cannot parse {text!r}", path=argument, hint="expected NAME:D0,D1,... e.g. images:1,3,640,640"
        )
    dims: list[Dim] = []
    for raw in match["dims"].split(","):
        raw = raw.strip()
        if re.fullmatch(r"\d+", raw):
            value = int(raw)
            if value == 0:
                raise BadInputError(f"zero-size dim in {text!r}", path=argument, hint="every dim must be >= 1")
            dims.append(value)
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw):
            dims.append(raw)
        elif _SIZED_DIM_RE.match(raw):
            raise BadInputError(f"a trace size ({raw}) in {text!r} is only for `edgekit export`", path=argument,
                                hint="here give the size itself, or the name alone to keep the dim dynamic")
        else:
            raise BadInputError(
                f"bad dim {raw!r} in {text!r}", path=argument, hint="dims are positive integers or names"
            )
    dtype = match["dtype"] or DEFAULT_DTYPE
    if dtype not in _DTYPES:
        raise BadInputError(f"unknown dtype {dtype!r} in {text!r}", path=argument, hint=f"one of {sorted(_DTYPES)}")
    return TensorSpec(match["name"].strip(), tuple(dims), dtype)


def parse_input_shapes(texts: list[str] | tuple[str, ...], *, argument: str = "--input-shape") -> list[TensorSpec]:
    specs = [parse_input_shape(t, argument=argument) for t in texts]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BadInputError(f"input {duplicates[0]!r} given twice", path=argument)
    return specs


def split_trace_sizes(texts: Sequence[str], *, argument: str = "--input-shape") -> tuple[list[str], dict[str, int]]:
    """`input:1,3,h=12,w=12` -> (`input:1,3,h,w`, {"h": 12, "w": 12}): dims that stay dynamic, and their trace size.

    Why: a fully convolutional net exported with dynamic H,W cannot be traced at the default size 1
    (a 3x3 kernel on a 1x1 image); export traces and verifies at the given size and keeps the dim named.
    """
    plain: list[str] = []
    sizes: dict[str, int] = {}
    for text in texts:
        match = _SPEC_RE.match(str(text).strip())
        if not match:
            plain.append(str(text))  # parse_input_shape reports it
            continue
        dims = []
        for raw in match["dims"].split(","):
            sized = _SIZED_DIM_RE.match(raw.strip())
            if not sized:
                dims.append(raw)
                continue
            name, size = sized["name"], sized["size"]
            if not re.fullmatch(r"\d+", size) or int(size) == 0:
                what = "zero-size" if re.fullmatch(r"0+", size) else "bad"
                raise BadInputError(f"{what} trace size {raw.strip()!r} in {text!r}", path=argument,
                                    hint="NAME=SIZE with SIZE >= 1, e.g. input:1,3,h=12,w=12")
            if sizes.setdefault(name, int(size)) != int(size):
                raise BadInputError(f"dim {name!r} given twice with different trace sizes in {text!r}", path=argument,
                                    hint="one size per dim name (name the dims apart: h=12,w=16)")
            dims.append(name)
        plain.append(f"{match['name']}:{','.join(dims)}" + (f":{match['dtype']}" if match["dtype"] else ""))
    return plain, sizes


def format_shapes(shapes: Mapping[str, Sequence[int]], sep: str = ", ") -> str:
    """`{"x": [1, 3, 224, 224]}` → "x:1x3x224x224": how a figure's input shapes are printed everywhere."""
    return sep.join(f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in shapes.items())


def as_specs(shapes: list[TensorSpec] | list[str] | tuple | None) -> list[TensorSpec]:
    """Accept specs or their text form, so the Python API takes what the CLI takes."""
    if not shapes:
        return []
    return [s if isinstance(s, TensorSpec) else parse_input_shape(str(s)) for s in shapes]


def check_normalization(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """Per-channel mean and std are finite numbers and std has no zero, or BadInputError naming the flag.

    Why: std divides every pixel (AIPP stores 1/std), so a 0 was a ZeroDivisionError deep in an NPU plan
    reported as "unsupported", and a NaN silently turned every input into NaN.
    """
    for flag, values in (("--mean", mean), ("--std", std)):
        if values is None:
            continue
        floats = [float(v) for v in values] if all(isinstance(v, numbers.Real) for v in values) else None
        if not floats or not all(math.isfinite(v) for v in floats) or (flag == "--std" and 0.0 in floats):
            raise BadInputError(f"{tuple(values)} is not a list of finite numbers{' without a 0' * (flag == '--std')}",
                                path=flag, hint="per-channel values in pixel units, e.g. 58.4,57.1,57.4")


@dataclass(frozen=True)
class Preprocess:
    """Image preprocessing, shared by calibration readers, recipes and NPU plans (AIPP, MagicMind)."""

    size: tuple[int, int] | None = None  # (height, width)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # in pixel units (0..255)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)  # in pixel units (0..255)
    layout: str = "nchw"
    grayscale: bool = False

    def __post_init__(self) -> None:
        check_normalization(self.mean, self.std)


# ---------------------------------------------------------------------------------------------
# Precision: the one vocabulary every verb, recipe and adapter uses

FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")
QUANT_PRECISIONS = ("int8", "mixed")
COMPILE_PRECISIONS = (*FLOAT_PRECISIONS, "int8")  # what one compile builds (mixed/auto are searches)
PRECISIONS = (*FLOAT_PRECISIONS, *QUANT_PRECISIONS, "auto")


def normalize_precision(
    text: str, *, argument: str = "--precision", allowed: tuple[str, ...] = PRECISIONS
) -> str:
    """`FP16`/` int8 ` -> `fp16`/`int8`; anything outside `allowed` is bad input naming the flag or key."""
    value = str(text).strip().lower()
    if value not in allowed:
        raise BadInputError(f"unknown precision {text!r}", path=argument, hint=f"one of {', '.join(allowed)}")
    return value


def resolve_precision(requested: str | None, model_is_quantized: bool, *, argument: str = "--precision") -> str:
    """The precision a compile builds: what was asked, else what the model already is.

    Why: a QDQ model *is* int8, so asking for nothing means int8 there (fp32 for a float model); only
    an explicit float precision on a quantized model is a contradiction (its weights are int8 already).
    """
    if requested is None:
        return "int8" if model_is_quantized else "fp32"
    precision = normalize_precision(requested, argument=argument)
    if model_is_quantized and precision in FLOAT_PRECISIONS:
        raise BadInputError(
            f"{precision} asked for a model that is already quantized (int8 weights and QDQ nodes)", path=argument,
            hint=f"leave {argument} out (or give int8) for this model, or give the float model for {precision}",
        )
    return precision
