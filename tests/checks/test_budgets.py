"""Budget expressions, baselines, JSON schema and JUnit of edgekit.checks.budgets."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgekit.checks.budgets import (
    AccuracyBudget,
    Budget,
    bench_junit,
    bench_schema,
    check_accuracy_threshold,
    check_against_baseline,
    parse_accuracy_budget,
    parse_accuracy_thresholds,
    parse_budget,
    parse_budgets,
    parse_regression,
    validate_bench_json,
)
from edgekit.checks.latency import bench
from edgekit.errors import BadInputError, EdgekitError
from tests._bench_helpers import FakeClock, FakeRunner, compile_bundle, fake_loader

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


# --- the one grammar (issue #12): every form accepted everywhere, every refusal names its argument

@pytest.mark.parametrize(("text", "stat", "limit_ms"), [
    ("p90<=.5ms", "p90", 0.5),
    ("mean<2e-1ms", "mean", 0.2),
    ("max<=1s", "max", 1000.0),
    ("p99<=3µs", "p99", 0.003),  # micro sign
    ("p99<=3μs", "p99", 0.003),  # Greek mu
    ("min<=250ns", "min", 0.00025),
    ("p99.90<=1ms", "p99.9", 1.0),
    ("p50.0<=1ms", "p50", 1.0),
    ("P90 <= 2E1 MS", "p90", 20.0),
    ("std<1ms", "std", 1.0),
    ("p90<=1e-3us", "p90", 1e-6),  # one nanosecond: the smallest limit
    ("p90<=86400s", "p90", 86_400_000.0),  # one day: the largest
])
def test_budget_grammar_accepts(text: str, stat: str, limit_ms: float) -> None:
    budget = parse_budget(text)
    assert budget.statistic == stat and budget.limit_ms == pytest.approx(limit_ms)
    assert budget.text == "".join(text.split())


@pytest.mark.parametrize(("text", "why"), [
    ("p0<=5ms", r"outside 0 < N < 100.*min instead of p0"),
    ("p0.0<=5ms", r"outside 0 < N < 100.*min instead of p0"),
    ("p100<=5ms", r"outside 0 < N < 100.*max instead of p100"),
    ("p100.5<=5ms", r"outside 0 < N < 100"),
    ("p90<=nanms", "finite"),
    ("p90<=infms", "finite"),
    ("p90<=-infms", "finite"),
    ("p90<=1e999ms", "finite"),
    ("p90<=-1ms", "must be positive"),
    ("p90<=0ms", "must be positive"),
    ("p90<=2e5s", "over one day"),
    ("p90<=0.1ns", "below one nanosecond"),
    ("p90<=5days", "unknown unit 'days'"),
    ("p90<=5", "cannot parse"),
    ("p90=5ms", "cannot parse"),
    ("p9x<=5ms", "unknown statistic"),
])
def test_budget_grammar_refuses_and_names_the_argument(text: str, why: str) -> None:
    for argument in ("--budget", "targets[0].latency[1]"):
        with pytest.raises(BadInputError, match=why) as info:
            parse_budget(text, argument=argument)
        assert info.value.exit_code == 2 and info.value.path == argument
        assert "\n" not in info.value.one_line()


def test_parse_budgets_names_its_argument() -> None:
    assert [b.statistic for b in parse_budgets(["p90<=1ms", "mean<.5ms"], argument="x")] == ["p90", "mean"]
    assert parse_budgets(None) == [] and parse_budgets("max<1s")[0].limit_ms == 1000.0
    with pytest.raises(BadInputError) as info:
        parse_budgets(["p90<=1ms", "p0<=1ms"], argument="manifest.json: info.budgets.latency")
    assert info.value.path == "manifest.json: info.budgets.latency"
    with pytest.raises(BadInputError, match="must be a string"):
        parse_budget(25, argument="--budget")  # a number from a JSON file


@pytest.mark.parametrize(("text", "expected"), [
    ("sqnr>=20dB", {"min_sqnr_db": 20.0}),
    ("sqnr>=20", {"min_sqnr_db": 20.0}),
    ("cosine>=0.999, drop<=1", {"min_cosine": 0.999, "max_drop": 1.0}),
    (["drop<=1.5pts", "sqnr_db>=.5e2db"], {"max_drop": 1.5, "min_sqnr_db": 50.0}),
    ("min_cosine>=0.99,max_drop<=2points", {"min_cosine": 0.99, "max_drop": 2.0}),
])
def test_accuracy_budget_forms(text: str | list[str], expected: dict[str, float]) -> None:
    assert parse_accuracy_thresholds(text) == expected
    assert parse_accuracy_budget(text).to_json() == expected


@pytest.mark.parametrize(("text", "why"), [
    ("sqnr<=20", "sqnr budgets are written sqnr>=VALUE"),
    ("drop>=1", "drop budgets are written drop<=VALUE"),
    ("accuracy>=0.9", "cannot parse"),
    ("", "empty accuracy budget"),
    (" , ", "empty accuracy budget"),
    ("cosine>=nan", "finite number from 0 to 1"),
    ("cosine>=1.5", "finite number from 0 to 1"),
    ("drop<=inf", "finite number from 0 to 100"),
    ("drop<=-1", "finite number from 0 to 100"),
    ("sqnr>=1e999dB", "finite number from 0 to 400"),
    ("cosine>=0.9dB", "unit 'dB' does not fit min_cosine"),
    ("sqnr>=20pts", "unit 'pts' does not fit min_sqnr_db"),
    ("sqnr>=20,sqnr>=30", "given twice"),
])
def test_accuracy_budget_refusals_name_the_argument(text: str, why: str) -> None:
    with pytest.raises(BadInputError, match=why) as info:
        parse_accuracy_budget(text)
    assert info.value.exit_code == 2 and info.value.path == "--accuracy-budget"
    with pytest.raises(BadInputError) as info:
        parse_accuracy_thresholds(text, argument="budgets.accuracy")
    assert info.value.path == "budgets.accuracy"


@pytest.mark.parametrize(("key", "value"), [("min_cosine", True), ("min_cosine", "0.9"), ("max_drop", float("nan")),
                                            ("min_sqnr_db", float("inf")), ("unknown", 1.0)])
def test_accuracy_threshold_values(key: str, value: object) -> None:
    with pytest.raises(BadInputError) as info:
        check_accuracy_threshold(key, value, argument="--min-sqnr")
    assert info.value.path == "--min-sqnr"
    assert check_accuracy_threshold("min_sqnr_db", 20, argument="--min-sqnr") == 20.0


def test_accuracy_budget_built_in_python_refuses_nan() -> None:
    assert AccuracyBudget(min_cosine=0.99).to_json() == {"min_cosine": 0.99} and AccuracyBudget().empty
    with pytest.raises(BadInputError, match="AccuracyBudget: min_cosine"):
        AccuracyBudget(min_cosine=float("nan"))
    with pytest.raises(BadInputError, match="max_drop"):
        AccuracyBudget(max_drop=101.0)


@pytest.mark.parametrize("bad", ["nan%", "inf%", "-inf%", "1e999%", "-5%", "5000%", float("nan"), float("inf"), -0.1,
                                 True, "10", "ten%"])
def test_regression_refuses_nan_inf_negative(bad: object) -> None:
    with pytest.raises(BadInputError) as info:
        parse_regression(bad)
    assert info.value.path == "--max-regression" and info.value.exit_code == 2
    with pytest.raises(BadInputError) as info:
        parse_regression(bad, argument="[gate] max_regression")
    assert info.value.path == "[gate] max_regression"
    assert parse_regression(".5%") == pytest.approx(0.005) and parse_regression("1e1%") == pytest.approx(0.1)


# --- fuzz: whatever the text, the parsers answer with a value or an EdgekitError, never a crash

_PIECES = st.sampled_from(["p", "p0", "p99.9", "p100", "mean", "min", "max", "median", "std", "<=", "<", ">=", "=",
                           "1", ".5", "2e-1", "1e999", "nan", "inf", "-", "ms", "us", "µs", "ns", "s", "dB", " ",
                           ",", "sqnr", "cosine", "drop", "%", "e", "."])
_TEXTS = st.one_of(st.text(max_size=40), st.lists(_PIECES, max_size=8).map("".join))


@settings(max_examples=200, deadline=None)
@given(_TEXTS)
def test_fuzz_latency_budget(text: str) -> None:
    try:
        budget = parse_budget(text)
    except EdgekitError as exc:
        assert exc.exit_code == 2 and exc.path == "--budget"
        return
    assert math.isfinite(budget.limit_ms) and 1e-6 * (1 - 1e-9) <= budget.limit_ms <= 86_400_000
    assert budget.statistic in ("min", "mean", "max", "std") or 0 < float(budget.statistic[1:]) < 100


@settings(max_examples=200, deadline=None)
@given(st.one_of(_TEXTS, st.lists(_TEXTS, max_size=3)))
def test_fuzz_accuracy_budget(text: str | list[str]) -> None:
    try:
        budget = parse_accuracy_budget(text)
    except EdgekitError as exc:
        assert exc.exit_code == 2
        return
    assert not budget.empty and all(math.isfinite(v) for v in budget.to_json().values())


@settings(max_examples=200, deadline=None)
@given(st.one_of(_TEXTS, st.floats(), st.integers()))
def test_fuzz_regression(value: str | float) -> None:
    try:
        fraction = parse_regression(value)
    except EdgekitError as exc:
        assert exc.exit_code == 2
        return
    assert math.isfinite(fraction) and 0 <= fraction <= 10


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


def test_junit_has_real_times_and_no_none_properties(bundle: Path, tmp_path: Path) -> None:
    result = _fake_bench(bundle, 2.0, budgets=["p90<=5ms"])
    result.environment["threads"] = None  # unknown: left out, never written as "None"
    root = ET.parse(bench_junit(result, tmp_path / "b.xml")).getroot()
    suite = root.find("testsuite")
    assert sum(result.samples_ms) > 0
    assert float(suite.get("time")) == pytest.approx(sum(result.samples_ms) / 1000.0, rel=1e-2, abs=1e-3)
    assert float(suite.find("testcase").get("time")) > 0
    assert "None" not in {p.get("value") for p in suite.find("properties")}
    assert "threads" not in {p.get("name") for p in suite.find("properties")}
