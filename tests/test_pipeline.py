"""Recipe validation, trust_code gating, multi-target bundles, budgets in manifests, cache reuse per stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgekit.errors import BadInputError
from edgekit.pipeline import Pipeline
from edgekit.recipe import load_recipe
from tests._pipeline_helpers import tiny_classifier, write_recipe

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
    return tmp_path


def _load(folder: Path, text: str) -> BadInputError:
    path = folder / "r.toml"
    path.write_text(text)
    with pytest.raises(BadInputError) as info:
        load_recipe(path)
    assert info.value.exit_code == 2
    return info.value


@pytest.mark.parametrize(("text", "pattern"), [
    (BASE + "[quantize]\nmax_drop = 'a lot'\n", r"quantize\.max_drop: Input should be a valid number, got 'a lot'"),
    (BASE + "[quantize]\nmax_dorp = 1\n", r"quantize\.max_dorp: unknown key \(allowed here:.*max_drop"),
    ("colour = 'red'\n" + BASE, r"r\.toml: colour: unknown key"),
    (BASE + "colour = 'red'\n", r"targets\[0\]\.colour: unknown key"),
    (BASE + "[budgets]\nlatency = ['p90 under 5ms']\n", r"budgets\.latency\[0\]: cannot parse budget 'p90 under 5ms'"),
    (BASE + "[budgets.accuracy]\nmin_cosine = true\n", r"budgets\.accuracy\.min_cosine: Input should be"),
    (BASE + "[bench]\niterations = 0\n", r"bench\.iterations: Input should be greater than or equal to 1"),
    (BASE.replace('"tiny.onnx"', '"missing.onnx"'), r"model\.onnx: file 'missing\.onnx' does not exist"),
    (BASE + "[data]\neval = 'nowhere/'\n", r"data\.eval: source 'nowhere/' does not exist"),
    (BASE + "[data]\neval = { source = 'digits', split = 'dev' }\n", r"data\.eval\.split: .*'train' or 'test'"),
    (BASE.replace('name = "cpu"', 'name = "cpu"\nprecision = "int4"'), r"targets\[0\]\.precision: must be one of"),
    (BASE.replace('name = "cpu"', 'name = "cpu"\nprecision = "int8"'), r"data\.calibration is required"),
    ('[model]\nonnx = "tiny.onnx"\n', r"targets: missing required key"),
    ('targets = ["cpu"]\n', r"missing required table \[model\]"),
    ('targets = ["cpu"]\n[model]\nzoo = "lenet5"\nonnx = "tiny.onnx"\n', r"exactly one of zoo, onnx"),
    ('targets = ["cpu"]\n[model]\nfactory = "pkg.mod:make"\ninputs = ["x:1,3"]\n', r"does not say `trust_code = true`"),
    ('targets = ["cpu", "cpu"]\n[model]\nonnx = "tiny.onnx"\n', r"target listed twice"),
    ('targets = ["tpu9000"]\n[model]\nonnx = "tiny.onnx"\n', r"targets\[0\]\.name: unknown target 'tpu9000'"),
    ("this is = not toml [", r"invalid TOML"),
])
def test_validation_names_key_path(folder: Path, text: str, pattern: str) -> None:
    err = _load(folder, text)
    assert re.search(pattern, err.one_line()), err.one_line()
    assert str(folder / "r.toml") in err.one_line()


def test_valid_recipe_parses_all_sections(folder: Path) -> None:
    (folder / "calib").mkdir()
    path = folder / "r.toml"
    path.write_text("""
