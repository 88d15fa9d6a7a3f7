"""The recipe schema (edgekit/recipe.py): a recipe from someone else is data, refused in one line naming the key.

Hostile inputs for every path into a Recipe (TOML file, parsed dict, Python construction), the one
budget grammar at load time, and a fuzz test that nothing but an EdgekitError ever comes out.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekit.artifact import to_jsonable
from edgekit.errors import BadInputError, EdgekitError
from edgekit.recipe import (
    AccuracyBudget,
    BenchSettings,
    Budgets,
    DataSource,
    ModelSource,
    PreprocessSettings,
    Recipe,
    TargetSettings,
    load_recipe,
    parse_recipe,
)
from edgekit.specs import Preprocess, TensorSpec
from tests._pipeline_helpers import tiny_classifier

BASE = """
name = "t"
[model]
onnx = "tiny.onnx"
[[targets]]
name = "cpu"
"""


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_classifier(tmp_path / "tiny.onnx")
    (tmp_path / "a-folder.onnx").mkdir()
    return tmp_path


def _refused(folder: Path, text: str) -> str:
    path = folder / "r.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError) as info:
        load_recipe(path)
    line = info.value.one_line()
    assert info.value.exit_code == 2 and "\n" not in line and line.startswith(f"{path}: "), line
    return line


def _target(extra: str) -> str:
    return BASE + extra + "\n"


@pytest.mark.parametrize(("text", "pattern"), [
    # a name is a name: one path component, never a path (it names the output folder)
    (BASE.replace('"t"', '"../../x"'), r"name: '\.\./\.\./x' is not a recipe name"),
    (BASE.replace('"t"', '"/somewhere/else"'), r"name: '/somewhere/else' is not a recipe name"),
    (BASE.replace('"t"', '".."'), r"name: '\.\.' is not a recipe name"),
    (BASE.replace('"t"', '"a..b"'), r"name: 'a\.\.b' is not a recipe name"),
    (BASE.replace('"t"', '".hidden"'), r"name: '\.hidden' is not a recipe name"),
    (BASE.replace('"t"', '"a\\\\b"'), r"is not a recipe name"),
    (BASE.replace('"t"', '""'), r"name: '' is not a recipe name"),
    (BASE.replace('"t"', '"' + "x" * 65 + '"'), r"is not a recipe name"),
    (BASE.replace('"t"', "5"), r"name: Input should be a valid string, got 5"),
    # NaN, inf and absurd numbers
    (_target("[budgets.accuracy]\nmin_sqnr_db = nan"), r"accuracy\.min_sqnr_db: Input should be a finite number"),
    (_target("[budgets.accuracy]\nmax_drop = inf"), r"budgets\.accuracy\.max_drop: Input should be a finite number"),
    (_target("[budgets.accuracy]\nmin_cosine = 1.5"), r"budgets\.accuracy\.min_cosine: .*from 0 to 1, got 1\.5"),
    (_target("[budgets.accuracy]\nmin_cosine = true"), r"accuracy\.min_cosine: Input should be a valid number"),
    (_target("[quantize]\nmin_sqnr = -inf"), r"quantize\.min_sqnr: Input should be a finite number"),
    (_target("[quantize]\nmax_drop = 1e999"), r"quantize\.max_drop: Input should be a finite number"),
    (_target("[quantize]\ncalib_samples = 10000000"), r"quantize\.calib_samples: .*less than or equal to 1000000"),
    (_target("[bench]\niterations = 100000000000000000000000"), r"bench\.iterations: .*less than or equal to 1000000"),
    (_target("[bench]\nwarmup = -1"), r"bench\.warmup: .*greater than or equal to 0"),
    (_target("[bench]\nthreads = 100000"), r"bench\.threads: .*less than or equal to 4096"),
    (_target("threads = 5000"), r"targets\[0\]\.threads: .*less than or equal to 4096"),
    (_target("threads = 2.5"), r"targets\[0\]\.threads: Input should be a valid integer"),
    (_target("threads = true"), r"targets\[0\]\.threads: Input should be a valid integer"),
    (_target("[preprocess]\nsize = [inf, 1]"), r"preprocess\.size\[0\]: Input should be a valid integer, got inf"),
    (_target("[preprocess]\nsize = [224, 0]"), r"preprocess\.size\[1\]: .*greater than or equal to 1"),
    (_target("[preprocess]\nsize = [224.0, 224]"), r"preprocess\.size\[0\]: Input should be a valid integer"),
    (_target("[preprocess]\nsize = [1, 2, 3]"), r"preprocess\.size: .*at most 2 items"),
    (_target("[preprocess]\nsize = [1000000, 1]"), r"preprocess\.size\[0\]: .*less than or equal to 65536"),
    (_target("[preprocess]\nmean = [nan]"), r"preprocess\.mean\[0\]: Input should be a finite number"),
    (_target("[preprocess]\nstd = [1e999]"), r"preprocess\.std\[0\]: Input should be a finite number"),
    (_target("[preprocess]\nstd = [1.0, 0.0]"), r"preprocess\.std: must not contain 0"),
    (_target("[preprocess]\nmean = ['a']"), r"preprocess\.mean: must be a list of numbers"),
    (_target("[preprocess]\nlayout = 'chw'"), r"preprocess\.layout: .*'nchw' or 'nhwc', got 'chw'"),
    # wrong types
    (_target("optional = 'yes'"), r"targets\[0\]\.optional: Input should be a valid boolean"),
    (_target("adapter_options = 5"), r"targets\[0\]\.adapter_options: Input should be a valid dictionary"),
    (_target("backend = '../x'"), r"targets\[0\]\.backend: must be an adapter name"),
    (_target("precision = 'int4'"), r"targets\[0\]\.precision: must be one of fp32, fp16, bf16, int8, mixed, auto"),
    (_target("[data]\ncalibration = 5"), r"data\.calibration: must be a data source"),
    (_target("[data]\neval = { source = 'digits', samples = 0 }"), r"data\.eval\.samples: .*greater than or equal"),
    (_target("[data]\neval = 'py:not-a-function'"), r"data\.eval\.source: a code source is written"),
    (_target("[data]\neval = 'nowhere/'"), r"data\.eval: source 'nowhere/' does not exist"),
    ("data = 5\n" + BASE, r"data: must be a table"),
    ('targets = "cpu"\n[model]\nonnx = "tiny.onnx"\n', r"targets: Input should be a valid tuple"),
    ('targets = [5]\n[model]\nonnx = "tiny.onnx"\n', r"targets\[0\]: Input should be a dictionary"),
    ('targets = []\n[model]\nonnx = "tiny.onnx"\n', r"targets: .*at least 1 item"),
    ("model = 'tiny.onnx'\n" + BASE.replace('[model]\nonnx = "tiny.onnx"\n', ""), r"model: Input should be"),
    # unknown keys, with the key path and what is allowed there
    ("colour = 'red'\n" + BASE, r"colour: unknown key \(allowed here: bench, budgets, data, description"),
    (_target("colour = 'red'"), r"targets\[0\]\.colour: unknown key \(allowed here: adapter_options, backend"),
    (_target("[quantize]\nmax_dorp = 1"), r"quantize\.max_dorp: unknown key \(allowed here: .*max_drop"),
    (_target("[budgets.accuracy]\nmin_sqnr = 20"), r"accuracy\.min_sqnr: unknown key \(allowed here: max_drop"),
    (_target("[model.extra]\nx = 1"), r"model\.extra: unknown key \(allowed here: factory, inputs, onnx"),
    (_target("[data]\nfoo = 1"), r"data\.foo: unknown key \(allowed here: calibration, eval\)"),
    (_target("[data]\neval = { source = 'digits', path = '/etc' }"), r"data\.eval: unknown key path"),
    ('path = "/etc/passwd"\n' + BASE, r"path: unknown key at the top level"),
    ('eval = "digits"\n' + BASE, r"eval: unknown key at the top level \(write it under \[data\]"),
    (_target("devices = 'x'"), r"targets\[0\]\.devices: unknown key"),
    (_target("device = 'x;reboot'"), r"targets\[0\]\.device: device name 'x;reboot' is not one safe token"),
    # paths: relative to the recipe, a file key refuses a folder
    (BASE.replace('"tiny.onnx"', '"a-folder.onnx"'), r"model\.onnx: 'a-folder\.onnx' is a folder, not a file"),
    (BASE.replace('"tiny.onnx"', '"."'), r"model\.onnx: '\.' is a folder, not a file"),
    (BASE.replace('"tiny.onnx"', '""'), r"model\.onnx: must be a path"),
    (BASE.replace('"tiny.onnx"', "5"), r"model\.onnx: must be a path"),
    (BASE.replace('"tiny.onnx"', '"missing.onnx"'), r"model\.onnx: file 'missing\.onnx' does not exist"),
    (BASE.replace('onnx = "tiny.onnx"', 'onnx = "tiny.onnx"\ninputs = ["x:0,3"]'), r"inputs\[0\]: zero-size dim"),
    (BASE.replace('onnx = "tiny.onnx"', 'onnx = "tiny.onnx"\nopset = 1000'), r"model\.opset: .*less than or equal"),
    (BASE.replace('onnx = "tiny.onnx"', 'zoo = "../lenet5"'), r"model\.zoo: must be a zoo model name"),
])
def test_hostile_recipe_is_refused_in_one_line_naming_the_key_path(folder: Path, text: str, pattern: str) -> None:
    line = _refused(folder, text)
    assert re.search(pattern, line), line


@pytest.mark.parametrize(("where", "budget", "key"), [
    ("targets", "p0<=5ms", r"targets\[0\]\.latency\[1\]: percentile 'p0'.*min instead of p0"),
    ("targets", "p0.0<=5ms", r"targets\[0\]\.latency\[1\]: percentile 'p0\.0'"),
    ("targets", "p100<=5ms", r"targets\[0\]\.latency\[1\]: percentile 'p100'.*max instead of p100"),
    ("targets", "p90<=1e999ms", r"targets\[0\]\.latency\[1\]: budget 'p90<=1e999ms' needs a finite limit"),
    ("budgets", "p90<=nanms", r"budgets\.latency\[1\]: budget 'p90<=nanms' needs a finite limit"),
    ("budgets", "p90<=-2ms", r"budgets\.latency\[1\]: budget 'p90<=-2ms' must be positive"),
    ("budgets", "p90<=2e5s", r"budgets\.latency\[1\]: budget 'p90<=2e5s' is over one day"),
])
def test_latency_budgets_are_checked_at_load_with_the_one_grammar(folder: Path, where: str, budget: str,
                                                                  key: str) -> None:
    latency = f"latency = ['mean<=1ms', '{budget}']"
    text = _target(latency) if where == "targets" else _target(f"[budgets]\n{latency}")
    assert re.search(key, _refused(folder, text))


def test_every_budget_form_is_accepted_in_a_recipe(folder: Path) -> None:
    forms = ["p90<=.5ms", "mean<2e-1ms", "max<=3µs", "min<=3μs", "p99.9<=250ns", "median<1s", "std<=1ms"]
    path = folder / "r.toml"
    path.write_text(_target(f"latency = {forms!r}\noptional = true") + f"[budgets]\nlatency = {forms[:2]!r}\n",
                    encoding="utf-8")
    recipe = load_recipe(path)
    assert recipe.targets[0].latency == tuple(forms) and recipe.budgets.latency == tuple(forms[:2])
    assert recipe.targets[0].optional is True and TargetSettings("cpu").optional is False


@pytest.mark.parametrize("text", [
    "a = " + "[" * 100_000 + "]" * 100_000 + "\n",  # RecursionError inside tomllib
    "a = " + "{b=" * 5_000 + "1" + "}" * 5_000 + "\n",
])
def test_deeply_nested_toml_is_one_line(folder: Path, text: str) -> None:
    assert "nested too deeply" in _refused(folder, text + BASE)


def test_deep_nesting_the_parser_survives_is_still_refused(folder: Path) -> None:
    options = "{b=" * 40 + "1" + "}" * 40
    assert "nested more than 32" in _refused(folder, _target(f"adapter_options = {options}"))


def test_not_a_recipe_file(folder: Path) -> None:
    assert "invalid TOML" in _refused(folder, "this is = not toml [")
    (folder / "r.toml").write_bytes(b"name = '\xff'\n")
    with pytest.raises(BadInputError, match="not a UTF-8 text file"):
        load_recipe(folder / "r.toml")
    (folder / "r.toml").write_text("# " + "x" * (1 << 20) + "\n" + BASE)
    with pytest.raises(BadInputError, match="larger than 1 MiB"):
        load_recipe(folder / "r.toml")
    with pytest.raises(BadInputError, match="a recipe is a file, not a folder"):
        load_recipe(folder / "a-folder.onnx")


def test_name_defaults_to_a_safe_file_stem(folder: Path) -> None:
    text = BASE.replace('name = "t"\n', "")
    (folder / "my-recipe.toml").write_text(text)
    assert load_recipe(folder / "my-recipe.toml").name == "my-recipe"
    (folder / "my recipe.toml").write_text(text)
    with pytest.raises(BadInputError, match=r"name: the file name 'my recipe' is not a recipe name.*add name ="):
        load_recipe(folder / "my recipe.toml")


def test_relative_paths_resolve_beside_the_recipe(folder: Path) -> None:
    (folder / "sub").mkdir()
    (folder / "sub" / "r.toml").write_text(BASE.replace('"tiny.onnx"', '"../tiny.onnx"')
                                           + "[data]\ncalibration = { source = '..', samples = 8 }\n")
    recipe = load_recipe(folder / "sub" / "r.toml")
    assert recipe.model.onnx == (folder / "tiny.onnx").resolve() and recipe.base_dir == (folder / "sub").resolve()
    assert recipe.calibration is not None and recipe.calibration.path == folder.resolve()


def test_parse_recipe_refuses_what_is_not_a_table(folder: Path) -> None:
    for data in ([], "x", None):
        with pytest.raises(BadInputError, match="a recipe is a TOML table"):
            parse_recipe(data, folder / "r.toml")  # a dict from JSON or YAML may be anything
    with pytest.raises(BadInputError, match=r"model: Input should be"):
        parse_recipe({"model": None, "targets": ["cpu"]}, folder / "r.toml")


def test_built_in_python_keeps_the_interface_and_refuses_bad_values(tmp_path: Path) -> None:
    model = tiny_classifier(tmp_path / "tiny.onnx")
    # positional construction, as the pipeline and older callers do
    target = TargetSettings("cpu", "onnxruntime", "auto", 2, ("p90<=1ms",))
    recipe = Recipe(name="auto", path=model, model=ModelSource(onnx=model, inputs=(TensorSpec("input", (1, 16)),)),
                    targets=(target,), calibration=DataSource("synthetic", samples=8),
                    budgets=Budgets((), AccuracyBudget(min_sqnr_db=20.0)), bench=BenchSettings(threads=2))
    assert recipe.target("cpu") is target and recipe.model.kind == "onnx" and not recipe.runs_code
    assert recipe.budgets.accuracy.to_json() == {"min_sqnr_db": 20.0} and recipe.quantize.calib_samples == 100
    assert to_jsonable(recipe)["targets"][0]["latency"] == ["p90<=1ms"]  # still a dataclass for the stage cache
    assert hash(target) == hash(TargetSettings("cpu", "onnxruntime", "auto", 2, ("p90<=1ms",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.name = "x"  # type: ignore[misc]
    with pytest.raises(BadInputError, match="recipe has no target 'gpu'"):
        recipe.target("gpu")
    for build, pattern in [
        (lambda: dataclasses.replace(recipe, name="../x"), r"Recipe: name: '\.\./x' is not one path component"),
        (lambda: TargetSettings("cpu", threads=10**6), r"TargetSettings: threads: .*4096"),
        (lambda: TargetSettings("cpu", latency=("p0<=1ms",)), r"TargetSettings: latency\[0\]: percentile 'p0'"),
        (lambda: AccuracyBudget(min_cosine=float("nan")), r"AccuracyBudget: min_cosine: .*finite"),
        (lambda: ModelSource(), r"ModelSource: needs exactly one of zoo, onnx, torchscript, factory"),
        (lambda: DataSource("synthetic", samples=0), r"DataSource: samples"),
        (lambda: BenchSettings(iterations=True), r"BenchSettings: iterations"),
        (lambda: PreprocessSettings(size=(0, 1)), r"PreprocessSettings: size\[0\]"),
        (lambda: dataclasses.replace(recipe, targets=(target, target)), r"Recipe: targets: target listed twice"),
    ]:
        with pytest.raises(BadInputError, match=pattern):
            build()
    assert isinstance(PreprocessSettings(size=(2, 3)), Preprocess)


# --- fuzz: any document is a Recipe or one EdgekitError, never a crash

_SCALARS = st.one_of(
    st.booleans(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
    st.sampled_from(["cpu", "digits", "synthetic", "tiny.onnx", "..", "/", "", "p0<=5ms", "p90<=.5ms", "int8", "auto",
                     "py:a.b:c", "x:1,16", "lenet5-digits", "nchw"]),
    st.text(max_size=12),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                       max_leaves=12)
_KEYS = {
    "name": _VALUES, "description": _VALUES, "trust_code": _VALUES, "simplify": _VALUES,
    "model": st.one_of(st.fixed_dictionaries({}, optional={k: _VALUES for k in ("zoo", "onnx", "inputs", "opset",
                                                                                 "weights", "factory")}), _VALUES),
    "targets": st.one_of(st.lists(st.one_of(st.sampled_from(["cpu", "rk3588"]), st.fixed_dictionaries(
        {"name": st.sampled_from(["cpu", "ascend310", "nope"])},
        optional={k: _VALUES for k in ("precision", "threads", "latency", "optional", "backend", "x")})),
        max_size=3), _VALUES),
    "data": st.one_of(st.fixed_dictionaries({}, optional={"calibration": _VALUES, "eval": _VALUES}), _VALUES),
    "preprocess": st.one_of(st.fixed_dictionaries({}, optional={k: _VALUES for k in ("size", "mean", "std",
                                                                                      "layout")}), _VALUES),
    "quantize": st.one_of(st.fixed_dictionaries({}, optional={k: _VALUES for k in ("max_drop", "min_sqnr",
                                                                                    "calib_samples")}), _VALUES),
    "budgets": st.one_of(st.fixed_dictionaries({}, optional={"latency": _VALUES, "accuracy": _VALUES}), _VALUES),
    "bench": st.one_of(st.fixed_dictionaries({}, optional={k: _VALUES for k in ("warmup", "iterations", "threads")}),
                       _VALUES),
    "path": _VALUES, "eval": _VALUES, "extra": _VALUES,
}


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    tiny_classifier(folder / "tiny.onnx")
    return folder


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.fixed_dictionaries({}, optional=_KEYS))
def test_fuzz_parse_recipe_raises_only_edgekit_errors(fuzz_folder: Path, document: dict) -> None:
    try:
        recipe = parse_recipe(document, fuzz_folder / "r.toml")
    except EdgekitError as exc:
        assert exc.exit_code == 2 and "\n" not in exc.one_line()
        return
    assert isinstance(recipe, Recipe) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", recipe.name)


@pytest.mark.parametrize("value", ["x" * 5000, "a\\u0000b", "loop/x"])
def test_unusable_paths_are_one_line(folder: Path, value: str) -> None:
    (folder / "loop").symlink_to(folder / "loop")
    for text in (BASE.replace('"tiny.onnx"', f'"{value}"'), _target(f"[data]\neval = \"{value}\"")):
        line = _refused(folder, text)
        assert re.search(r"(model\.onnx|data\.eval): (cannot use path|file .* does not exist|source .* does not)",
                         line), line
