"""How often does a latency regression gate cry wolf, and how often does it catch a real slowdown?

Issue 18. An unchanged bundle and bundles with a known injected slowdown (an extra MatMul branch in
the ONNX graph, sized by timing to cost 5 %, 10 % and 20 % of the model) are gated N times each, on
this host as it is (quiet: whatever else the machine runs) and with a 1-core CPU hog (a child
process busy-looping, bounded in time, killed at the end). Two gates, same bundles, same moments:

- A/B: `bench(NEW, baseline_bundle=OLD, max_regression="10%")` (edgekit.checks.regression):
  both loaded in one process, shuffled interleaved rounds, verdict on the paired ratios' 95 % CI;
- JSON: `bench(NEW, iters=200, baseline="base.json", max_regression="10%")`, the baseline
  recorded once at the start (as on main), judged as before issue 18 (`force=True`: p50 vs baseline
  p50 × 1.10), and also with the new contention check (inconclusive when the host's load differs).

Reported per condition: false-alarm rate (unchanged bundle failed), detection rate (slowed bundle
failed), inconclusive counts, time per gate, and the load average. Run:
`python benchmarks/gate_ab.py [--n 50] [--cap 20] [--threads N] [--deadline HH:MM]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.adapters.loading import load_bundle
from edgekit.checks.budgets import check_against_baseline
from edgekit.checks.latency import bench
from edgekit.checks.regression import ABConfig, ratio_interval
from edgekit.stages.compile import compile as compile_model
from edgekit.timing import hot_call, interleaved, paired_ratios

ROWS, WIDTH, LAYERS = 32, 384, 6  # base model: 6 × MatMul[32,384]x[384,384] + Relu ≈ 28 M MACs
SLOWDOWNS = (0.05, 0.10, 0.20)
RESULTS = Path(__file__).parent / "results"


def model(path: Path, extra_width: int = 0) -> Path:
    """The base MatMul chain; with `extra_width`, a side branch x@A[384,w]@B[w,384] added to the output.

    The branch costs 2·32·384·w MACs next to the chain's 6·32·384² (w = 0.1·3·384 ≈ 115 for ~10 %);
    its weights are tiny, so the output barely moves and the optimizer keeps it (it is used).
    """
    rng = np.random.default_rng(0)
    inits, nodes = [], []
    h = "x"
    for i in range(LAYERS):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        nodes += [helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"h{i}"])]
        h = f"h{i}"
    if extra_width > 0:
        a = (rng.standard_normal((WIDTH, extra_width)) * 1e-3).astype(np.float32)
        b = (rng.standard_normal((extra_width, WIDTH)) * 1e-3).astype(np.float32)
        inits += [numpy_helper.from_array(a, "A"), numpy_helper.from_array(b, "B")]
        nodes += [helper.make_node("MatMul", ["x", "A"], ["sa"]), helper.make_node("MatMul", ["sa", "B"], ["sb"]),
                  helper.make_node("Add", [h, "sb"], ["y"])]
    else:
        nodes.append(helper.make_node("Identity", [h], ["y"]))
    graph = helper.make_graph(nodes, "gate_ab", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [ROWS, WIDTH])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="gate_ab")
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def build(work: Path, name: str, extra_width: int, threads: int | None) -> Path:
    src = model(work / f"{name}.onnx", extra_width)
    return Path(compile_model(src, output=work / name, target="cpu", backend="onnxruntime", precision="fp32",
                                threads=threads).bundle.path)


def measured_ratio(new: Path, old: Path, threads: int | None, rounds: int = 100) -> float:
    """NEW/OLD by interleaved timing (median of the per-round ratios): the injected slowdown's real cost."""
    with load_bundle(new, threads=threads) as rn, load_bundle(old, threads=threads) as ro:
        feed = {"x": np.random.default_rng(0).standard_normal((ROWS, WIDTH)).astype(np.float32)}
        calls = {"new": lambda: hot_call(rn)(feed), "old": lambda: hot_call(ro)(feed)}
        timed = interleaved(calls, rounds=rounds, round_seconds=0.05, warmup=5, min_runs=3, max_runs=50,
                            rng=random.Random(1))
        return ratio_interval(paired_ratios(timed["new"], timed["old"])).estimate


def calibrate(work: Path, old: Path, target: float, threads: int | None, log: list[str]) -> tuple[Path, int, float]:
    """Width of the side branch whose measured cost is `target` (two corrections of a first guess)."""
    width = max(4, round(target * LAYERS * WIDTH / 2))
    bundle, ratio = old, 1.0
    for step in range(3):
        bundle = build(work, f"slow{round(target * 100)}-{step}", width, threads)
        ratio = measured_ratio(bundle, old, threads)
        log.append(f"+{target:.0%}: width {width} -> measured {ratio:.3f}")
        if abs(ratio - 1 - target) <= 0.01 or step == 2:
            break
        width = max(4, round(width * target / max(ratio - 1, 0.005)))
    return bundle, width, ratio