trust_code = false
targets = ["cpu", { name = "ascend310", precision = "int8", latency = ["p50<=3ms"] }]
[model]
onnx = "tiny.onnx"
[preprocess]
size = [32, 32]
mean = [0.0]
std = [255.0]
grayscale = true
[data]
calibration = { source = "calib", samples = 8 }
eval = "digits"
[quantize]
per_channel = false
max_drop = 1.0
exclude = ["fc2"]
[budgets]
latency = ["p90<=25ms", "mean<800us"]
[budgets.accuracy]
max_drop = 2
min_sqnr_db = 20
[bench]
warmup = 0
iterations = 10
threads = 2
""")
    recipe = load_recipe(path)
    assert [t.name for t in recipe.targets] == ["cpu", "ascend310"]
    assert recipe.targets[1].precision == "int8" and recipe.targets[1].latency == ("p50<=3ms",)
    assert recipe.calibration is not None and recipe.calibration.path == (folder / "calib").resolve()
    assert recipe.eval is not None and recipe.eval.source == "digits"
    assert recipe.quantize.exclude == ("fc2",) and recipe.quantize.per_channel is False
    assert recipe.budgets.accuracy.to_json() == {"max_drop": 2.0, "min_sqnr_db": 20.0}
    assert recipe.preprocess is not None and recipe.preprocess.size == (32, 32)


def test_trust_code_needs_recipe_and_caller(folder: Path) -> None:
    path = folder / "r.toml"
    path.write_text('trust_code = true\ntargets = ["cpu"]\n[model]\nfactory = "mypkg.models:build"\n'
                    'inputs = ["x:1,16"]\n')
    with pytest.raises(BadInputError, match="did not confirm"):
        Pipeline.from_recipe(path)  # recipe says yes, caller did not
    assert Pipeline.from_recipe(path, trust_code=True).recipe.model.factory == "mypkg.models:build"
    path.write_text('targets = ["cpu"]\n[model]\nfactory = "mypkg.models:build"\ninputs = ["x:1,16"]\n')
    with pytest.raises(BadInputError, match="trust_code = true"):
        Pipeline.from_recipe(path, trust_code=True)  # caller says yes, recipe did not


def test_py_data_source_is_gated(folder: Path) -> None:
    path = folder / "r.toml"
    path.write_text(BASE + "[data]\neval = 'py:mypkg.data:samples'\n")
    with pytest.raises(BadInputError, match="would run Python code"):
        Pipeline.from_recipe(path)


def _hits(result) -> dict[str, bool]:
    return result.stage_hits()


def test_run_writes_bundles_budgets_and_reuses_cache(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    recipe = write_recipe(tmp_path)
    first = Pipeline.from_recipe(recipe).run(out, cache_dir=cache)
    assert first.passed and first.exit_code == 0
    assert not any(first.stage_hits().values())
    manifest = json.loads((out / "cpu" / "manifest.json").read_text())
    assert manifest["info"]["budgets"] == {"latency": ["p90<=1000ms"], "accuracy": {"max_drop": 5.0}}
    assert manifest["metrics"]["pipeline"]["accuracy"] == pytest.approx(1.0)
    assert (out / "report.md").is_file() and (out / "report.html").is_file()

    from edgekit.bundle import verify_bundle

    verify_bundle(out / "cpu")  # budgets were added without breaking the bundle's hashes

    second = Pipeline.from_recipe(recipe).run(out, cache_dir=cache)
    hits = second.stage_hits()
    assert hits.pop("cpu/checks") is False  # checks always re-run
    assert hits.pop("cpu/bench") is False  # latency a budget is judged on is measured in every run
    assert all(hits.values()), hits
    figure = second.targets[0].latency_figure
    assert figure is not None and figure.fresh and figure.input_shapes == {"input": [1, 16]}
    assert figure.measured_at >= first.targets[0].latency_figure.measured_at
    [latency_verdict] = [v for v in second.targets[0].verdicts if v.kind == "latency"]
    assert latency_verdict.measured == figure.stats["p90"] and "measured in this run" in latency_verdict.note

    # only the latency budget changes: every stage but the bench and checks comes from the cache
    recipe = write_recipe(tmp_path, latency="p90<=900ms")
    third = Pipeline.from_recipe(recipe).run(out, cache_dir=cache)
    hits = third.stage_hits()
    assert hits.pop("cpu/checks") is False and hits.pop("cpu/bench") is False and all(hits.values()), hits
    assert json.loads((out / "cpu" / "manifest.json").read_text())["info"]["budgets"]["latency"] == ["p90<=900ms"]

    # a changed bench option changes the measurement; compile and accuracy stay cached
    recipe.write_text(recipe.read_text().replace("iterations = 10", "iterations = 12"))
    fourth = Pipeline.from_recipe(recipe).run(out, cache_dir=cache)
    hits = fourth.stage_hits()
    assert hits["cpu/compile[onnxruntime-fp32]"] and hits["cpu/accuracy[onnxruntime-fp32]"]
    assert hits["cpu/bench"] is False and fourth.targets[0].latency_figure.iterations >= 12


def test_budget_failure_marks_target_failed(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, latency="p90<=1us")
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert not result.passed and result.exit_code == 1
    [target] = result.targets
    assert target.status == "failed" and "p90<=1us" in target.reason
    assert (tmp_path / "out" / "cpu" / "manifest.json").is_file()  # the bundle is written anyway, to inspect


def test_no_cache_rebuilds_every_stage(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    cache = tmp_path / "cache"
    Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=cache)
    again = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=cache, use_cache=False, report=False)
    assert not any(again.stage_hits().values())


def test_unavailable_target_is_skipped_with_reason(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace('name = "cpu"\nbackend = "onnxruntime"\nprecision = "fp32"',
                                                 'name = "cuda"\nprecision = "fp16"'))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    [target] = result.targets
    if target.status == "passed":
        pytest.skip("a CUDA device is present here")
    # a CI gate that built nothing never passes: toolchain/device missing is exit 4 ...
    assert target.status == "unavailable" and target.reason and result.exit_code == 4 and not result.passed
    # ... unless the recipe says the target is optional
    recipe.write_text(recipe.read_text().replace('name = "cuda"', 'name = "cuda"\noptional = true'))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert result.targets[0].status == "unavailable" and result.exit_code == 0 and result.passed


def test_target_selection_and_unknown_target(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    with pytest.raises(BadInputError, match="recipe has no target 'gpu'"):
        Pipeline.from_recipe(recipe).run(tmp_path / "out", targets=["gpu"], cache_dir=tmp_path / "cache")


@pytest.mark.slow
def test_shipped_lenet_digits_recipe_end_to_end(tmp_path: Path) -> None:
    """The README's main job: real data (scikit-learn digits), INT8, accuracy + latency budgets, report."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from edgekit.targets import data_dir

    recipe = data_dir("recipes") / "lenet-digits-cpu-int8.toml"
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    [cpu] = result.targets
    assert cpu.status == "passed", cpu.reason
    assert result.reference["accuracy"] > 0.9  # the FP32 model really learned the digits
    assert cpu.accuracy["accuracy"] > 0.9 and cpu.precision_used == "int8"
    assert {v.kind for v in cpu.verdicts} == {"latency", "accuracy"}
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    assert manifest["info"]["budgets"]["accuracy"] == {"max_drop": 2.0, "min_cosine": 0.99}
    assert (tmp_path / "out" / "report.md").is_file() and (tmp_path / "out" / "report.html").is_file()
    again = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert [s.label for s in again.stages if not s.hit] == ["cpu/bench", "cpu/checks"]


