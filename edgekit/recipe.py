"""Recipe schema: frozen pydantic dataclasses loaded from TOML, every error naming the file and key path.

A recipe says where the model comes from, which data calibrates and evaluates it, how to quantize,
which targets to build for and which budgets must hold. A recipe from someone else is data
(design.md, "Trust model"): unknown keys, wrong types, NaN/inf and out-of-range numbers are refused
at load time with one line `recipe.toml: targets[1].latency[0]: ...` (BadInputError, exit 2), and
`name` is one safe path component because it names the output folder. Relative paths are resolved
against the recipe file's folder; a key that names a file refuses a folder. Latency and accuracy
budgets are checked with the one grammar of `edgekit.checks.budgets`. Code (`factory =
"pkg.mod:fn"`, `py:` data sources) only runs when the recipe says `trust_code = true` *and* the
caller passes `trust_code=True`. The key reference is docs/recipes.md.

The classes are pydantic dataclasses (not BaseModels) so that they stay dataclasses for
`to_jsonable` and the stage cache, and positional construction in Python keeps working. Checks that
need the recipe file (relative paths, known targets, the strict name rule) run when a recipe is
loaded (a validation context is present); a Recipe built in Python gets the value checks, and a bad
value there is a BadInputError too.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    InstanceOf,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from edgekit.checks.budgets import AccuracyBudget, Decibels, Points, parse_budget, parse_regression
from edgekit.devices import check_name, parse_url
from edgekit.errors import BadInputError
from edgekit.schema import CONFIG, Table, first_error, invalid, loading_base, value_error
from edgekit.specs import PRECISIONS, Preprocess, TensorSpec, parse_input_shape
from edgekit.targets import all_profiles

__all__ = ["AccuracyBudget", "BenchSettings", "Budgets", "DataSource", "ModelSource", "PreprocessSettings",
           "QuantizeSettings", "Recipe", "TargetSettings", "find_recipe", "load_recipe", "parse_recipe",
           "shipped_recipes"]

DATA_KINDS = ("digits", "synthetic")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a recipe name: one path component, never a path
MAX_COUNT = 1_000_000  # samples, iterations, warm-up runs
MAX_THREADS = 4096
MAX_RECIPE_BYTES = 1 << 20
MAX_DEPTH = 32  # nesting of tables and lists in a recipe document


def _precision(value: str) -> str:
    if value not in PRECISIONS:
        raise ValueError(f"must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


Precision = Annotated[StrictStr, AfterValidator(_precision)]  # the vocabulary of edgekit.specs
Count = Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)]
Threads = Annotated[StrictInt, Field(ge=1, le=MAX_THREADS)]


def _latency(text: str) -> str:
    value_error(parse_budget, text, argument="")
    return text


LatencyBudget = Annotated[StrictStr, AfterValidator(_latency)]


def _regression(text: str) -> str:
    """A `max_regression` ("10%") for the A/B gate: a finite percentage above 0 and at most 1000 %."""
    if value_error(parse_regression, text, argument="") <= 0:
        raise ValueError(f"{text!r} must be above 0% (an interval has a width: 0% can never pass)")
    return text


def _document_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Recipe.calibration/eval are written under [data] in the file."""
    return ("data", *loc) if loc and loc[0] in ("calibration", "eval") else loc


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a recipe table at `loc` accepts (for the unknown-key message)."""
    if not loc:
        return sorted([*(f.name for f in dataclasses.fields(Recipe) if f.name not in _NOT_KEYS), "data"])
    if loc == ("data",):
        return ["calibration", "eval"]
    kind: Any = Recipe
    for part in (*loc, None):
        while get_origin(kind) in (typing.Union, types.UnionType, Annotated, tuple):  # X | None, tuple[X, ...]
            kind = next(a for a in get_args(kind) if a is not type(None) and a is not Ellipsis)
        if isinstance(part, str) and part != "data" and dataclasses.is_dataclass(kind):
            kind = typing.get_type_hints(kind, include_extras=True).get(part)
    return sorted(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else []


def _recipe_error(exc: ValidationError) -> str:
    return first_error(exc, rename=_document_loc, allowed_keys=_allowed_keys)


def _locate(base: Path, text: str) -> tuple[Path, str]:
    """`text` resolved against the recipe's folder, and what is there: file, folder or missing."""
    try:
        resolved = (base / text).resolve()
        kind = "folder" if resolved.is_dir() else "file" if resolved.is_file() else \
            "missing" if not resolved.exists() else "other"
    except (OSError, ValueError, RuntimeError) as exc:  # too long, NUL byte, symlink loop
        raise ValueError(f"cannot use path {text[:80]!r} ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    return resolved, kind


def _file(value: Any, info: ValidationInfo) -> Any:
    """A path key: relative to the recipe's folder, and it must be an existing file (not a folder)."""
    base = loading_base(info)
    if base is None or value is None:
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a path (a non-empty string), got {value!r}")
    resolved, kind = _locate(base, value)
    if kind == "folder":
        raise ValueError(f"{value!r} is a folder, not a file (looked at {resolved})")
    if kind != "file":
        raise ValueError(f"file {value!r} does not exist (looked at {resolved}; paths are relative to the recipe)")
    return resolved


FilePath = Annotated[Path | None, BeforeValidator(_file)]


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _pattern(pattern: str, expected: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"must be {expected}, got {value!r}")
        return value

    return check


_zoo_name = _pattern(NAME_RE.pattern, "a zoo model name (see `edgekit zoo`)")
_factory = _pattern(r"[\w.]+:[\w.]+", "'package.module:function' returning a torch.nn.Module")
_backend = _pattern(r"[\w.-]+(\s*,\s*[\w.-]+)*", "an adapter name, 'auto', or adapter names separated by commas")


def _spec(value: Any) -> Any:
    """`"x:1,3,224,224"` -> TensorSpec, by the one input-shape parser."""
    if isinstance(value, str):
        return value_error(parse_input_shape, value, argument="")
    if not isinstance(value, TensorSpec):
        raise ValueError(f"must be 'NAME:D0,D1,...' (e.g. 'input:1,3,224,224'), got {value!r}")
    return value


@dataclass(frozen=True, config=CONFIG)
class ModelSource(Table):
    """Exactly one of zoo / onnx / torchscript / factory (+ optional state-dict `weights`)."""

    zoo: Annotated[StrictStr, AfterValidator(_zoo_name)] | None = None
    onnx: FilePath = None
    torchscript: FilePath = None
    factory: Annotated[StrictStr, AfterValidator(_factory)] | None = None  # needs trust_code
    weights: FilePath = None  # state_dict for `factory` or `zoo` (torch.load weights_only=True)
    inputs: Annotated[tuple[Annotated[InstanceOf[TensorSpec], BeforeValidator(_spec)], ...],
                      BeforeValidator(_str_list)] = ()
    opset: Annotated[StrictInt, Field(ge=1, le=100)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self, info: ValidationInfo) -> ModelSource:
        given = [k for k in ("zoo", "onnx", "torchscript", "factory") if getattr(self, k) is not None]
        if len(given) != 1:
            raise invalid(info, ModelSource, "needs exactly one of zoo, onnx, torchscript, factory (got "
                          f"{', '.join(given) or 'none'})")
        if self.weights is not None and self.zoo is None and self.factory is None:
            raise invalid(info, ModelSource, "weights only applies with model.zoo or model.factory")
        if self.factory is not None and not self.inputs:
            raise invalid(info, ModelSource, "inputs is required with model.factory (e.g. ['input:1,3,224,224'])")
        return self

    @property
    def kind(self) -> str:
        for name in ("zoo", "onnx", "torchscript", "factory"):
            if getattr(self, name) is not None:
                return name
        return "none"

    @property
    def runs_code(self) -> bool:
        return self.factory is not None


@dataclass(frozen=True, config=CONFIG)
class DataSource(Table):
    """Calibration or evaluation data.

    `source`: `digits` (scikit-learn digits, generated locally), `synthetic` (random; not valid for
    accuracy), a path (folder of .npy/.npz, image folder, or one .npz with a `labels` array), or
    `py:module:function` (needs trust_code).
    """

    source: Annotated[StrictStr, Field(min_length=1, max_length=4096)]
    path: Path | None = None  # resolved path when `source` is a file or folder (set at load, not a key)
    split: Literal["train", "test"] = "test"  # digits: "train" or "test"
    samples: Count | None = None

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any, info: ValidationInfo) -> Any:
        """`eval = "digits"` is short for `{ source = "digits" }`; a path source is resolved and must exist."""
        base = loading_base(info)
        if base is None:
            return data
        if isinstance(data, str):
            data = {"source": data}
        if not isinstance(data, dict):
            raise ValueError(f"must be a data source (a string or a table), got {data!r}")
        if "path" in data:
            raise ValueError("unknown key path (write the path as `source`)")
        src = data.get("source")
        if isinstance(src, str) and src and src not in DATA_KINDS and not src.startswith("py:"):
            path, kind = _locate(base, src)
            if kind == "missing":
                raise ValueError(f"source {src!r} does not exist (looked at {path}; use 'digits', 'synthetic', "
                                 "or a path relative to the recipe file)")
            data = {**data, "path": path}
        return data

    @field_validator("source")
    @classmethod
    def _code_source(cls, value: str) -> str:
        if value.startswith("py:") and not re.fullmatch(r"py:[\w.]+:[\w.]+", value):
            raise ValueError(f"a code source is written 'py:package.module:function', got {value!r}")
        return value

    @property
    def runs_code(self) -> bool:
        return self.source.startswith("py:")


Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_str_list)]
LatencyBudgets = Annotated[tuple[LatencyBudget, ...], BeforeValidator(_str_list)]


