"""Throughput mode (issue 17): the runner contract, the bench result, the budget grammar, hostile options."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from edgekit.adapters.base import GENERIC_THROUGHPUT, MAX_STREAMS, Runner, check_streams, run_streams
from edgekit.checks.budgets import BudgetVerdict, parse_budget, validate_bench_json
from edgekit.checks.latency import BenchResult, bench
from edgekit.errors import BadInputError, UnsupportedError
from edgekit.runtime.__main__ import main as runtime_main
from edgekit.specs import TensorSpec
from tests._bench_helpers import compile_bundle, tiny_model

SHORT = 0.2  # seconds of throughput run: enough for hundreds of tiny-model calls


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("tput"))


class SlowRunner(Runner):
    """Sleeps 2 ms per call (releases the GIL, like a backend); counts the most calls in flight at once."""

    def __init__(self, *, concurrent: bool) -> None:
        super().__init__([TensorSpec("x", (1, 16))], ["y"])
        self.concurrent_run = concurrent
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        threading.Event().wait(0.002)
        with self._lock:
            self.in_flight -= 1
        return {"y": np.zeros((1, 8), np.float32)}


FEED = {"x": np.zeros((1, 16), np.float32)}


# --- the runner contract ------------------------------------------------------------------------------


def test_generic_throughput_runs_threads_in_parallel_and_says_it_is_generic() -> None:
    runner = SlowRunner(concurrent=True)
    run = runner.throughput(FEED, streams=4, seconds=SHORT, items_per_call=3)
    assert run.method == GENERIC_THROUGHPUT and run.streams == 4
    assert runner.most == 4  # really 4 in flight, not a sequential loop
    assert run.calls == len(run.latencies_ms) and run.items_per_s == pytest.approx(3 * run.calls / run.seconds)
    assert run.items_per_s > 1.5 * 3 * 1000 / 2.0 / 2  # well above one stream's ~500 calls/s x 3 items


def test_generic_throughput_refuses_threads_on_a_runner_that_is_not_thread_safe() -> None:
    runner = SlowRunner(concurrent=False)
    with pytest.raises(UnsupportedError, match="threads at once") as err:
        runner.throughput(FEED, streams=2, seconds=SHORT)
    assert err.value.exit_code == 3 and runner.most == 0
    run = runner.throughput(FEED, seconds=SHORT)  # default: one stream on such a runner
    assert run.streams == 1 and runner.most == 1


@pytest.mark.parametrize("bad", [0, -1, MAX_STREAMS + 1, 10**12, True, 2.5, math.nan, math.inf, "2"])
def test_hostile_streams_are_refused(bad: object) -> None:
    with pytest.raises(BadInputError, match="streams") as err:
        check_streams(bad)
    assert err.value.exit_code == 2


def test_run_streams_reraises_a_worker_error_on_the_caller() -> None:
    def boom() -> None:
        raise RuntimeError("backend failed")

    with pytest.raises(RuntimeError, match="backend failed"):
        run_streams([boom, boom], 0.05)


# --- the budget grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, op, limit", [("throughput>=120/s", ">=", 120.0), ("throughput > 2.5 items/s", ">", 2.5),
                                             ("THROUGHPUT>=1e3/s", ">=", 1000.0)])
def test_throughput_budget_is_a_floor_in_items_per_second(text: str, op: str, limit: float) -> None:
    budget = parse_budget(text)
    assert (budget.statistic, budget.op, budget.limit_ms, budget.unit) == ("throughput", op, limit, "items/s")
    assert budget.holds(limit * 2) and not budget.holds(limit / 2)
    assert budget.holds(limit) == (op == ">=")


@pytest.mark.parametrize("text, message", [
    ("throughput>=nan/s", "finite"), ("throughput>=inf/s", "finite"), ("throughput>=-inf/s", "finite"),
    ("throughput>=0/s", "positive"), ("throughput>=-5/s", "positive"), ("throughput>=1e12/s", "over"),
    ("throughput<=100/s", "floor"), ("throughput<5/s", "floor"), ("throughput>=100", "cannot parse"),
    ("throughput>=100ms", "cannot parse"), ("throughput>=/s", "cannot parse"), ("throughputs>=5/s", "cannot parse"),
])
def test_hostile_throughput_budgets_are_refused(text: str, message: str) -> None:
    with pytest.raises(BadInputError, match=message) as err:
        parse_budget(text)
    assert err.value.path == "--budget" and err.value.exit_code == 2


def test_a_floor_verdict_has_positive_margin_above_the_limit() -> None:
    above = BudgetVerdict("throughput>100/s", "latency", "throughput", ">", 100.0, 130.0, "items/s", "pass",
                          "measured", "--budget")
    assert above.margin == pytest.approx(30.0) and above.margin_pct == pytest.approx(30.0)  # was -30 for ">"


# --- bench(mode="throughput") ---------------------------------------------------------------------------


def test_bench_throughput_reports_items_per_second_latency_and_method(bundle: Path, tmp_path: Path) -> None:
    result = bench(bundle, mode="throughput", streams=2, duration=SHORT, threads=2,
                   budgets=["throughput>=1/s", "throughput>=1e9/s", "p99<=10s"])
    tp = result.throughput
    assert tp is not None and result.mode == "throughput" and not tp.generic
    assert tp.streams == 2 and "onnxruntime: 2 session(s)" in tp.method
    assert tp.items == tp.calls and tp.items_per_s == pytest.approx(tp.calls / tp.seconds)
    assert result.stats is not None and result.stats.n == tp.calls == len(result.samples_ms)
    assert result.stats.throughput == tp.items_per_s  # not 1000/mean of overlapping requests
    assert result.load_ms is not None and result.cold_ms is not None  # cold start kept apart
    assert [v.status for v in result.verdicts] == ["pass", "fail", "pass"] and result.exit_code == 1
    assert result.verdicts[0].unit == "items/s" and result.verdicts[0].margin > 0
    data = result.to_json()
    validate_bench_json(data)
    assert data["mode"] == "throughput" and data["throughput"]["items_per_s"] == tp.items_per_s
    back = BenchResult.from_json(json.loads(json.dumps(data)))  # a device's reply
    assert back.throughput == tp and back.value("throughput") == tp.items_per_s
    assert back.stats is not None and back.stats.throughput == tp.items_per_s


def test_bench_throughput_batches_a_dynamic_batch_and_refuses_a_fixed_one(bundle: Path, tmp_path: Path) -> None:
    result = bench(bundle, mode="throughput", duration=SHORT, batch=4, streams=1)
    assert result.input_shapes == {"x": [4, 16]}
    assert result.throughput is not None and result.throughput.items == 4 * result.throughput.calls
    from edgekit.stages.compile import compile as compile_model

    fixed = compile_model(tiny_model(tmp_path / "fixed.onnx", dynamic_batch=False), output=tmp_path / "fixed",
                          backend="onnxruntime").bundle.path
    with pytest.raises(BadInputError, match="input 'x' has a fixed batch of 1") as err:
        bench(fixed, mode="throughput", duration=SHORT, batch=4)
    assert err.value.path == "--batch"


def test_throughput_budget_in_latency_mode_is_the_sequential_rate_and_says_so(bundle: Path) -> None:
    result = bench(bundle, iters=20, warmup=1, budgets=["throughput>=1/s"])
    verdict = result.verdicts[0]
    assert result.throughput is None and result.mode == "latency"
    assert verdict.measured == pytest.approx(result.stats.throughput) and verdict.status == "pass"
    assert "sequential" in verdict.note
    validate_bench_json(result.to_json())


def test_throughput_budget_is_not_a_baseline_regression_statistic(bundle: Path) -> None:
    first = bench(bundle, iters=20, warmup=1)
    again = bench(bundle, iters=20, warmup=1, budgets=["throughput>=1/s"], baseline=first.to_json(),
                  max_regression="1000%", force=True)
    assert [v.kind for v in again.verdicts] == ["latency", "regression"]
    assert again.verdicts[1].statistic == "p50"  # the default, never "throughput<=baseline+x%"


@pytest.mark.parametrize("kwargs, flag", [
    ({"mode": "fast"}, "--mode"), ({"streams": 2}, "--streams"),
    ({"mode": "throughput", "iters": 10}, "--iters"), ({"mode": "throughput", "streams": 0}, "--streams"),
    ({"mode": "throughput", "streams": -3}, "--streams"), ({"mode": "throughput", "streams": 10**9}, "--streams"),
    ({"mode": "throughput", "streams": math.nan}, "--streams"), ({"mode": "throughput", "duration": math.nan},
                                                                 "--duration"),
    ({"mode": "throughput", "duration": math.inf}, "--duration"), ({"mode": "throughput", "duration": 0}, "--duration"),
    ({"mode": "throughput", "duration": -1.0}, "--duration"),
    ({"mode": "throughput", "device": "ssh://x@y"}, "--mode"),
])
def test_hostile_bench_options_are_refused_before_any_work(bundle: Path, kwargs: dict, flag: str) -> None:
    with pytest.raises(BadInputError) as err:
        bench(bundle, loader=_no_load, **kwargs)
    assert err.value.path == flag and err.value.exit_code == 2


def test_throughput_with_a_baseline_bundle_is_refused(bundle: Path) -> None:
    with pytest.raises(BadInputError, match="--baseline-bundle") as err:
        bench(bundle, mode="throughput", baseline_bundle=bundle, loader=_no_load)
    assert err.value.path == "--baseline-bundle"


def _no_load(*_a: object, **_k: object) -> Runner:
    raise AssertionError("loaded although the options were bad")


# --- the device runtime ---------------------------------------------------------------------------------


def test_runtime_bench_throughput_prints_items_per_second_and_cold_start(bundle: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.json"
    code = runtime_main(["bench", str(bundle), "--mode", "throughput", "--duration", str(SHORT), "--streams", "2",
                         "--budget", "throughput>=1/s", "--json", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "throughput" in text and "items/s" in text and "2 in flight" in text
    assert "cold start: load" in text
    data = json.loads(out.read_text())
    validate_bench_json(data)
    assert data["throughput"]["streams"] == 2


@pytest.mark.parametrize("args", [["--streams", "0"], ["--streams", "nan"], ["--mode", "fast"],
                                  ["--streams", "2"], ["--mode", "throughput", "--iters", "5"],
                                  ["--mode", "throughput", "--budget", "throughput>=inf/s"]])
def test_runtime_hostile_throughput_flags_exit_2(bundle: Path, args: list[str], capsys: pytest.CaptureFixture) -> None:
    if args == ["--streams", "0"]:
        args = ["--mode", "throughput", *args]
    try:
        code = runtime_main(["bench", str(bundle), "--quiet", *args])
    except SystemExit as exc:  # argparse refuses what is not a choice or an int
        code = int(exc.code or 0)
    assert code == 2, capsys.readouterr()


@pytest.mark.parametrize("field, bad", [("items_per_s", math.nan), ("items_per_s", -1.0), ("streams", 0),
                                        ("seconds", math.inf), ("calls", -5), ("method", None)])
def test_a_device_reply_with_bad_throughput_figures_is_refused(bundle: Path, field: str, bad: object) -> None:
    from edgekit.errors import ToolchainMissingError

    data = bench(bundle, mode="throughput", duration=0.05, streams=1).to_json()
    data["throughput"][field] = bad
    if bad is None:
        del data["throughput"][field]
    with pytest.raises(ToolchainMissingError, match="malformed bench result"):
        BenchResult.from_json(data)
