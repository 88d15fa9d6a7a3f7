"""`edgekit bench` and `edgekit gate` as a CI job runs them: exit codes, JSON, JUnit, plot."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from tests._bench_helpers import bundle_with_reference, compile_bundle, edit_manifest, tiny_model

runner = CliRunner()
FAST = ["--warmup", "2", "--iters", "20"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("clibench"))


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_generous_budget_passes_and_writes_json_junit_plot(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    res = _run("bench", bundle, *FAST, "--budget", "p90<=10s", "--budget", "mean<10s",
               "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml", "--plot", tmp_path / "r.png")
    assert res.exit_code == 0, res.output
    assert "p99" in res.output and "measured" in res.output and "all budgets hold" in res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"]["exit_code"] == 0 and len(data["budgets"]) == 2
    cases = ET.parse(tmp_path / "r.xml").getroot().findall("testsuite/testcase")
    assert len(cases) == 2 and all(c.find("failure") is None for c in cases)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_impossible_budget_fails_with_exit_1(bundle: Path, tmp_path: Path) -> None:
    res = _run("bench", bundle, *FAST, "--budget", "p50<0.001us", "--junit", tmp_path / "f.xml")
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output
    failures = ET.parse(tmp_path / "f.xml").getroot().findall("testsuite/testcase/failure")
    assert len(failures) == 1


def test_bad_budget_is_a_usage_error(bundle: Path) -> None:
    res = _run("bench", bundle, *FAST, "--budget", "p90 under 5ms")
    assert res.exit_code == 2 and "cannot parse budget" in res.output


def test_bare_json_goes_to_stdout(bundle: Path) -> None:
    res = runner.invoke(app, ["bench", str(bundle), *FAST, "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["schema"] == "edgekit.bench/1"


def test_baseline_regression_and_environment_refusal(bundle: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert _run("bench", bundle, *FAST, "--json", base).exit_code == 0
    data = json.loads(base.read_text())
    data["latency_ms"]["p50"] = data["latency_ms"]["p50"] / 1000  # a baseline 1000x faster: a regression
    data["samples_ms"] = []
    data["contention"], data["environment"]["load_average"] = None, None  # unknown: this test is not about load
    faster = tmp_path / "faster.json"
    faster.write_text(json.dumps(data))
    res = _run("bench", bundle, *FAST, "--baseline", faster, "--max-regression", "10%")
    assert res.exit_code == 1, res.output
    assert "baseline" in res.output
    data["environment"]["cpu_model"] = "Another CPU"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    refused = _run("bench", bundle, *FAST, "--baseline", other)
    assert refused.exit_code == 2 and "different environment" in refused.output
    forced = _run("bench", bundle, *FAST, "--baseline", other, "--force")
    assert forced.exit_code == 1 and "forced" in forced.output


def test_onnx_is_compiled_on_the_fly(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "m.onnx")
    out = tmp_path / "c.json"
    res = _run("bench", "cpu", model, "--backend", "onnxruntime", *FAST, "--batch", "2", "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["compile_ms"] > 0 and data["config"]["batch"] == 2 and data["bundle"]["adapter"] == "onnxruntime"
    assert "compile" in res.output
    assert _run("bench", model, "--target", "cpu", "--backend", "onnxruntime", *FAST).exit_code == 0


def _detector(path: Path) -> Path:
    """x[N,3,H,W] -> Conv -> Relu: spatial dims dynamic, as PP-OCRv4 det is exported."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "height", "width"])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_onnx_with_unsized_dims_is_refused_and_sizes_are_part_of_the_figure(tmp_path: Path) -> None:
    model = _detector(tmp_path / "det.onnx")
    res = _run("bench", model, "--backend", "onnxruntime", *FAST, "--budget", "p90<=200ms")
    assert res.exit_code == 2, res.output
    assert "dim 2 ('height')" in res.output and "--input-shape x:1,3,<height>,<width>" in res.output
    out = tmp_path / "r.json"
    res = _run("bench", model, "--backend", "onnxruntime", *FAST, "-s", "x:1,3,64,48", "--json", out)
    assert res.exit_code == 0, res.output
    assert "inputs: x:1,3,64,48" in res.output
    assert json.loads(out.read_text())["input_shapes"] == {"x": [1, 3, 64, 48]}


def test_missing_bundle_is_a_usage_error(tmp_path: Path) -> None:
    res = _run("bench", tmp_path / "nope", *FAST)
    assert res.exit_code == 2