@dataclass(frozen=True, config=CONFIG)
class QuantizeSettings(Table):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: StrictBool = True
    symmetric_activations: StrictBool = False
    exclude: Names = ()
    calib_samples: Count = 100
    max_drop: Points | None = None  # points; accuracy-aware mixed INT8: keep sensitive nodes in float until it holds
    min_sqnr: Decibels | None = None


def _device(spec: str) -> str:
    """A device name from devices.toml or an ssh:// URL (edgekit.devices), checked as the CLI checks --device."""
    try:
        parse_url(spec, source="device") if spec.startswith("ssh://") else check_name(spec, source="device")
    except BadInputError as exc:
        raise ValueError(exc.message) from None
    return spec


def _known_target(name: str, info: ValidationInfo) -> str:
    if loading_base(info) is not None and name not in (known := all_profiles()):
        raise ValueError(f"unknown target {name!r} (one of {', '.join(sorted(known))}; see `edgekit targets`)")
    return name


@dataclass(frozen=True, config=CONFIG)
class TargetSettings(Table):
    name: Annotated[StrictStr, Field(min_length=1, max_length=128), AfterValidator(_known_target)]
    backend: Annotated[StrictStr, AfterValidator(_backend)] = "auto"
    precision: Precision = "fp32"
    threads: Threads | None = None
    latency: LatencyBudgets = ()  # extra latency budgets for this target only
    adapter_options: dict[StrictStr, Any] = dataclasses.field(default_factory=dict, hash=False)
    optional: StrictBool = False  # a target skipped here (no toolchain, no device) does not fail the run
    device: Annotated[StrictStr, AfterValidator(_device)] | None = None  # bench on this device (edgekit.devices)
    # A/B regression gate (edgekit.checks.regression): this target's bundle timed side by side with OLD/
    baseline_bundle: Annotated[StrictStr, Field(min_length=1, max_length=4096)] | None = None
    max_regression: Annotated[StrictStr, AfterValidator(_regression)] | None = None  # "10%"; default 10 %

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        """`targets = ["cpu"]` is short for `[[targets]] name = "cpu"`."""
        return {"name": data} if isinstance(data, str) else data