class Hog:
    """One core busy-looping in a child process, bounded by `seconds`, killed on exit."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Hog:
        code = f"import time\nend = time.monotonic() + {self.seconds:.0f}\nwhile time.monotonic() < end:\n    pass\n"
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(2.0)  # let it take its core (and the load average start to show it)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ab_gate(new: Path, old: Path, threads: int | None, cap: float) -> dict[str, Any]:
    start = time.perf_counter()
    r = bench(new, threads=threads, baseline_bundle=old, max_regression="10%", ab=ABConfig(max_seconds=cap))
    c = r.comparison
    assert c is not None
    return {"status": {"pass": "pass", "regression": "fail"}.get(c.status, "inconclusive"),
            "estimate": c.interval.estimate, "low": c.interval.low, "high": c.interval.high,
            "rounds": c.interval.rounds, "seconds": time.perf_counter() - start, "reason": c.reason,
            "contention": c.contention.to_json()}


def json_gate(new: Path, base: dict[str, Any], threads: int | None) -> dict[str, Any]:
    start = time.perf_counter()
    r = bench(new, threads=threads, iters=200, warmup=10, baseline=base, max_regression="10%", force=True)
    forced = next(v for v in r.verdicts if v.kind == "regression")
    checked = check_against_baseline(r, base, max_regression="10%", force=False,
                                     contention=r.contention.to_json() if r.contention else None)[0]
    return {"status": forced.status, "with_contention_check": checked.status, "p50": r.value("p50"),
            "baseline_p50": base["latency_ms"]["p50"], "seconds": time.perf_counter() - start,
            "contention": r.contention.to_json() if r.contention else None}


def _count(rows: list[dict[str, Any]], gate: str, key: str, status: str) -> int:
    return sum(1 for t in rows if t[gate][key] == status)


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cond in dict.fromkeys(t["condition"] for t in trials):
        for variant in dict.fromkeys(t["variant"] for t in trials):
            rows = [t for t in trials if t["condition"] == cond and t["variant"] == variant]
            if not rows:
                continue
            statuses = ("pass", "fail", "inconclusive")
            out[f"{cond}/{variant}"] = {
                "n": len(rows),
                "ab": {s: _count(rows, "ab", "status", s) for s in statuses},
                "json": {s: _count(rows, "json", "status", s) for s in statuses},
                "json_checked": {s: _count(rows, "json", "with_contention_check", s) for s in statuses},
                "ab_seconds_median": statistics.median(t["ab"]["seconds"] for t in rows),
                "ab_rounds_median": statistics.median(t["ab"]["rounds"] for t in rows),
                "ab_estimate_median": statistics.median(t["ab"]["estimate"] for t in rows),
                "json_ratio_median": statistics.median(t["json"]["p50"] / t["json"]["baseline_p50"] for t in rows),
                "load1": [min(t["load"][0] for t in rows), statistics.median(t["load"][0] for t in rows),
                          max(t["load"][0] for t in rows)],
                "others_cpu_pct_median": statistics.median(
                    [t["ab"]["contention"]["others_cpu_pct"] for t in rows
                     if t["ab"]["contention"]["others_cpu_pct"] is not None] or [float("nan")]),
            }
    return out


def markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    lines = [f"# Regression gate A/B vs JSON baseline — {data['date']}", "",
             f"Host: {data['host']['cpu']} ({data['host']['cpus']} CPUs, shared with other engineers' tests), "
             f"onnxruntime, threads {data['threads'] or 'backend default'}; base model {data['model']}.",
             f"Base p50 {data['base_p50_ms']:.3f} ms. Injected slowdowns (an extra MatMul branch, its width "
             "calibrated by interleaved timing, 100 rounds): " + "; ".join(data["calibration_log"]) + " (the last "
             "width of each is the bundle gated).",
             f"Started {data.get('started', '?')} UTC; load average (1 min) per trial in the table: the host was "
             "shared with other engineers' test runs throughout, so 'quiet' means no hog of ours, not an idle host.",
             f"A/B gate: `bench NEW --baseline-bundle OLD --max-regression 10%`, cap {data['cap']:g} s. "
             "JSON gate: `bench NEW --iters 200 --baseline base.json --max-regression 10%` (base.json recorded "
             "once at the start, quiet), judged as before issue 18 (fail when p50 > 1.10 × baseline p50), and "
             "with the new contention check (inconclusive when the host's contention differs from the baseline's).",
             f"Trials run: {data['trials_run']} "
             f"({'complete' if data['complete'] else 'PARTIAL: stopped at the deadline'}).", "",
             "| condition | bundle | N | A/B fail | A/B pass | A/B inconcl. | A/B median × | A/B s (median) | "
             "JSON fail | JSON pass | JSON p50 ratio (median) | JSON+contention fail / inconcl. | load1 min/med/max | "
             "others' CPU % (median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in s.items():
        cond, variant = key.split("/")
        lines.append(
            f"| {cond} | {variant} | {r['n']} | {r['ab']['fail']} | {r['ab']['pass']} | {r['ab']['inconclusive']} | "
            f"{r['ab_estimate_median']:.3f} | {r['ab_seconds_median']:.1f} | {r['json']['fail']} | "
            f"{r['json']['pass']} | "
            f"{r['json_ratio_median']:.3f} | {r['json_checked']['fail']} / {r['json_checked']['inconclusive']} | "
            f"{r['load1'][0]:.2f} / {r['load1'][1]:.2f} / {r['load1'][2]:.2f} | {r['others_cpu_pct_median']:.0f} |")
    lines += ["", "Rates (fail = the gate would block the merge):", ""]
    for cond in dict.fromkeys(k.split("/")[0] for k in s):
        for variant in ("unchanged", "+5%", "+10%", "+20%"):
            r = s.get(f"{cond}/{variant}")
            if r is None:
                continue
            what = "false alarms" if variant == "unchanged" else "detection"
            lines.append(f"- {cond}, {variant}: {what} A/B {r['ab']['fail']}/{r['n']}, "
                         f"JSON {r['json']['fail']}/{r['n']} (A/B inconclusive {r['ab']['inconclusive']}, "
                         f"JSON with contention check inconclusive {r['json_checked']['inconclusive']})")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="gates per bundle and condition")
    ap.add_argument("--cap", type=float, default=20.0, help="A/B time cap (s)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--conditions", default="quiet,hog")
    ap.add_argument("--deadline", default=None, help="UTC HH:MM: start no trial after this")
    ap.add_argument("--out", type=Path, default=RESULTS / f"gate_ab-{dt.date.today().isoformat()}")
    ap.add_argument("--render", type=Path, default=None, help="re-write the Markdown of a saved JSON and exit")
    args = ap.parse_args()
    if args.render is not None:
        data = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(markdown(data))
        return
    deadline = None
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = dt.datetime.now(dt.UTC)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    with tempfile.TemporaryDirectory(prefix="edgekit-gate-ab-") as tmp:
        work = Path(tmp)
        old = build(work, "old", 0, args.threads)
        variants = {"unchanged": build(work, "unchanged", 0, args.threads)}
        calibration = []
        for target in SLOWDOWNS:
            bundle, _width, _ratio = calibrate(work, old, target, args.threads, calibration)
            variants[f"+{target:.0%}"] = bundle
            print(calibration[-1], flush=True)
        base = bench(old, threads=args.threads, iters=200, warmup=10).to_json()
        env = base["environment"]
        data: dict[str, Any] = {
            "date": dt.date.today().isoformat(), "threads": args.threads, "cap": args.cap,
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
            "model": f"{LAYERS}× MatMul[{ROWS},{WIDTH}]x[{WIDTH},{WIDTH}]+Relu (onnx, made in code)",
            "host": {"cpu": env["cpu_model"], "cpus": env["logical_cpus"]}, "base_p50_ms": base["latency_ms"]["p50"],
            "calibration": [c.split(": ")[0] + " " + c.split("measured ")[1] + "×" for c in calibration],
            "calibration_log": calibration, "base_contention": base.get("contention"), "trials": [],
            "complete": False, "trials_run": 0,
        }
        out_json, out_md = args.out.with_suffix(".json"), args.out.with_suffix(".md")
        rng = random.Random(0)
        stopped = False
        for cond in args.conditions.split(","):
            hog = Hog(seconds=args.n * len(variants) * (args.cap + 5) + 60) if cond == "hog" else None
            if hog is not None:
                hog.__enter__()
            try:
                for i in range(args.n):
                    if deadline is not None and dt.datetime.now(dt.UTC) >= deadline:
                        stopped = True
                        break
                    # the targets (unchanged, +10 %) every time; +5 % and +20 % every other time (N/2), for time
                    order = [v for v in variants if v in ("unchanged", "+10%") or i % 2 == 0]
                    rng.shuffle(order)
                    for variant in order:
                        trial = {"condition": cond, "variant": variant, "i": i, "load": list(os.getloadavg()),
                                 "ab": ab_gate(variants[variant], old, args.threads, args.cap),
                                 "json": json_gate(variants[variant], base, args.threads)}
                        data["trials"].append(trial)
                        print(f"{cond} {variant} #{i}: A/B {trial['ab']['status']} {trial['ab']['estimate']:.3f} "
                              f"({trial['ab']['low']:.3f}-{trial['ab']['high']:.3f}, {trial['ab']['rounds']} rounds, "
                              f"{trial['ab']['seconds']:.1f}s) · JSON {trial['json']['status']}/"
                              f"{trial['json']['with_contention_check']} "
                              f"{trial['json']['p50'] / trial['json']['baseline_p50']:.3f} · load "
                              f"{trial['load'][0]:.2f}", flush=True)
                    data["trials_run"] = len(data["trials"])
                    data["summary"] = summarise(data["trials"])
                    out_json.write_text(json.dumps(data, indent=1, default=str))
                    out_md.write_text(markdown(data))
            finally:
                if hog is not None:
                    hog.__exit__()
            if stopped:
                break
        data["complete"] = not stopped
        data["summary"] = summarise(data["trials"])
        out_json.write_text(json.dumps(data, indent=1, default=str))
        out_md.write_text(markdown(data))
        print(out_md.read_text())


if __name__ == "__main__":
    main()