def test_gate_bundle_exit_codes(tmp_path: Path) -> None:
    good = bundle_with_reference(tmp_path / "a", {"latency": ["p90<=10s"], "accuracy": {"min_cosine": 0.99}})
    res = _run("gate", good, *FAST, "--junit", tmp_path / "g.xml", "--json", tmp_path / "g.json")
    assert res.exit_code == 0, res.output
    assert len(ET.parse(tmp_path / "g.xml").getroot().findall("testsuite/testcase")) == 2
    assert json.loads((tmp_path / "g.json").read_text())["accuracy_source"].startswith("re-run")
    bad = edit_manifest(compile_bundle(tmp_path / "b"), budgets={"latency": ["p99<0.001us"]})
    assert _run("gate", bad, *FAST).exit_code == 1
    none = compile_bundle(tmp_path / "c")
    assert _run("gate", none).exit_code == 2
    # accuracy with no reference data to re-run on: not checkable here, exit 4, never 0
    bare = edit_manifest(compile_bundle(tmp_path / "d"), budgets={"accuracy": {"min_cosine": 0.5}})
    res = _run("gate", bare)
    assert res.exit_code == 4 and "no FP32 reference data" in res.output


def test_npu_estimate_is_gated_and_labelled_estimated(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    npu = edit_manifest(compile_bundle(tmp_path, backend="null"), target="ascend310", run_provenance="emulated",
                        estimate={"latency_ms": 3.5, "assumptions": ["roofline (test)"], "provenance": "estimated"})
    res = _run("bench", npu, "--budget", "p90<=1ms", "--json", tmp_path / "e.json", "--plot", tmp_path / "e.png")
    assert res.exit_code == 1, res.output
    assert "estimated" in res.output and "3.5 ms estimated" in res.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["provenance"] == "estimated" and data["latency_ms"] is None
    assert data["budgets"][0]["provenance"] == "estimated" and data["budgets"][0]["status"] == "fail"
    assert (tmp_path / "e.png").stat().st_size > 0
    assert _run("bench", npu, "--budget", "p90<=5ms").exit_code == 0


# ---------------------------------------------------------------------------------------------
# A/B regression gate: --baseline-bundle (statistics and exit codes are tested with fake clocks in
# tests/checks/test_regression.py; here: the flags, the output, and hostile values)


@pytest.fixture(scope="module")
def old_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("clibench-old"), name="old")


def test_baseline_bundle_prints_the_verdict_line_json_and_junit(bundle: Path, old_bundle: Path,
                                                                tmp_path: Path) -> None:
    res = _run("bench", bundle, "--baseline-bundle", old_bundle, "--max-regression", "10%", "--ab-max-seconds", "3",
               "--json", tmp_path / "ab.json", "--junit", tmp_path / "ab.xml")
    assert res.exit_code in (0, 1, 4), res.output  # the verdict is this host's; its shape is what is tested
    assert "NEW is " in res.output and "× OLD (95 % CI " in res.output
    assert "rule: pass if" in res.output and "contention: load" in res.output
    data = json.loads((tmp_path / "ab.json").read_text())
    comparison = data["comparison"]
    assert comparison["status"] in ("pass", "regression", "inconclusive")
    assert comparison["rounds"] >= 1 and comparison["headline"].startswith("NEW is ")
    assert data["verdict"]["exit_code"] == res.exit_code
    case = ET.parse(tmp_path / "ab.xml").getroot().find("testsuite/testcase")
    assert case is not None and "NEW is " in ET.tostring(case, encoding="unicode")


