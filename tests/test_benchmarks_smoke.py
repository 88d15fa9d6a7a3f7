"""benchmarks/run.py: the machinery on LeNet-5 in --quick mode, and the target/ratio logic (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"_edgekit_bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_interleaved_rotates_and_caps():
    timing = _load("_timing")
    order: list[str] = []
    clock_value = [0]

    def clock() -> int:
        clock_value[0] += 1_000_000  # every reading 1 ms later
        return clock_value[0]

    calls = {n: (lambda n=n: order.append(n)) for n in ("a", "b", "slow")}
    timed = timing.interleaved(calls, rounds=3, round_seconds=0.005, warmup=1, max_runs=50, caps={"slow": 1},
                               clock=clock)
    assert [len(t.rounds) for t in timed.values()] == [3, 3, 3]
    assert all(len(r) == 1 for r in timed["slow"].rounds)
    assert all(len(r) > 1 for r in timed["a"].rounds)
    warm = 2 * 3  # cold + one warm-up each
    firsts = [order[warm]]
    i = warm
    for t in (timed[k] for k in ("a", "b", "slow")):
        i += len(t.rounds[0])
    firsts.append(order[i])
    assert firsts == ["a", "b"]  # round 2 starts with the next candidate (rotation)
    stats = timed["a"].stats()
    assert stats["n"] == sum(len(r) for r in timed["a"].rounds) and stats["median_ms"] > 0


def _row(key, group, precision, median, sqnr=float("inf"), **more):
    return {"key": key, "label": key, "group": group, "precision": precision, "median_ms": median,
            "sqnr_db": sqnr, "status": "ok", **more}


def test_ratios_and_targets_flag_slow_int8_and_inaccurate_best():
    run = _load("run")
    rows = {
        "torch": _row("torch", "baseline", "fp32", 40.0),
        "ort-fp32": _row("ort-fp32", "single", "fp32", 10.0),
        "ov-int8-nncf": _row("ov-int8-nncf", "single", "int8", 2.0, sqnr=5.0),  # fast but outside the budget
        "ort-int8": _row("ort-int8", "single", "int8", 12.0, sqnr=30.0),
        "auto": _row("auto", "auto", "auto", 12.5, chosen="onnxruntime", precision_used="int8"),
    }
    # a load spike in round 2 hit ort-fp32 only: the paired ratio (per round) is immune, the pooled one is not
    rows["ort-fp32"]["round_medians_ms"] = [10.0, 30.0, 10.0]
    rows["auto"]["round_medians_ms"] = [12.5, 12.5, 12.5]
    model = {"model": "resnet18", "label": "R", "candidates": rows, "toolchain": {"export_to_int8_s": 25.0}}
    run._ratios(model)
    assert model["best_single"]["any"] == "ort-fp32"  # the 2 ms candidate fails the SQNR budget
    assert rows["auto"]["x_vs_best"] == pytest.approx(10.0 / 12.5)
    assert rows["auto"]["x_vs_torch"] == pytest.approx(40.0 / 12.5)
    assert rows["auto"]["x_vs_best_paired"] == pytest.approx(10.0 / 12.5)  # median of 0.8, 2.4, 0.8
    assert rows["auto"]["x_vs_torch_paired"] is None  # torch has no per-round medians here
    assert rows["auto"]["same_build_as_best"] is False
    targets = {t["target"]: t for t in run.evaluate_targets({"models": {"resnet18": model}, "cached_rerun": {}})}
    met = {k.split(":")[-1].strip(): v["met"] for k, v in targets.items()}
    assert met["edgekit auto >= 0.95x best single backend"] is False
    assert met["edgekit auto >= 4.0x PyTorch eager"] is False
    assert targets["INT8 never selected when slower than FP32 (precision auto)"]["met"] is False
    assert met["export -> INT8 compile <= 20 s"] is False
    assert not any(v["met"] for k, v in targets.items() if k.startswith("cached"))  # not run is never "met"


def test_quick_run_writes_json_markdown_chart(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    run = _load("run")
    results = run.main(["--quick", "--models", "lenet5", "--backends", "onnxruntime", "--auto", "precision",
                        "--no-cache-rerun", "--out", str(tmp_path)])
    files = sorted(p.name for p in tmp_path.iterdir())
    stem = f"{results['created_at'][:10]}-{results['host']}-quick"
    assert files == [f"{stem}.json", f"{stem}.md", f"{stem}.png"]  # quick runs never touch latest.md
    data = json.loads((tmp_path / f"{stem}.json").read_text())
    assert data["schema"] == "edgekit.benchmarks/1" and data["complete"] is True
    env = data["environment"]
    assert env["threads"] == 2 and "cpu_model" in env and "load_average" in env
    rows = data["models"]["lenet5"]["candidates"]
    assert set(rows) == {"torch", "torch-1t", "ort-fp32", "ort-int8", "auto"}
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row.get("reason"))
        assert row["provenance"] == "measured"
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] and row["rounds"] == 2
        assert "x_vs_torch" in row and "x_vs_best" in row
    assert rows["ort-int8"]["precision_used"] == "int8" and rows["ort-int8"]["sqnr_db"] > 0
    assert rows["auto"]["chosen"] == "onnxruntime" and rows["auto"]["search"]
    tool = data["models"]["lenet5"]["toolchain"]
    for key in ("export_s", "simplify_s", "quantize_s", "export_to_int8_s"):
        assert tool[key] > 0
    assert any(t["target"].startswith("INT8 never selected") for t in data["targets"])
    md = (tmp_path / f"{stem}.md").read_text()
    assert "## Targets (issue 9)" in md and "## Latency summary" in md and "LeNet-5" in md
    assert "| ORT INT8 (QDQ) | int8 |" in md and "measured" in md
    assert (tmp_path / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / f"{stem}.md").unlink()
    run.main(["--render", str(tmp_path / f"{stem}.json")])  # presentation again from the JSON, no re-measuring
    assert (tmp_path / f"{stem}.md").read_text() == md
    assert not (tmp_path / "latest.md").exists()


def test_deadline_skips_models_and_still_writes_results(tmp_path):
    pytest.importorskip("torch")
    run = _load("run")
    # 00:00 UTC today has always passed: every model is skipped, the run still writes honest results
    results = run.main(["--quick", "--models", "lenet5", "--deadline", "00:00", "--no-cache-rerun",
                        "--out", str(tmp_path)])
    assert results["models"] == {} and results["complete"] is True
    assert any("lenet5: skipped" in n for n in results["notes"])
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["config"]["deadline"].endswith("00:00:00+00:00")
    assert all(t["met"] is False for t in data["targets"])  # nothing measured: nothing met
    assert "lenet5: skipped" in next(tmp_path.glob("*.md")).read_text()
