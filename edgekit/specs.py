"""Tensor specs: names, shapes (with named dynamic dims), dtypes and layout.

Parsing lives here so that `--input-shape images:1,3,640,640` means the same thing in every verb.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import BadInputError

Dim = int | str  # an int is fixed; a str names a dynamic dim ("batch", "height")

_DTYPES = {
    "float32", "float16", "bfloat16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool",
}
DTYPES = frozenset(_DTYPES)  # the dtype vocabulary, public (manifests are validated against it)
_SPEC_RE = re.compile(r"^(?P<name>[^:]+):(?P<dims>[^:]+)(?::(?P<dtype>[a-z0-9]+))?$")


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
        else:
            raise BadInputError(
                f"bad dim {raw!r} in {text!r}", path=argument, hint="dims are positive integers or names"
            )
    dtype = match["dtype"] or "float32"
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


def as_specs(shapes: list[TensorSpec] | list[str] | tuple | None) -> list[TensorSpec]:
    """Accept specs or their text form, so the Python API takes what the CLI takes."""
    if not shapes:
        return []
    return [s if isinstance(s, TensorSpec) else parse_input_shape(str(s)) for s in shapes]


@dataclass(frozen=True)
class Preprocess:
    """Image preprocessing, shared by calibration readers, recipes and NPU plans (AIPP, MagicMind)."""

    size: tuple[int, int] | None = None  # (height, width)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # in pixel units (0..255)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)  # in pixel units (0..255)
    layout: str = "nchw"
    grayscale: bool = False


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