def test_gate_takes_a_baseline_bundle(old_bundle: Path) -> None:
    res = _run("gate", old_bundle, "--baseline-bundle", old_bundle, "--ab-max-seconds", "2")
    assert res.exit_code in (0, 1, 4), res.output  # a bundle without stored budgets: the A/B check alone
    assert "NEW is " in res.output and "stored budgets of" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--ab-max-seconds", "nan"], "--ab-max-seconds"),
    (["--ab-max-seconds", "inf"], "--ab-max-seconds"),
    (["--ab-max-seconds", "-1"], "--ab-max-seconds"),
    (["--ab-max-seconds", "0"], "--ab-max-seconds"),
    (["--ab-max-seconds", "1e12"], "--ab-max-seconds"),
    (["--ab-max-seconds", "ten"], "--ab-max-seconds"),
    (["--max-regression", "nan%"], "--max-regression"),
    (["--max-regression", "inf%"], "--max-regression"),
    (["--max-regression", "-5%"], "--max-regression"),
    (["--max-regression", "1e9%"], "--max-regression"),
    (["--max-regression", "0%"], "--max-regression"),
    (["--max-regression", "ten"], "--max-regression"),
])
@pytest.mark.parametrize("verb", ["bench", "gate"])
def test_hostile_ab_flags_are_one_line_usage_errors(bundle: Path, old_bundle: Path, verb: str, args: list[str],
                                                   message: str) -> None:
    res = _run(verb, bundle, "--baseline-bundle", old_bundle, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output


@pytest.mark.parametrize("verb", ["bench", "gate"])
def test_baseline_bundle_flag_refuses_what_is_not_a_bundle(bundle: Path, tmp_path: Path, verb: str) -> None:
    missing = _run(verb, bundle, "--baseline-bundle", tmp_path / "nope")
    assert missing.exit_code == 2 and "no such bundle" in missing.output
    (tmp_path / "f.txt").write_text("x")
    a_file = _run(verb, bundle, "--baseline-bundle", tmp_path / "f.txt")
    assert a_file.exit_code == 2 and "not a bundle directory" in a_file.output
    lonely = _run(verb, bundle, "--ab-max-seconds", "5")
    assert lonely.exit_code == 2 and "--ab-max-seconds needs --baseline-bundle" in lonely.output


def test_baseline_bundle_and_a_json_baseline_together_are_refused(bundle: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert _run("bench", bundle, *FAST, "--json", base).exit_code == 0
    res = _run("bench", bundle, "--baseline", base, "--baseline-bundle", bundle)
    assert res.exit_code == 2 and "either --baseline" in res.output


def test_bundles_with_other_inputs_are_refused(bundle: Path, tmp_path: Path) -> None:
    from edgekit.stages.compile import compile as compile_model

    other = compile_model(tiny_model(tmp_path / "wide.onnx", features=32), output=tmp_path / "wide", target="cpu",
                          backend="onnxruntime").bundle.path
    res = _run("bench", bundle, "--baseline-bundle", other, "--ab-max-seconds", "2")
    assert res.exit_code == 2 and "different inputs" in res.output


def test_the_verdict_is_the_last_line_after_the_files_written(tmp_path: Path) -> None:
    bundle = compile_bundle(tmp_path / "a")
    res = _run("bench", bundle, *FAST, "--budget", "p50<=1ns", "--json", tmp_path / "r.json")
    assert res.exit_code == 1
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert lines[-1].strip() == "budget failed" and any(line.startswith("wrote ") for line in lines[:-1])
    res = _run("bench", bundle, *FAST)
    assert res.exit_code == 0 and "no budgets given: figures only" in res.output


def test_throughput_mode_prints_items_per_second_json_and_junit_property(bundle: Path, tmp_path: Path) -> None:
    res = _run("bench", bundle, "--mode", "throughput", "--duration", "0.2", "--streams", "2",
               "--budget", "throughput>=1/s", "--json", tmp_path / "t.json", "--junit", tmp_path / "t.xml")
    assert res.exit_code == 0, res.output
    assert "items/s" in res.output and "2 in flight" in res.output and "onnxruntime: 2 session(s)" in res.output
    assert "cold start: load" in res.output  # load and first run apart from the steady state
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["mode"] == "throughput" and data["throughput"]["streams"] == 2
    assert data["budgets"][0]["unit"] == "items/s" and data["budgets"][0]["status"] == "pass"
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "t.xml").getroot().iter("property")}
    assert props["mode"] == "throughput" and float(props["throughput_items_per_s"]) > 0
    assert props["throughput_streams"] == "2"


@pytest.mark.parametrize("args, message", [
    (["--mode", "fast"], "--mode"),
    (["--streams", "2"], "--streams needs --mode throughput"),
    (["--mode", "throughput", "--streams", "0"], "--streams"),
    (["--mode", "throughput", "--streams", "-1"], "--streams"),
    (["--mode", "throughput", "--streams", "100000"], "--streams"),
    (["--mode", "throughput", "--iters", "5"], "--iters"),
    (["--mode", "throughput", "--duration", "nan"], "--duration"),
    (["--mode", "throughput", "--duration", "inf"], "--duration"),
    (["--mode", "throughput", "--duration", "0"], "--duration"),
    (["--mode", "throughput", "--budget", "throughput>=nan/s"], "--budget"),
    (["--mode", "throughput", "--budget", "throughput>=inf/s"], "--budget"),
    (["--mode", "throughput", "--budget", "throughput>=0/s"], "--budget"),
    (["--mode", "throughput", "--budget", "throughput>=-2/s"], "--budget"),
    (["--mode", "throughput", "--budget", "throughput>=1e30/s"], "--budget"),
])
def test_hostile_throughput_flags_are_one_line_usage_errors(bundle: Path, args: list[str], message: str) -> None:
    res = _run("bench", bundle, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1, res.output


def test_streams_that_is_not_a_number_is_a_usage_error(bundle: Path) -> None:
    res = runner.invoke(app, ["bench", str(bundle), "--mode", "throughput", "--streams", "nan"])
    assert res.exit_code == 2
