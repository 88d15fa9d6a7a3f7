"""Report: tables, figures with provenance, the precision-auto frontier, and no-matplotlib fallback."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from edgekit.checks.budgets import BudgetVerdict
from edgekit.pipeline import Candidate, PipelineResult, StageRun, TargetResult
from edgekit.pipeline.report import write_report


def _result(tmp_path: Path) -> PipelineResult:
    common = {"latency_provenance": "measured", "latency_kind": "side-by-side median",
              "accuracy_provenance": "measured"}
    cands = [
        Candidate("onnxruntime", "fp32", "passed", "fp32", latency_ms=8.0, sqnr_db=float("inf"), cosine=1.0,
                  meets_budget=True, **common),
        Candidate("openvino", "bf16", "passed", "bf16", latency_ms=5.0, sqnr_db=31.0, cosine=0.9995,
                  meets_budget=True, chosen=True, decision="fastest-median: 5.000 ms", **common),
        Candidate("onnxruntime", "int8", "rejected", "int8", latency_ms=3.0, sqnr_db=12.0, cosine=0.97,
                  meets_budget=False, reason="SQNR 12.0 dB < 20", **common),
        Candidate("tvm", "fp32", "failed", reason="tvm: not installed"),
    ]
    cpu = TargetResult("cpu", "passed", bundle=tmp_path / "out" / "cpu", adapter="openvino", precision="auto",
                       precision_used="bf16", run_provenance="measured", latency={"p50": 5.0, "p90": 6.0, "p99": 7.0},
                       latency_provenance="measured",
                       accuracy={"accuracy": None, "sqnr_db": 31.0, "cosine": 0.9995, "provenance": "measured"},
                       verdicts=[BudgetVerdict("p90<=25ms", "latency", "p90", "<=", 25.0, 6.0, "ms", "pass",
                                               "measured", "recipe")], candidates=cands,
                       decision="fastest-median: 5.000 ms")
    npu = TargetResult("ascend310", "failed", "p50<=1ms: 2.6 ms (estimated)", bundle=tmp_path / "out" / "ascend310",
                       adapter="ascend-atc", precision="fp16", precision_used="fp16", run_provenance="emulated",
                       latency={"p50": 2.6, "p90": 2.6}, latency_provenance="estimated",
                       accuracy={"accuracy": None, "sqnr_db": 41.0, "cosine": 0.9999, "provenance": "emulated"},
                       verdicts=[BudgetVerdict("p50<=1ms", "latency", "p50", "<=", 1.0, 2.6, "ms", "fail",
                                               "estimated", "recipe", "estimated by a cost model")])
    gpu = TargetResult("cuda", "unavailable", "no CUDAExecutionProvider")
    stages = [StageRun("export", None, True, 0.01, "k", "exported"), StageRun("checks", "cpu", False, 0.01)]
    return PipelineResult("demo", tmp_path / "r.toml", tmp_path / "out", [cpu, npu, gpu], stages,
                          {"eval": "synthetic", "synthetic": True})


def test_report_tables_and_figures(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = _result(tmp_path)
    md_path, html_path = write_report(result, tmp_path / "out")
    md = md_path.read_text()
    assert "**FAILED** (exit 1)" in md
    assert re.search(r"\| ascend310 \| FAILED \| ascend-atc \|.*\| estimated \|.*\| emulated \|", md)
    assert "| cuda | UNAVAILABLE |" in md and "no CUDAExecutionProvider" in md
    assert "| ★ openvino | auto" not in md and "| ★ openvino | bf16 → bf16 | passed |" in md  # chosen marked
    assert "cpu: ★ openvino bf16 — fastest-median: 5.000 ms" in md  # the rule, with the figure it used
    assert "5 ms / 6 ms / 7 ms" in md  # p50 / p90 / p99
    assert "SQNR 12.0 dB < 20" in md  # why a candidate lost
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").glob("*.png"))
    assert figures == ["accuracy.png", "frontier-cpu.png", "latency.png"]
    for name in figures:
        assert f"figures/{name}" in md
    html = html_path.read_text()
    embedded = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(embedded) == 3 and all(base64.b64decode(e).startswith(b"\x89PNG") for e in embedded)
    assert "estimated" in html and "emulated" in html and "measured" in html


def test_frontier_marks_every_candidate_with_provenance(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.axes
    import matplotlib.figure

    labels: list[str] = []
    keys: list[str] = []
    annotate, text = matplotlib.axes.Axes.annotate, matplotlib.figure.Figure.text

    def spy_annotate(self, label, *args, **kwargs):
        labels.append(label)
        return annotate(self, label, *args, **kwargs)

    def spy_text(self, x, y, s, *args, **kwargs):
        keys.append(s)
        return text(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", spy_annotate)
    monkeypatch.setattr(matplotlib.figure.Figure, "text", spy_text)
    from edgekit.pipeline.report import plot_frontier

    target = _result(tmp_path).targets[0]
    assert plot_frontier(target, tmp_path / "f.png") is not None
    # points carry short numbers (labels never overlap); the key names each with its provenance
    assert labels == ["1", "2", "3"]  # the tvm candidate was never built: nothing to plot
    [key] = keys
    assert "1: onnxruntime/fp32" in key and "3: onnxruntime/int8" in key
    assert key.count("(side-by-side median)") == 3 and key.count("(acc measured)") == 3


def test_report_without_matplotlib(tmp_path: Path, monkeypatch) -> None:
    import edgekit.pipeline.report as report

    monkeypatch.setattr(report, "_PLOTS_ENABLED", [False])
    md_path, html_path = write_report(_result(tmp_path), tmp_path / "out")
    assert "Plots skipped: matplotlib is not installed" in md_path.read_text()
    assert "<img" not in html_path.read_text()


def test_figures_are_cached_by_content(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import edgekit.pipeline.report as report
    from edgekit.cache import StageCache

    calls: list[str] = []
    original = report.plot_latency

    def counting(result, path):
        calls.append(str(path))
        return original(result, path)

    monkeypatch.setattr(report, "plot_latency", counting)
    cache = StageCache(tmp_path / "cache")
    result = _result(tmp_path)
    write_report(result, tmp_path / "out1", cache=cache)
    write_report(result, tmp_path / "out2", cache=cache)  # same figures: served from the cache
    assert len(calls) == 1 and (tmp_path / "out2" / "figures" / "latency.png").is_file()
    result.targets[0].latency["p50"] = 4.0  # what the figure shows changed: redrawn
    write_report(result, tmp_path / "out3", cache=cache)
    assert len(calls) == 2


def test_report_shows_tail_latency_environment_and_no_machine_local_paths(tmp_path: Path) -> None:
    class _Cache:  # what write_report reads of a StageCache
        root = tmp_path / "home" / "me" / ".cache" / "edgekit"

        def get_or_build(self, stage, key, build):
            raise AssertionError("plots are off in this test")

    result = _result(tmp_path)
    result.environment = {"cpu_model": "Test CPU", "machine": "x86_64", "cpu_flags": ["avx512_vnni"],
                          "usable_cpus": 2, "logical_cpus": 2, "physical_cores": 1, "threads": 2,
                          "load_average": [1.5, 1.2, 0.9], "governor": None, "os": "Linux", "python": "3.11",
                          "edgekit": "0.1.0", "tool_versions": {"onnxruntime": "1.23.0"}}
    cpu = result.targets[0]
    cpu.latency.update({"max": 11.0, "cv": 0.5})
    cpu.candidates[3].reason = f"failed: {_Cache.root}/v1/compile/ab/abcdef/bundle: not installed"
    import edgekit.pipeline.report as report

    report._PLOTS_ENABLED[0] = False
    try:
        md = report.write_report(result, tmp_path / "out", cache=_Cache())[0].read_text()
    finally:
        report._PLOTS_ENABLED[0] = True
    assert "5 ms / 6 ms / 7 ms / 11 ms | 50 % |" in md  # p50 / p90 / p99 / max and CV, with units
    assert "## Environment" in md and "Test CPU" in md and "1.5 / 1.2 / 0.9" in md and "onnxruntime 1.23.0" in md
    assert str(_Cache.root) not in md and "<stage cache>/v1/compile" in md
    assert "| ★ openvino | bf16 → bf16 | passed | 5 ms (side-by-side median) | 1.60× |" in md  # × the FP32 build