@dataclass(frozen=True, config=CONFIG)
class Budgets(Table):
    latency: LatencyBudgets = ()
    accuracy: AccuracyBudget = dataclasses.field(default_factory=AccuracyBudget)


@dataclass(frozen=True, config=CONFIG)
class BenchSettings(Table):
    warmup: Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)] = 5
    iterations: Count = 50
    threads: Threads | None = None


Pixels = Annotated[StrictInt, Field(ge=1, le=65536)]
Channels = Annotated[tuple[Annotated[float, Field(strict=False)], ...], Field(min_length=1, max_length=64)]


@dataclass(frozen=True, config=CONFIG)
class PreprocessSettings(Preprocess, Table):
    """`[preprocess]`: a Preprocess whose sizes are positive ints and whose mean/std are finite (std != 0)."""

    size: tuple[Pixels, Pixels] | None = None  # (height, width)
    mean: Channels = (0.0, 0.0, 0.0)
    std: Channels = (1.0, 1.0, 1.0)
    layout: Literal["nchw", "nhwc"] = "nchw"
    grayscale: StrictBool = False

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or any(isinstance(v, (bool, str)) for v in value):
            raise ValueError(f"must be a list of numbers (pixel units, 0..255), got {value!r}")
        return value

    @field_validator("std")
    @classmethod
    def _no_zero(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v == 0 for v in value):
            raise ValueError(f"must not contain 0 (it divides), got {list(value)}")
        return value


