"""Budget expressions, baselines, JSON schema, JUnit and gate of edgekit.checks.budgets."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgekit.checks.budgets import (
    Budget,
    bench_junit,
    bench_schema,
    check_against_baseline,
    gate,
    parse_budget,
    parse_regression,
    validate_bench_json,
)
from edgekit.checks.latency import bench
from edgekit.errors import BadInputError, ToolchainMissingError
from tests._bench_helpers import FakeClock, FakeRunner, compile_bundle, edit_manifest, fake_loader

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("budgets"))


def _fake_bench(bundle: Path, ms: float, **kw):
    clock = FakeClock()
    return bench(bundle, warmup=1, iters=20, timer=clock, loader=fake_loader(FakeRunner(clock, [ms])), **kw)


@pytest.mark.parametrize(("text", "stat", "op", "limit_ms"), [
    ("p90<=25ms", "p90", "<=", 25.0),
    (" mean < 800us ", "mean", "<", 0.8),
    ("p99<=0.5s", "p99", "<=", 500.0),
    ("max<1e3us", "max", "<", 1.0),
    ("min<=2µs", "min", "<=", 0.002),
    ("median<=3ms", "p50", "<=", 3.0),  # the recipe schema's spelling
    ("p99.9<4ms", "p99.9", "<", 4.0),
])
def test_budget_expressions(text: str, stat: str, op: str, limit_ms: float) -> None:
    budget = parse_budget(text)
    assert (budget.statistic, budget.op) == (stat, op)
    assert budget.limit_ms == pytest.approx(limit_ms)


@pytest.mark.parametrize("text", ["p90<=25", "p100<=25ms", "q90<=25ms", "p90>=25ms", "p90<=25min", "p90<=-1ms",
                                  "latency<1ms", "p90<=0ms", ""])
def test_bad_budget_expressions_are_refused(text: str) -> None:
    with pytest.raises(BadInputError) as info:
        parse_budget(text)
    assert info.value.exit_code == 2 and info.value.path == "--budget"


def test_budget_operators_at_the_limit() -> None:
    assert Budget("p90", "<=", 2.0, "p90<=2ms").holds(2.0)
    assert not Budget("p90", "<", 2.0, "p90<2ms").holds(2.0)


def test_regression_parsing() -> None:
    assert parse_regression("10%") == pytest.approx(0.10)
    assert parse_regression(0.25) == pytest.approx(0.25)
    for bad in ("10", "ten%", "-5%"):
        with pytest.raises(BadInputError):
            parse_regression(bad)


def test_budgets_on_a_real_run(bundle: Path) -> None:
    generous = bench(bundle, warmup=2, iters=20, budgets=["p90<=10s", "mean<10s"])
    assert generous.exit_code == 0 and all(v.status == "pass" and v.margin > 0 for v in generous.verdicts)
    impossible = bench(bundle, warmup=2, iters=20, budgets=["p50<=10s", "p50<0.001us"])
    assert [v.status for v in impossible.verdicts] == ["pass", "fail"]
    assert impossible.exit_code == 1 and impossible.verdicts[1].margin < 0
    assert impossible.verdicts[1].measured == pytest.approx(impossible.stats.p50)


def test_baseline_regression_detected_from_a_recorded_baseline(bundle: Path, tmp_path: Path) -> None:
    recorded = tmp_path / "baseline.json"
    recorded.write_text(json.dumps(_fake_bench(bundle, 2.0).to_json()))
    slower = _fake_bench(bundle, 2.5, baseline=recorded, max_regression="10%", budgets=["p90<=1s"])
    regression = [v for v in slower.verdicts if v.kind == "regression"]
    assert [(v.statistic, v.status) for v in regression] == [("p90", "fail")]
    assert regression[0].limit == pytest.approx(2.2) and slower.exit_code == 1
    within = _fake_bench(bundle, 2.1, baseline=recorded, max_regression="10%")
    assert [(v.statistic, v.status) for v in within.verdicts] == [("p50", "pass")] and within.exit_code == 0


def test_baseline_from_another_environment_is_refused_unless_forced(bundle: Path) -> None:
    base = _fake_bench(bundle, 2.0).to_json()
    base["environment"]["cpu_model"] = "Some Other CPU"
    base["environment"]["threads"] = 64
    current = _fake_bench(bundle, 2.0)
    with pytest.raises(BadInputError, match="different environment") as info:
        check_against_baseline(current, base)
    assert info.value.exit_code == 2 and "cpu_model" in info.value.message
    forced = check_against_baseline(current, base, force=True)
    assert forced[0].status == "pass" and "forced" in forced[0].note


def test_baseline_must_be_a_bench_result(tmp_path: Path, bundle: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    with pytest.raises(BadInputError, match="not an edgekit bench result"):
        _fake_bench(bundle, 1.0, baseline=bogus)


def test_json_matches_the_versioned_schema(bundle: Path) -> None:
    result = bench(bundle, warmup=1, iters=10, budgets=["p90<=10s"])
    data = json.loads(json.dumps(result.to_json()))
    schema = bench_schema()
    jsonschema.validate(data, schema)
    validate_bench_json(data)
    assert data["schema"] == "edgekit.bench/1" and data["budgets"][0]["provenance"] == "measured"
    broken = dict(data)
    del broken["verdict"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(data, provenance="guessed"), schema)


def test_junit_has_one_testcase_per_budget(bundle: Path, tmp_path: Path) -> None:
    result = _fake_bench(bundle, 2.0, budgets=["p90<=5ms", "p50<1ms", "max<=3ms"])
    path = bench_junit(result, tmp_path / "bench.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    cases = suites[0].findall("testcase")
    assert len(cases) == 3 == int(suites[0].get("tests"))
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 == int(suites[0].get("failures")) == int(root.get("failures"))
    assert "p50<1ms" in failed[0].get("name") and "2 ms" in failed[0].find("failure").get("message")
    assert all(c.get("classname") and c.get("time") is not None for c in cases)
    props = {p.get("name"): p.get("value") for p in suites[0].find("properties")}
    assert props["provenance"] == "measured" and props["bundle_sha256"] == result.bundle["sha256"]


def _with_budgets(tmp_path: Path, budgets: dict) -> Path:
    return edit_manifest(compile_bundle(tmp_path), budgets=budgets)


def test_gate_rechecks_stored_latency_and_accuracy(tmp_path: Path) -> None:
    ok = _with_budgets(tmp_path, {"latency": ["p90<=10s"], "accuracy": {"min_cosine": 0.999, "min_sqnr_db": 40}})
    result = gate(ok, warmup=1, iters=10)
    assert result.exit_code == 0, [v.to_json() for v in result.verdicts]
    assert [v.kind for v in result.verdicts] == ["latency", "accuracy", "accuracy"]
    assert result.accuracy_source.startswith("re-run") and result.verdicts[1].measured > 0.999
    assert all(v.source == "manifest" for v in result.verdicts)


def test_gate_fails_an_impossible_stored_budget(tmp_path: Path) -> None:
    bad = _with_budgets(tmp_path, {"latency": ["p50<0.001us"], "accuracy": {"min_cosine": 0.99}})
    result = gate(bad, warmup=1, iters=10)
    assert result.exit_code == 1 and [v.status for v in result.verdicts] == ["fail", "pass"]


def test_gate_uses_stored_metrics_when_the_runner_cannot_run_here(tmp_path: Path) -> None:
    stored = _with_budgets(tmp_path, {"accuracy": {"min_cosine": 0.99, "max_drop": 0.01}})

    def no_device(*_a, **_k):
        raise ToolchainMissingError("device not present")

    result = gate(stored, loader=no_device)
    by_key = {v.statistic: v for v in result.verdicts}
    assert by_key["cosine"].status == "pass" and "stored metric" in by_key["cosine"].note
    assert result.accuracy_source.startswith("stored metrics")
    assert by_key["drop"].status == "not-run" and result.exit_code == 4  # never a silent pass


def test_gate_without_budgets_is_refused(bundle: Path) -> None:
    with pytest.raises(BadInputError, match="no budgets"):
        gate(bundle)


RECIPE = """
name = "tiny-gate"
[model]
onnx = "tiny.onnx"
[data]
eval = { source = "synthetic", samples = 4 }
[[targets]]
name = "cpu"
backend = "onnxruntime"
precision = "fp32"
[budgets]
latency = ["LATENCY"]
[budgets.accuracy]
min_cosine = 0.99
[bench]
warmup = 1
iterations = 10
"""


def test_gate_a_recipe_through_the_pipeline(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("edgekit.pipeline") is None:
        with pytest.raises(ToolchainMissingError, match="pipeline"):
            gate(tmp_path / "r.toml")
        return
    from tests._bench_helpers import tiny_model

    tiny_model(tmp_path / "tiny.onnx", dynamic_batch=False)
    (tmp_path / "ok.toml").write_text(RECIPE.replace("LATENCY", "p90<=10s"))
    ok = gate(tmp_path / "ok.toml", output=tmp_path / "out-ok")
    assert ok.exit_code == 0, [v.to_json() for v in ok.verdicts] + ok.failures
    assert {v.kind for v in ok.verdicts} == {"latency", "accuracy"}
    assert all("cpu" in f"{v.name} {v.source}" for v in ok.verdicts)  # each verdict names its target
    (tmp_path / "bad.toml").write_text(RECIPE.replace("LATENCY", "p50<0.001us"))
    assert gate(tmp_path / "bad.toml", output=tmp_path / "out-bad").exit_code == 1
