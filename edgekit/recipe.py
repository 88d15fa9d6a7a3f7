"""Recipe schema: frozen dataclasses loaded from TOML with validation that names the key path.

A recipe says where the model comes from, which data calibrates and evaluates it, how to quantize,
which targets to build for and which budgets must hold. Every error names the key path
(`quantize.max_drop`) and what was expected, and exits 2 (BadInputError). Relative paths are
resolved against the recipe file's folder. Code (`factory = "pkg.mod:fn"`, `py:` data sources)
only runs when the recipe says `trust_code = true` *and* the caller passes `trust_code=True`.
The key reference is docs/recipes.md.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError
from edgekit.specs import Preprocess, TensorSpec, parse_input_shape

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed", "auto")
DATA_KINDS = ("digits", "synthetic")
_LATENCY_RE = re.compile(r"^\s*(p\d{1,2}(\.\d+)?|mean|median|min|max|std)\s*(<=|<)\s*\d+(\.\d+)?\s*(ms|us|s)\s*$")


@dataclass(frozen=True)
class ModelSource:
    """Exactly one of zoo / onnx / torchscript / factory (+ optional state-dict `weights`)."""

    zoo: str | None = None
    onnx: Path | None = None
    torchscript: Path | None = None
    factory: str | None = None  # "pkg.module:function" -> torch.nn.Module (needs trust_code)
    weights: Path | None = None  # state_dict for `factory` or `zoo` (torch.load weights_only=True)
    inputs: tuple[TensorSpec, ...] = ()
    opset: int | None = None

    @property
    def kind(self) -> str:
        for name in ("zoo", "onnx", "torchscript", "factory"):
            if getattr(self, name) is not None:
                return name
        return "none"

    @property
    def runs_code(self) -> bool:
        return self.factory is not None


@dataclass(frozen=True)
class DataSource:
    """Calibration or evaluation data.

    `source`: `digits` (scikit-learn digits, generated locally), `synthetic` (random; not valid for
    accuracy), a path (folder of .npy/.npz, image folder, or one .npz with a `labels` array), or
    `py:module:function` (needs trust_code).
    """

    source: str
    path: Path | None = None  # resolved path when `source` is a file or folder
    split: str = "test"  # digits: "train" or "test"
    samples: int | None = None

    @property
    def runs_code(self) -> bool:
        return self.source.startswith("py:")


@dataclass(frozen=True)
class QuantizeSettings:
    method: str = "minmax"
    per_channel: bool = True
    symmetric_activations: bool = False
    exclude: tuple[str, ...] = ()
    calib_samples: int = 100
    max_drop: float | None = None  # points; accuracy-aware mixed INT8: keep sensitive nodes in float until it holds
    min_sqnr: float | None = None


@dataclass(frozen=True)
class TargetSettings:
    name: str
    backend: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    latency: tuple[str, ...] = ()  # extra latency budgets for this target only
    adapter_options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class AccuracyBudget:
    """Accuracy budget vs the FP32 ONNX model; task metric when eval labels exist."""

    max_drop: float | None = None  # task-accuracy drop in percentage points (1.0 = 1 point), needs labels
    min_cosine: float | None = None
    min_sqnr_db: float | None = None

    def to_json(self) -> dict[str, float]:
        return {k: v for k, v in {
            "max_drop": self.max_drop, "min_cosine": self.min_cosine, "min_sqnr_db": self.min_sqnr_db,
        }.items() if v is not None}

    @property
    def empty(self) -> bool:
        return not self.to_json()


@dataclass(frozen=True)
class Budgets:
    latency: tuple[str, ...] = ()
    accuracy: AccuracyBudget = AccuracyBudget()


@dataclass(frozen=True)
class BenchSettings:
    warmup: int = 5
    iterations: int = 50
    threads: int | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    model: ModelSource
    targets: tuple[TargetSettings, ...]
    description: str = ""
    trust_code: bool = False
    simplify: bool = True
    preprocess: Preprocess | None = None
    calibration: DataSource | None = None
    eval: DataSource | None = None
    quantize: QuantizeSettings = QuantizeSettings()
    budgets: Budgets = Budgets()
    bench: BenchSettings = BenchSettings()

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


# --------------------------------------------------------------------------------------- validation

class _Section:
    """Reads one TOML table, tracking the key path; `done()` rejects keys nobody read."""

    def __init__(self, data: Any, path: str, source: Path):
        if not isinstance(data, dict):
            raise BadInputError(f"`{path}` must be a table, got {_tname(data)}", path=source)
        self.data = dict(data)
        self.path = path
        self.source = source
        self.allowed: list[str] = []

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, expected: str, value: Any) -> BadInputError:
        return BadInputError(f"`{self._key(key)}` must be {expected}, got {_tname(value)} {value!r}", path=self.source)

    def get(self, key: str, kind: type | tuple[type, ...], expected: str, default: Any = None,
            required: bool = False) -> Any:
        self.allowed.append(key)
        if key not in self.data:
            if required:
                raise BadInputError(f"missing required key `{self._key(key)}` ({expected})", path=self.source)
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self._fail(key, expected, value)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self._fail(key, expected, value)
        return value

    def str_list(self, key: str, expected: str = "a list of strings") -> tuple[str, ...]:
        value = self.get(key, (list, str), expected, default=[])
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, str) for v in value):
            raise self._fail(key, expected, value)
        return tuple(value)

    def number_list(self, key: str, expected: str) -> tuple[float, ...] | None:
        value = self.get(key, list, expected)
        if value is None:
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self._fail(key, expected, value)
        return tuple(float(v) for v in value)

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, f"one of {', '.join(choices)}", default)
        if value not in choices:
            raise BadInputError(f"`{self._key(key)}` must be one of {', '.join(choices)}, got {value!r}",
                                path=self.source)
        return value

    def positive(self, key: str, default: int | None, *, expected: str = "a positive integer") -> int | None:
        value = self.get(key, int, expected, default)
        if value is not None and value < 1:
            raise self._fail(key, expected, value)
        return value

    def points(self, key: str) -> float | None:
        expected = "a number of accuracy points >= 0 (1.0 = one percentage point)"
        value = self.get(key, float, expected)
        if value is not None and not 0.0 <= value <= 100.0:
            raise self._fail(key, expected, value)
        return value

    def file(self, key: str, expected: str, base: Path) -> Path | None:
        value = self.get(key, str, expected)
        if value is None:
            return None
        resolved = (base / value).resolve()
        if not resolved.exists():
            raise BadInputError(f"`{self._key(key)}`: file {value!r} does not exist (looked at {resolved})",
                                path=self.source, hint="paths are relative to the recipe file")
        return resolved

    def sub(self, key: str) -> _Section | None:
        self.allowed.append(key)
        if key not in self.data:
            return None
        return _Section(self.data[key], self._key(key), self.source)

    def done(self) -> None:
        unknown = [k for k in self.data if k not in self.allowed]
        if unknown:
            where = f"in `{self.path}`" if self.path else "at the top level"
            raise BadInputError(
                f"unknown key `{self._key(unknown[0])}` {where}",
                path=self.source, hint=f"allowed keys: {', '.join(sorted(set(self.allowed)))}; see docs/recipes.md",
            )


def _tname(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _model(sec: _Section, base: Path) -> ModelSource:
    zoo = sec.get("zoo", str, "a zoo model name (see `edgekit zoo`)")
    onnx = sec.file("onnx", "a path to an .onnx file", base)
    torchscript = sec.file("torchscript", "a path to a TorchScript .pt file", base)
    factory = sec.get("factory", str, "'package.module:function' returning a torch.nn.Module")
    weights = sec.file("weights", "a path to a state_dict file", base)
    inputs_raw = sec.str_list("inputs", "a list of 'NAME:D0,D1,...' strings")
    opset = sec.positive("opset", None, expected="an ONNX opset number")
    sec.done()
    given = [k for k, v in (("zoo", zoo), ("onnx", onnx), ("torchscript", torchscript), ("factory", factory)) if v]
    if len(given) != 1:
        what = "none" if not given else ", ".join(f"model.{g}" for g in given)
        raise BadInputError(f"`model` needs exactly one of zoo, onnx, torchscript, factory (got {what})",
                            path=sec.source)
    if factory is not None and not re.fullmatch(r"[\w.]+:[\w.]+", factory):
        raise BadInputError(f"`model.factory` must be 'package.module:function', got {factory!r}", path=sec.source)
    if weights is not None and zoo is None and factory is None:
        raise BadInputError("`model.weights` only applies with model.zoo or model.factory", path=sec.source)
    specs = []
    for i, text in enumerate(inputs_raw):
        specs.append(parse_input_shape(text, argument=f"{sec.source}: model.inputs[{i}]"))
    if factory is not None and not specs:
        raise BadInputError("`model.inputs` is required with model.factory (e.g. ['input:1,3,224,224'])",
                            path=sec.source)
    return ModelSource(zoo, onnx, torchscript, factory, weights, tuple(specs), opset)


def _data(value: Any, key: str, base: Path, source: Path) -> DataSource:
    if isinstance(value, str):
        value = {"source": value}
    sec = _Section(value, key, source)
    src = sec.get("source", str, "'digits', 'synthetic', 'py:module:function' or a path", required=True)
    split = sec.choice("split", ("train", "test"), "test")
    samples = sec.positive("samples", None)
    sec.done()
    path = None
    if src not in DATA_KINDS and not src.startswith("py:"):
        path = (base / src).resolve()
        if not path.exists():
            raise BadInputError(f"`{key}.source`: {src!r} does not exist (looked at {path})", path=source,
                                hint="use 'digits', 'synthetic', or a path relative to the recipe file")
    return DataSource(src, path, split, samples)


def _latency_list(sec: _Section, key: str) -> tuple[str, ...]:
    values = sec.str_list(key, "a list of latency budgets like 'p90<=25ms'")
    for text in values:
        if not _LATENCY_RE.match(text):
            raise BadInputError(f"`{sec._key(key)}`: cannot parse budget {text!r}", path=sec.source,
                                hint="expected STAT<=VALUE with a unit, e.g. 'p90<=25ms', 'mean<=4ms'")
    return tuple(values)


def _target(value: Any, index: int, source: Path) -> TargetSettings:
    if isinstance(value, str):
        value = {"name": value}
    sec = _Section(value, f"targets[{index}]", source)
    name = sec.get("name", str, "a target name (see `edgekit targets`)", required=True)
    backend = sec.get("backend", str, "an adapter name or 'auto'", "auto")
    precision = sec.choice("precision", PRECISIONS, "fp32")
    threads = sec.positive("threads", None)
    latency = _latency_list(sec, "latency")
    options = sec.get("adapter_options", dict, "a table of adapter options", {})
    sec.done()
    return TargetSettings(name, backend, precision, threads, latency, dict(options))


def parse_recipe(data: dict[str, Any], path: Path) -> Recipe:
    """Validate a parsed TOML document; `path` is the recipe file (relative paths resolve beside it)."""
    path = Path(path).resolve()
    base = path.parent
    top = _Section(data, "", path)
    name = top.get("name", str, "a string", path.stem)
    description = top.get("description", str, "a string", "")
    trust_code = top.get("trust_code", bool, "true or false", False)
    simplify = top.get("simplify", bool, "true or false", True)

    model_sec = top.sub("model")
    if model_sec is None:
        raise BadInputError("missing required table `[model]`", path=path, hint="see docs/recipes.md")
    model = _model(model_sec, base)

    preprocess = None
    if (pre := top.sub("preprocess")) is not None:
        size = pre.number_list("size", "[height, width]")
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise BadInputError(f"`preprocess.size` must be [height, width], got {list(size)}", path=path)
        mean = pre.number_list("mean", "a list of numbers (pixel units, 0..255)") or (0.0, 0.0, 0.0)
        std = pre.number_list("std", "a list of numbers (pixel units, 0..255)") or (1.0, 1.0, 1.0)
        if any(s == 0 for s in std):
            raise BadInputError("`preprocess.std` must not contain 0", path=path)
        layout = pre.choice("layout", ("nchw", "nhwc"), "nchw")
        grayscale = pre.get("grayscale", bool, "true or false", False)
        pre.done()
        preprocess = Preprocess(tuple(int(s) for s in size) if size else None, mean, std, layout, grayscale)

    calibration = evaluation = None
    if (data_sec := top.sub("data")) is not None:
        calib_raw = data_sec.get("calibration", (str, dict), "a data source (string or table)")
        eval_raw = data_sec.get("eval", (str, dict), "a data source (string or table)")
        data_sec.done()
        if calib_raw is not None:
            calibration = _data(calib_raw, "data.calibration", base, path)
        if eval_raw is not None:
            evaluation = _data(eval_raw, "data.eval", base, path)

    quantize = QuantizeSettings()
    if (q := top.sub("quantize")) is not None:
        quantize = QuantizeSettings(
            method=q.choice("method", ("minmax", "entropy", "percentile"), "minmax"),
            per_channel=q.get("per_channel", bool, "true or false", True),
            symmetric_activations=q.get("symmetric_activations", bool, "true or false", False),
            exclude=q.str_list("exclude", "a list of node names"),
            calib_samples=q.positive("calib_samples", 100) or 100,
            max_drop=q.points("max_drop"),
            min_sqnr=q.get("min_sqnr", float, "a number (dB)"),
        )
        q.done()

    targets_raw = top.get("targets", list, "a list of target names or [[targets]] tables", required=True)
    if not targets_raw:
        raise BadInputError("`targets` is empty: list at least one target", path=path)
    targets = tuple(_target(t, i, path) for i, t in enumerate(targets_raw))
    names = [t.name for t in targets]
    from edgekit.targets import all_profiles

    known = all_profiles()
    for i, t in enumerate(targets):
        if t.name not in known:
            raise BadInputError(f"`targets[{i}].name`: unknown target {t.name!r}", path=path,
                                hint=f"one of {', '.join(sorted(known))} (see `edgekit targets`)")
    if len(set(names)) != len(names):
        raise BadInputError(f"`targets`: target listed twice in {names}", path=path)

    budgets = Budgets()
    if (b := top.sub("budgets")) is not None:
        latency = _latency_list(b, "latency")
        acc = AccuracyBudget()
        if (a := b.sub("accuracy")) is not None:
            acc = AccuracyBudget(
                max_drop=a.points("max_drop"),
                min_cosine=a.get("min_cosine", float, "a number (e.g. 0.99)"),
                min_sqnr_db=a.get("min_sqnr_db", float, "a number in dB (e.g. 20)"),
            )
            a.done()
        b.done()
        budgets = Budgets(latency, acc)

    bench = BenchSettings()
    if (bs := top.sub("bench")) is not None:
        bench = BenchSettings(
            warmup=bs.get("warmup", int, "an integer >= 0", 5),
            iterations=bs.positive("iterations", 50) or 50,
            threads=bs.positive("threads", None),
        )
        bs.done()
    top.done()

    recipe = Recipe(name=name, path=path, model=model, targets=targets, description=description,
                    trust_code=trust_code, simplify=simplify, preprocess=preprocess, calibration=calibration,
                    eval=evaluation, quantize=quantize, budgets=budgets, bench=bench)
    needs_calib = any(t.precision in ("int8", "mixed", "auto") for t in targets)
    if needs_calib and calibration is None:
        raise BadInputError("`data.calibration` is required when a target's precision is int8, mixed or auto",
                            path=path, hint="e.g. [data] calibration = 'digits' or a folder of .npy files")
    if model.runs_code and not trust_code:
        raise BadInputError("`model.factory` runs Python code but the recipe does not say `trust_code = true`",
                            path=path, hint="add trust_code = true to the recipe and pass --trust-code")
    return recipe


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
        raise BadInputError("no such recipe file", path=path, hint=f"give a .toml path, or a shipped recipe: {names}")
    path = found
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"invalid TOML ({exc})", path=path) from None
    except UnicodeDecodeError:
        raise BadInputError("not a text file", path=path) from None
    return parse_recipe(data, path)