_NOT_KEYS = ("path", "calibration", "eval")  # Recipe fields that are not top-level keys of a recipe file


@dataclass(frozen=True, config=CONFIG)
class Recipe(Table):
    name: StrictStr
    path: Path
    model: ModelSource
    targets: Annotated[tuple[TargetSettings, ...], Field(min_length=1, max_length=256)]
    description: Annotated[StrictStr, Field(max_length=10_000)] = ""
    trust_code: StrictBool = False
    simplify: StrictBool = True
    preprocess: PreprocessSettings | None = None
    calibration: DataSource | None = None
    eval: DataSource | None = None
    quantize: QuantizeSettings = dataclasses.field(default_factory=QuantizeSettings)
    budgets: Budgets = dataclasses.field(default_factory=Budgets)
    bench: BenchSettings = dataclasses.field(default_factory=BenchSettings)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str, info: ValidationInfo) -> str:
        """The name is the default output folder: one path component, never a path."""
        if loading_base(info) is not None:
            if not NAME_RE.fullmatch(value) or ".." in value:
                raise ValueError(f"{value!r} is not a recipe name (1-64 letters, digits, '.', '_', '-', starting "
                                 "with a letter or digit; it names the output folder, so never a path)")
        elif not value or value in (".", "..") or any(c in value for c in "/\\\0") or len(value) > 255:
            raise ValueError(f"{value!r} is not one path component")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Recipe:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise invalid(info, Recipe, f"targets: target listed twice in {names}")
        if self.calibration is None and any(t.precision in ("int8", "mixed", "auto") for t in self.targets):
            raise invalid(info, Recipe, "data.calibration is required when a target's precision is int8, mixed or "
                          "auto (e.g. [data] calibration = 'digits' or a folder of .npy files)")
        if self.model.runs_code and not self.trust_code:
            raise invalid(info, Recipe, "model.factory runs Python code but the recipe does not say "
                          "`trust_code = true` (add it to the recipe and pass --trust-code)")
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def runs_code(self) -> bool:
        return self.model.runs_code or any(d is not None and d.runs_code for d in (self.calibration, self.eval))

    def target(self, name: str) -> TargetSettings:
        for t in self.targets:
            if t.name == name:
                return t
        raise BadInputError(f"recipe has no target {name!r}", path="--target",
                            hint=f"recipe targets: {', '.join(t.name for t in self.targets)}")


