"""ResNet-18 through the OpenVINO and TVM adapters, beside ONNX Runtime (all measured, same threads).

    python benchmarks/openvino_tvm_resnet18.py openvino            # ORT fp32 vs OV f32 / bf16 / NNCF int8
    python benchmarks/openvino_tvm_resnet18.py tvm --trials 128    # TVM untuned vs tuned (fresh database)

OpenVINO rows are timed interleaved (rounds of each runner in turn, median of round medians). The TVM
tuned build uses a fresh database per budget, so the tuning time is the cost of that budget; a second
compile with the same database shows the reuse. Writes `<out>/openvino_tvm-<what>.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import edgekit
from edgekit.onnxio import random_inputs


def median_ms(runner, n: int, warm: int) -> float:
    feeds = random_inputs(runner.input_specs, seed=1)
    for _ in range(warm):
        runner.run(feeds)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        runner.run(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def build(model: Path, out: Path, threads: int, **kw) -> tuple[float, dict]:
    t0 = time.time()
    result = edgekit.compile(model, output=out, threads=threads, **kw)
    return time.time() - t0, result.bundle.manifest.info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["openvino", "tvm"])
    parser.add_argument("--trials", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekit-bench-ovtvm"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    model = work / "resnet18.onnx"
    if not model.exists():
        from edgekit.stages.export import export

        export("zoo:resnet18", None, model)
    rows: dict[str, dict] = {}
    if args.what == "openvino":
        plans = {"ort_fp32": {"backend": "onnxruntime"},
                 "ov_fp32": {"backend": "openvino", "precision": "fp32"},
                 "ov_bf16": {"backend": "openvino", "precision": "bf16"},
                 "ov_int8_nncf": {"backend": "openvino", "precision": "int8", "calib": "synthetic"}}
        for name, kw in plans.items():
            secs, info = build(model, work / name, args.threads, **kw)
            rows[name] = {"compile_s": round(secs, 1), "precision_used": info.get("precision_used"),
                          "runtime_precisions": info.get("runtime_precisions"),
                          "min_cosine_vs_reference": info["verification"].get("min_cosine")}
        runners = {n: edgekit.load(work / n, threads=args.threads) for n in rows}
        rounds: dict[str, list[float]] = {n: [] for n in runners}
        for _ in range(3):
            for name, runner in runners.items():
                rounds[name].append(median_ms(runner, 20, 3))
        for name in runners:
            rows[name]["median_ms"] = round(float(np.median(rounds[name])), 2)
    else:
        db = work / f"tvm-db-{args.trials}-{int(time.time())}"
        secs, info = build(model, work / "tvm_untuned", args.threads, backend="tvm",
                           adapter_options={"tune": False, "use_db": False})
        rows["tvm_untuned"] = {"compile_s": round(secs, 1)}
        opts = {"tune": True, "trials": args.trials, "tuning_db": str(db)}
        secs, info = build(model, work / "tvm_tuned", args.threads, backend="tvm", adapter_options=opts)
        rows["tvm_tuned"] = {"compile_s": round(secs, 1), "tuning": info.get("tuning")}
        secs, info = build(model, work / "tvm_tuned_again", args.threads, backend="tvm", adapter_options=opts)
        rows["tvm_tuned_again"] = {"compile_s": round(secs, 1), "tuning": info.get("tuning")}
        build(model, work / "ort_fp32", args.threads, backend="onnxruntime")
        for name, n in (("tvm_untuned", 5), ("tvm_tuned", 20), ("ort_fp32", 20)):
            rows.setdefault(name, {})["median_ms"] = round(median_ms(edgekit.load(work / name, threads=args.threads),
                                                                     n, 1), 2)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"-{args.trials}" if args.what == "tvm" else ""
    path = args.out / f"openvino_tvm-{args.what}{suffix}.json"
    path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "provenance": "measured",
                                "rows": rows}, indent=1) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