def test_trusted_factory_runs_end_to_end(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    (tmp_path / "my_tiny_models.py").write_text(
        "import torch\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "r.toml"
    recipe.write_text('trust_code = true\nsimplify = false\ntargets = [{ name = "cpu", backend = "onnxruntime" }]\n'
                      '[model]\nfactory = "my_tiny_models:build"\ninputs = ["x:1,16"]\n'
                      '[bench]\nwarmup = 1\niterations = 5\n')
    result = Pipeline.from_recipe(recipe, trust_code=True).run(tmp_path / "out", cache_dir=tmp_path / "cache",
                                                              report=False)
    assert result.passed and result.targets[0].accuracy["cosine"] > 0.9999
    # editing the factory's source invalidates the export stage (its file is part of the key)
    (tmp_path / "my_tiny_models.py").write_text((tmp_path / "my_tiny_models.py").read_text() + "# edited\n")
    again = Pipeline.from_recipe(recipe, trust_code=True).run(tmp_path / "out", cache_dir=tmp_path / "cache",
                                                             report=False)
    assert again.stage_hits()["export"] is False


def _shipped_recipes() -> list[Path]:
    from edgekit.targets import data_dir

    return sorted(data_dir("recipes").glob("*.toml"))


@pytest.mark.parametrize("path", _shipped_recipes(), ids=lambda p: p.stem)
def test_shipped_recipes_validate(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.targets
    assert not recipe.runs_code  # shipped recipes never need --trust-code
    assert recipe.budgets.latency or not recipe.budgets.accuracy.empty


def test_several_targets_get_one_bundle_each(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, latency="p50<=10s",
                          extra_targets='\n[[targets]]\nname = "ascend310"\nprecision = "fp16"\n')
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    by_name = {t.target: t for t in result.targets}
    assert set(by_name) == {"cpu", "ascend310"}
    for name, target in by_name.items():
        assert target.status == "passed", (name, target.reason)
        manifest = json.loads((tmp_path / "out" / name / "manifest.json").read_text())
        assert manifest["info"]["target"] == name and manifest["info"]["budgets"]["latency"] == ["p50<=10s"]
    npu = by_name["ascend310"]
    assert npu.latency_provenance == "estimated" and npu.accuracy["provenance"] == "emulated"
    assert "estimated" in (tmp_path / "out" / "report.md").read_text()
    only = Pipeline.from_recipe(recipe).run(tmp_path / "out2", targets=["ascend310"], cache_dir=tmp_path / "cache")
    assert [t.target for t in only.targets] == ["ascend310"] and not (tmp_path / "out2" / "cpu").exists()
    assert all(only.stage_hits()[s] for s in only.stage_hits() if not s.endswith(("checks", "bench")))


def test_corrupted_cache_entry_is_rebuilt_in_a_run(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    cache = tmp_path / "cache"
    first = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=cache, report=False)
    [compile_dir] = list((cache / "v1").glob("compile*"))
    victim = next(p for p in compile_dir.rglob("*.onnx"))
    victim.write_bytes(victim.read_bytes()[:-10])  # truncated
    again = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=cache, report=False)
    hits = again.stage_hits()
    assert hits["cpu/compile[onnxruntime-fp32]"] is False and hits["import"] is True
    assert again.passed and first.passed
    from edgekit.bundle import verify_bundle

    verify_bundle(tmp_path / "out" / "cpu")


def test_two_runs_at_once_share_the_cache(tmp_path: Path) -> None:
    import threading

    recipe = write_recipe(tmp_path)
    results = {}

    def go(name: str) -> None:
        results[name] = Pipeline.from_recipe(recipe).run(tmp_path / name, cache_dir=tmp_path / "cache", report=False)

    threads = [threading.Thread(target=go, args=(f"out{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.passed for r in results.values())
    entries = list((tmp_path / "cache" / "v1").rglob("entry.json"))
    assert len(entries) == len({p.parent.parent.parent.name for p in entries})  # one entry per stage


def test_int8_from_folders_relative_to_recipe(tmp_path: Path) -> None:
    """Calibration from a folder of .npy (read by the calibration readers), labelled eval from a .npz folder."""
    import numpy as np

    recipe = write_recipe(tmp_path, precision="int8", max_drop=50.0)
    with np.load(tmp_path / "eval.npz") as z:
        x, labels = z["input"], z["labels"]
    (tmp_path / "data" / "calib").mkdir(parents=True)
    (tmp_path / "data" / "eval").mkdir()
    for i in range(len(x)):
        np.save(tmp_path / "data" / "calib" / f"{i:03d}.npy", x[i:i + 1])
        np.savez(tmp_path / "data" / "eval" / f"{i:03d}.npz", input=x[i:i + 1], labels=labels[i:i + 1])
    recipe.write_text(recipe.read_text().replace('eval = "eval.npz"', 'eval = "data/eval"')
                      .replace('calibration = "eval.npz"', 'calibration = { source = "data/calib", samples = 16 }'))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    [cpu] = result.targets
    assert cpu.status == "passed", cpu.reason
    assert cpu.precision_used == "int8" and cpu.accuracy["accuracy"] is not None
    assert result.reference["accuracy"] == pytest.approx(1.0)
    assert "quantize-int8" in result.stage_hits()


def test_gate_a_recipe_rechecks_every_bundle(tmp_path: Path) -> None:
    from edgekit.pipeline import gate

    recipe = write_recipe(tmp_path, latency="p90<=10s")
    result = gate(recipe, warmup=1, iters=5, cache_dir=tmp_path / "cache")
    assert result.exit_code == 0, result.to_json()
    names = [v.name for v in result.verdicts]
    assert "cpu: p90<=10s" in names and any(n.startswith("cpu: max_drop") for n in names)
    failing = gate(write_recipe(tmp_path, latency="p90<=1us"), warmup=1, iters=5, cache_dir=tmp_path / "cache")
    assert failing.exit_code == 1


# ------------------------------------------------------------------ figures you can gate on (issue 12)

def test_gate_judges_an_int8_bundle_against_the_fp32_reference_on_the_eval_data(tmp_path: Path) -> None:
    from edgekit.pipeline import gate

    recipe = write_recipe(tmp_path, precision="int8")
    recipe.write_text(recipe.read_text().replace("[budgets.accuracy]", "[budgets.accuracy]\nmin_cosine = 0.9"))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    [cpu] = result.targets
    assert cpu.status == "passed" and cpu.precision_used == "int8"
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    ref = manifest["info"]["reference"]
    assert ref["samples"] == 24 and ref["labels"] and ref["fp32_model_sha256"] == result.reference["model_sha256"]
    assert {"reference/eval.npz", "reference/outputs.npz"} <= set(manifest["files"])  # listed, so verified
    gated = gate(tmp_path / "out" / "cpu")
    cosine = next(v for v in gated.verdicts if v.name.startswith("min_cosine"))
    # the INT8 model against itself would be exactly 1.0; against FP32 on the same data it is the run's figure
    assert cosine.measured < 1.0 and cosine.measured == pytest.approx(cpu.accuracy["cosine"], abs=1e-9)
    assert "24 stored eval sample(s)" in gated.accuracy_source and gated.exit_code == 0
    drop = next(v for v in gated.verdicts if v.name.startswith("max_drop"))
    assert drop.status == "pass" and drop.measured == pytest.approx(cpu.accuracy["drop"])


def test_gate_of_a_bundle_without_reference_data_is_not_a_pass(tmp_path: Path) -> None:
    from edgekit.artifact import Manifest
    from edgekit.bundle import finalize_manifest
    from edgekit.pipeline import gate

    recipe = write_recipe(tmp_path)
    Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    bundle = tmp_path / "out" / "cpu"
    manifest = Manifest.read(bundle / "manifest.json")
    del manifest.info["reference"]
    for name in ("eval.npz", "outputs.npz"):
        (bundle / "reference" / name).unlink()
    (bundle / "reference").rmdir()
    finalize_manifest(bundle, manifest)
    gated = gate(bundle)
    drop = next(v for v in gated.verdicts if v.kind == "accuracy")
    assert drop.status == "not-run" and "no FP32 reference data" in drop.note
    assert gated.status == "not-run" and gated.exit_code == 4


def test_a_required_target_that_builds_nothing_fails_the_run(tmp_path: Path) -> None:
    # ORT on the CPU offers no fp16: `check`/`compile` say exit 3, so must `run`
    recipe = write_recipe(tmp_path, precision="fp16")
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    [cpu] = result.targets
    assert cpu.status == "unsupported" and "fp16 not offered" in cpu.reason
    assert result.exit_code == 3 and not result.passed


def test_a_budget_that_cannot_be_measured_is_not_run_never_a_pass(tmp_path: Path) -> None:
    # max_drop needs labels; synthetic eval data has none
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace('eval = "eval.npz"', 'eval = { source = "synthetic", samples = 4 }'))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    [cpu] = result.targets
    drop = next(v for v in cpu.verdicts if v.kind == "accuracy")
    assert drop.status == "not-run" and "no labels" in drop.note
    assert cpu.status == "not-run" and result.exit_code == 4 and not result.passed


def _dynamic_classifier(path: Path) -> Path:
    import onnx

    model = onnx.load(str(tiny_classifier(path)))
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "batch"
    onnx.save(model, str(path))
    return path


def test_recipe_inputs_fix_the_dynamic_dims_of_an_onnx_model_and_the_figure_says_so(tmp_path: Path) -> None:
    _dynamic_classifier(tmp_path / "tiny.onnx")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "dyn"\nsimplify = false\n[model]\nonnx = "tiny.onnx"\ninputs = ["input:3,16"]\n'
                      '[[targets]]\nname = "cpu"\nbackend = "onnxruntime"\n[budgets]\nlatency = ["p90<=10s"]\n'
                      '[bench]\nwarmup = 1\niterations = 5\n')
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    [cpu] = result.targets
    assert cpu.status == "passed", cpu.reason
    assert cpu.latency_figure is not None and cpu.latency_figure.input_shapes == {"input": [3, 16]}
    manifest = json.loads((tmp_path / "out" / "cpu" / "manifest.json").read_text())
    assert manifest["metrics"]["pipeline"]["latency"]["input_shapes"] == {"input": [3, 16]}
    # without the size, the dynamic dim is an error naming it: never a silent 1
    recipe.write_text(recipe.read_text().replace('inputs = ["input:3,16"]\n', ""))
    with pytest.raises(BadInputError, match=r"input 'input' dim 0 \('batch'\) has no size") as info:
        Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    assert "[model] inputs" in info.value.one_line()


def test_gate_a_recipe_runs_it_and_gates_each_bundle(tmp_path: Path) -> None:
    from edgekit.pipeline import gate

    recipe = write_recipe(tmp_path, latency="p90<=10s")
    ok = gate(recipe, output=tmp_path / "out-ok", cache_dir=tmp_path / "cache")
    assert ok.exit_code == 0, [v.to_json() for v in ok.verdicts] + ok.failures
    assert {v.kind for v in ok.verdicts} == {"latency", "accuracy"}
    assert all(v.name.startswith("cpu: ") for v in ok.verdicts)  # each verdict names its target
    bad = write_recipe(tmp_path, latency="p50<=1ns", name="bad")
    assert gate(bad, output=tmp_path / "out-bad", cache_dir=tmp_path / "cache").exit_code == 1
    # a required target that builds nothing: the gate fails with its exit code, it never passes
    missing = write_recipe(tmp_path, precision="fp16", name="missing")
    gated = gate(missing, cache_dir=tmp_path / "cache")
    assert gated.exit_code == 3 and gated.failures and "fp16 not offered" in gated.failures[0]


def test_run_refuses_a_user_folder_at_out_target_before_doing_any_work(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path)
    mine = tmp_path / "out" / "cpu"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    with pytest.raises(BadInputError, match="not an edgekit output") as info:
        Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache")
    assert info.value.exit_code == 2 and "cpu" in info.value.one_line()
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.txt"] and not (tmp_path / "cache").exists()


def test_a_target_benched_on_an_unreachable_device_is_not_run(tmp_path: Path) -> None:
    # the recipe says where latency is measured; a device that cannot be reached never passes a budget
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text().replace('name = "cpu"', 'name = "cpu"\ndevice = "ssh://nobody@127.0.0.1:1"'))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    [cpu] = result.targets
    assert cpu.status == "not-run" and result.exit_code == 4
    assert cpu.latency_figure is not None and cpu.latency_figure.host.startswith("device:")
    assert cpu.latency_figure.provenance == "not-run" and "latency not run" in cpu.latency_figure.note


def test_gate_on_a_run_folder_names_the_bundles_to_gate(tmp_path: Path) -> None:
    from edgekit.pipeline import gate

    recipe = write_recipe(tmp_path)
    Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    with pytest.raises(BadInputError, match="output folder of a run") as info:
        gate(tmp_path / "out")
    assert f"edgekit gate {tmp_path / 'out' / 'cpu'}" in info.value.one_line() and info.value.exit_code == 2


def test_a_recipe_baseline_bundle_is_an_ab_gate_in_run_and_gate(tmp_path: Path) -> None:
    from edgekit.pipeline import gate

    recipe = write_recipe(tmp_path)
    Pipeline.from_recipe(recipe).run(tmp_path / "base", cache_dir=tmp_path / "cache", report=False)
    ab_keys = 'name = "cpu"\nbaseline_bundle = "base/cpu"\nmax_regression = "25%"'
    text = recipe.read_text().replace('name = "cpu"', ab_keys)
    recipe.write_text(text.replace("[bench]", "[bench]\nthreads = 1"))
    result = Pipeline.from_recipe(recipe).run(tmp_path / "out", cache_dir=tmp_path / "cache", report=False)
    [cpu] = result.targets
    [ab] = [v for v in cpu.verdicts if v.kind == "regression"]
    # the same build against itself, side by side: never a regression; inconclusive is not a pass either
    assert ab.status in ("pass", "inconclusive") and "baseline bundle" in ab.source + ab.note
    assert (cpu.status == "passed") == (ab.status == "pass") and result.exit_code in (0, 4)
    gated = gate(recipe, cache_dir=tmp_path / "cache")
    assert any(v.kind == "regression" for v in gated.verdicts) and gated.exit_code in (0, 4)
