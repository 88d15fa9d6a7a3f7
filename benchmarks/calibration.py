"""Calibration cost of ResNet-18 (zoo) with 100 samples: wall time per step and peak RSS.

    python benchmarks/calibration.py [--samples 100] [--method minmax] [--full] [--json out.json]

Exports the zoo ResNet-18 (seeded random weights) to ONNX, writes N random 1x3x224x224 `.npy` samples
to a temp folder, then times: data validation, prepare (opset/quant_pre_process), calibration
(streamed in chunks), writing the QDQ model. `--full` also runs the whole `edgekit.quantize` (accuracy
report, sensitivity, speed). Timings are measured on this machine (provenance: measured); the
machine is shared and noisy, so run it twice.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--method", default="minmax", choices=("minmax", "entropy", "percentile"))
    parser.add_argument("--model", default="resnet18", help="zoo model name")
    parser.add_argument("--full", action="store_true", help="also run the whole edgekit.quantize")
    parser.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from edgekit import zoo
    from edgekit.onnxio import input_specs, load_onnx
    from edgekit.stages._quant_core import QdqSettings, calibrate, check_loads, prepare_model, quantize_qdq
    from edgekit.stages.calibration import open_source

    figures: dict = {"model": args.model, "samples": args.samples, "method": args.method,
                     "machine": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                     "provenance": "measured"}
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-calib-") as tmp:
        work = Path(tmp)
        entry = zoo.get_entry(args.model)
        shape = entry.inputs[0].concrete_shape()
        onnx_path = work / "model.onnx"
        torch.onnx.export(zoo.create(args.model), (torch.zeros(shape),), str(onnx_path),
                          input_names=[entry.inputs[0].name], opset_version=17, dynamo=False)
        data = work / "calib"
        data.mkdir()
        rng = np.random.default_rng(0)
        for i in range(args.samples):
            np.save(data / f"{i:04d}.npy", rng.standard_normal(shape).astype(np.float32))
        del torch  # not needed below; keep RSS about quantization

        model = load_onnx(onnx_path)
        t0 = time.perf_counter()
        reader = open_source(data, input_specs(model))
        t1 = time.perf_counter()
        prepared = prepare_model(model, work, per_channel=True)
        t2 = time.perf_counter()
        ranges = calibrate(prepared, reader, work, method=args.method)
        t3 = time.perf_counter()
        qdq = quantize_qdq(prepared, ranges, QdqSettings(method=args.method), workdir=work)
        check_loads(qdq)
        t4 = time.perf_counter()
        figures.update({
            "validate_s": round(t1 - t0, 2), "prepare_s": round(t2 - t1, 2), "calibrate_s": round(t3 - t2, 2),
            "write_qdq_s": round(t4 - t3, 2), "total_s": round(t4 - t0, 2),
            "peak_rss_mb_calibration": round(_peak_rss_mb(), 1),
        })
        if args.full:
            from edgekit.stages.quantize import quantize

            t5 = time.perf_counter()
            result = quantize(onnx_path, work / "int8.onnx", data, method=args.method, calib_samples=args.samples)
            figures.update({
                "full_quantize_s": round(time.perf_counter() - t5, 2), "peak_rss_mb_full": round(_peak_rss_mb(), 1),
                "min_sqnr_db": result.report.min_sqnr_db, "speed": result.speed.to_json() if result.speed else None,
            })
    for key, value in figures.items():
        print(f"{key:>16}: {value}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
