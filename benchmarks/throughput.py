"""Throughput mode side by side (issue 17): edgekit vs OpenVINO's own `benchmark_app` vs ONNX Runtime, one run.

The same OpenVINO IR (a bundle's `model.xml`, built from a zoo model by `edgekit.compile(...,
backend="openvino", precision="fp32")`) is measured by `python -m edgekit.runtime bench BUNDLE --mode
throughput` and by `benchmark_app -m model.xml -d CPU -hint throughput -infer_precision f32` (the bundle's
precision: benchmark_app would otherwise compute in bf16 on this AVX512-BF16 CPU, another model). ONNX
Runtime's figure is the ORT bundle of the same ONNX in throughput mode (parallel sessions).

Each measurement runs in its own process (several runtimes in one process move figures), the three
alternate in rotating order for `--rounds` rounds, and the median per tool is reported with the
host's load average before each run: other engineers share the 2 cores.

    python benchmarks/throughput.py --model resnet18 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_FPS = re.compile(r"Throughput:\s*([0-9.]+)\s*FPS")


def build(model: str, work: Path) -> dict[str, Path]:
    """The zoo model exported once, then an OpenVINO fp32 and an ORT fp32 bundle (reused when present)."""
    import edgekit
    from edgekit.stages.export import export

    onnx = work / f"{model}.onnx"
    if not onnx.exists():
        export(f"zoo:{model}", None, onnx)
    bundles = {}
    for backend in ("openvino", "onnxruntime"):
        out = work / f"{model}-{backend}"
        if not (out / "manifest.json").exists():
            edgekit.compile(onnx, output=out, backend=backend, precision="fp32")
        bundles[backend] = out
    return bundles


def load_average() -> float:
    return os.getloadavg()[0]


def run_edgekit(bundle: Path, seconds: float, streams: int | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "edgekit.runtime", "bench", str(bundle), "--mode", "throughput",
           "--duration", str(seconds), "--json", "-"]
    if streams:
        cmd += ["--streams", str(streams)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 6 + 120, check=False)
    if done.returncode not in (0, 1, 4):
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    tp = data["throughput"]
    lat = data["latency_ms"]
    return {"items_per_s": tp["items_per_s"], "streams": tp["streams"], "method": tp["method"],
            "p50_ms": lat["p50"], "p90_ms": lat["p90"], "load_ms": data.get("load_ms")}


def run_benchmark_app(xml: Path, seconds: float, streams: int | None) -> dict[str, Any]:
    app = shutil.which("benchmark_app", path=str(Path(sys.executable).parent)) or shutil.which("benchmark_app")
    if app is None:
        raise RuntimeError("benchmark_app not found (it ships with the openvino pip package)")
    cmd = [app, "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-t", str(int(seconds)), "-infer_precision",
           "f32"]
    if streams:
        cmd += ["-nstreams", str(streams)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 6 + 120, check=False)
    match = _FPS.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-1000:]}")
    text = done.stdout
    nstreams = re.search(r"NUM_STREAMS:\s*(\d+)", text)
    nireq = re.search(r"(\d+) inference requests", text) or re.search(r"nireq[^0-9]*(\d+)", text)
    median = re.search(r"Median:\s*([0-9.]+)\s*ms", text)
    return {"items_per_s": float(match[1]), "streams": int(nstreams[1]) if nstreams else None,
            "requests": int(nireq[1]) if nireq else None, "p50_ms": float(median[1]) if median else None,
            "method": "benchmark_app -hint throughput -infer_precision f32"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekit-throughput"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=None, help="for every tool (default: each one's choice)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"throughput-{dt.date.today()}")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    bundles = build(args.model, args.work)
    xml = bundles["openvino"] / "model.xml"
    tools = {
        "edgekit throughput (OpenVINO IR)": lambda: run_edgekit(bundles["openvino"], args.seconds, args.streams),
        "benchmark_app (same IR)": lambda: run_benchmark_app(xml, args.seconds, args.streams),
        "edgekit throughput (ORT bundle)": lambda: run_edgekit(bundles["onnxruntime"], args.seconds, args.streams),
    }
    names = list(tools)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            before = load_average()
            figure = tools[name]()
            figure.update({"round": r + 1, "load_avg_before": before, "load_avg_after": load_average()})
            runs[name].append(figure)
            print(f"round {r + 1} {name}: {figure['items_per_s']:.1f} items/s (load {before:.2f})", flush=True)
    medians = {name: statistics.median(f["items_per_s"] for f in runs[name]) for name in names}
    ratio = medians[names[0]] / medians[names[1]]
    import edgekit
    from edgekit.artifact import tool_versions
    from edgekit.environment import environment_fingerprint

    env = environment_fingerprint(versions=tool_versions())
    payload = {"model": args.model, "seconds": args.seconds, "rounds": args.rounds, "streams": args.streams,
               "runs": runs, "median_items_per_s": medians, "edgekit_vs_benchmark_app": ratio,
               "within_10_percent": abs(ratio - 1) <= 0.10, "environment": env, "edgekit": edgekit.__version__,
               "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tools_used = (env.get("tool_versions") or {}).items()
    versions = ", ".join(f"{k} {v}" for k, v in tools_used if k in ("openvino", "onnxruntime"))
    lines = [f"# Throughput mode vs benchmark_app — {args.model}, {payload['created_at']}", "",
             f"Host: {env.get('cpu_model')}, {env.get('usable_cpus')} usable CPUs (shared with other engineers), "
             f"versions: {versions}.",
             f"{args.rounds} rounds × {args.seconds:g} s per tool, each run its own process, order rotating; "
             "fp32 (`-infer_precision f32` for benchmark_app: the bundle's precision hint).", "",
             "| tool | median items/s | runs (items/s) | streams / requests | p50 per request ms | load avg before |",
             "|---|---:|---|---|---:|---|"]
    for name in names:
        fs = runs[name]
        streams = {str(f.get("streams")) + (f" / {f['requests']}" if f.get("requests") else "") for f in fs}
        p50 = statistics.median(f["p50_ms"] for f in fs if f.get("p50_ms") is not None) if any(
            f.get("p50_ms") is not None for f in fs) else float("nan")
        figures = ", ".join(f"{f['items_per_s']:.1f}" for f in fs)
        loads = ", ".join(f"{f['load_avg_before']:.2f}" for f in fs)
        lines.append(f"| {name} | {medians[name]:.1f} | {figures} | {', '.join(sorted(streams))} | {p50:.1f} | "
                     f"{loads} |")
    paired = [a["items_per_s"] / b["items_per_s"] for a, b in zip(runs[names[0]], runs[names[1]], strict=True)]
    payload["paired_round_ratios"] = paired
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    lines += ["", f"edgekit / benchmark_app on the same IR: **{ratio:.3f}×** "
              f"({'within' if payload['within_10_percent'] else 'NOT within'} the 10 % target); per round "
              f"(back-to-back runs): {', '.join(f'{x:.3f}' for x in paired)}, median {statistics.median(paired):.3f}×.",
              f"ORT / OpenVINO (edgekit throughput mode): {medians[names[2]] / medians[names[0]]:.3f}×.", "",
              f"edgekit's method: {runs[names[0]][0]['method']}; ORT: {runs[names[2]][0]['method']}."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