_RECIPE = TypeAdapter(Recipe)


# --------------------------------------------------------------------------------------- loading

def _depth(data: Any) -> int:
    """Nesting depth of tables and lists, without recursion (a hostile document may nest deeply)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((v, depth + 1) for v in value)
    return deepest


def parse_recipe(data: dict[str, Any], path: Path) -> Recipe:
    """Validate a parsed TOML document; `path` is the recipe file (relative paths resolve beside it)."""
    path = Path(path).resolve()
    if not isinstance(data, dict):
        raise BadInputError(f"a recipe is a TOML table, got {type(data).__name__}", path=path)
    if _depth(data) > MAX_DEPTH:
        raise BadInputError(f"nested more than {MAX_DEPTH} tables or lists deep", path=path)
    document = dict(data)
    for key in _NOT_KEYS:
        if key in document:
            where = "write it under [data]" if key != "path" else "the recipe's path is where the file is"
            raise BadInputError(f"{key}: unknown key at the top level ({where}; see docs/recipes.md)", path=path)
    section = document.pop("data", {})
    if not isinstance(section, dict):
        raise BadInputError(f"data: must be a table, got {type(section).__name__}", path=path)
    for key, value in section.items():
        if key not in ("calibration", "eval"):
            raise BadInputError(f"data.{str(key)[:40]}: unknown key (allowed here: calibration, eval)", path=path)
        document[key] = value
    if "model" not in document:
        raise BadInputError("missing required table [model]", path=path, hint="see docs/recipes.md")
    document.setdefault("name", path.stem)
    if "name" not in data and not NAME_RE.fullmatch(path.stem):
        raise BadInputError(f"name: the file name {path.stem!r} is not a recipe name", path=path,
                            hint="add name = \"...\" (letters, digits, '.', '_', '-') to the recipe")
    document["path"] = path
    try:
        return _RECIPE.validate_python(document, context={"base": path.parent})
    except ValidationError as exc:
        raise BadInputError(_recipe_error(exc), path=path) from None
    except RecursionError:
        raise BadInputError(f"nested too deeply (more than {MAX_DEPTH} levels)", path=path) from None


def shipped_recipes() -> list[Path]:
    """The example recipes shipped with edgekit (`edgekit.targets.data_dir("recipes")`), sorted by name."""
    from edgekit.targets import data_dir

    folder = data_dir("recipes")
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def find_recipe(path: str | Path) -> Path | None:
    """`path` if it is a file; else, for a bare name (no folder), the shipped recipe of that name (.toml optional)."""
    path = Path(path)
    if path.is_file():
        return path
    text = str(path)
    if "/" in text or "\\" in text or not text:
        return None
    stem = text[:-5] if text.lower().endswith(".toml") else text
    return next((p for p in shipped_recipes() if p.stem == stem), None)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file, or a shipped recipe by name (BadInputError naming the key path on a problem)."""
    found = find_recipe(path)
    if found is None:
        names = ", ".join(p.stem for p in shipped_recipes()) or "none"
        hint = "a recipe is a file, not a folder" if Path(path).is_dir() else \
            f"give a .toml path, or a shipped recipe: {names}"
        raise BadInputError("no such recipe file", path=path, hint=hint)
    path = found
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RECIPE_BYTES + 1)
        if len(raw) > MAX_RECIPE_BYTES:
            raise BadInputError(f"larger than {MAX_RECIPE_BYTES >> 20} MiB: not a recipe", path=path)
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"invalid TOML ({exc})", path=path) from None
    except UnicodeDecodeError:
        raise BadInputError("not a UTF-8 text file", path=path) from None
    except RecursionError:
        raise BadInputError("invalid TOML (nested too deeply)", path=path) from None
    except OSError as exc:
        raise BadInputError(f"cannot read ({exc.strerror or exc})", path=path) from None
    return parse_recipe(data, path)
