"""Peak memory of `edgekit quantize` with its defaults on the YOLOv5n-shaped zoo detector at 640x640.

    python benchmarks/quantize_memory.py [--size 640] [--limit-gb 3] [--extra "--no-speed"] [--out DIR]

Exports the zoo `yolov5n` (seeded weights, outputs 1x25200x85) to ONNX, then runs the real CLI
`edgekit quantize MODEL -o OUT --calib synthetic` (100 calibration + 200 held-out eval samples, sensitivity,
speed: the defaults) in a child process and samples the resident memory of the child's process tree every
50 ms (psutil). Issue 14: before evaluation streamed, this command grew to 24 GB and was killed (exit 137);
the target is < 3 GB peak RSS. Writes `results/quantize_memory-DATE.{json,md}` (provenance: measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _tree_rss(proc) -> int:  # psutil.Process
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(argv: list[str], *, interval: float = 0.05) -> dict:
    """Run `argv`, sampling the tree's RSS; returns exit code, peak RSS (bytes), wall seconds and the output tail."""
    import psutil

    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, _tree_rss(proc))
        except psutil.Error:
            pass
        time.sleep(interval)
    output = child.stdout.read() if child.stdout else ""
    return {"exit_code": child.returncode, "peak_rss_bytes": peak, "seconds": round(time.perf_counter() - started, 1),
            "output_tail": output[-3000:]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--limit-gb", type=float, default=3.0)
    parser.add_argument("--extra", default="", help="extra quantize flags (default: none, the defaults are measured)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for the dated results")
    args = parser.parse_args(argv)

    from edgekit.stages.export import export

    today = dt.date.today().isoformat()
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-qmem-") as tmp:
        model = Path(tmp) / "yolov5n.onnx"
        export("zoo:yolov5n", output=model, input_shapes=[f"images:1,3,{args.size},{args.size}"])
        command = [sys.executable, "-m", "edgekit", "quantize", str(model), "-o", str(Path(tmp) / "q.onnx"),
                   "--calib", "synthetic", "--json", str(Path(tmp) / "q.json"), *args.extra.split()]
        measured = run_measured(command)
        report = json.loads((Path(tmp) / "q.json").read_text()) if (Path(tmp) / "q.json").is_file() else {}
    peak_gb = measured["peak_rss_bytes"] / 1e9
    figures = {
        "benchmark": "quantize_memory", "date": today, "model": f"zoo yolov5n {args.size}x{args.size} (1x25200x85 "
        "output at 640)", "command": "edgekit quantize MODEL -o OUT --calib synthetic " + args.extra,
        "exit_code": measured["exit_code"], "peak_rss_gb": round(peak_gb, 3), "limit_gb": args.limit_gb,
        "met": measured["exit_code"] == 0 and peak_gb < args.limit_gb, "seconds": measured["seconds"],
        "eval_samples": (report.get("accuracy") or {}).get("samples"),
        "calib_samples": (report.get("calibration") or {}).get("samples"),
        "machine": platform.processor() or platform.machine(), "provenance": "measured",
        "output_tail": measured["output_tail"] if measured["exit_code"] else "",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"quantize_memory-{today}.json").write_text(json.dumps(figures, indent=2) + "\n")
    (out / f"quantize_memory-{today}.md").write_text(
        f"# quantize peak memory, {today}\n\n"
        f"`{figures['command'].strip()}` on {figures['model']}: exit {figures['exit_code']}, "
        f"peak RSS **{peak_gb:.2f} GB** (limit {args.limit_gb:g} GB: {'met' if figures['met'] else 'MISSED'}), "
        f"{figures['seconds']} s, {figures['calib_samples']} calibration + {figures['eval_samples']} eval samples; "
        f"{figures['machine']}, measured (psutil, process tree, 50 ms sampling).\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "output_tail"}, indent=2))
    return figures


if __name__ == "__main__":
    sys.exit(0 if main()["met"] else 1)
