"""Time one build in this process and print its p50 as JSON: benchmarks/auto_vs_peers.py runs one per build.

    python benchmarks/_proc_timer.py ort MODEL.onnx FEED.npz --threads 2 --seconds 1.5
    python benchmarks/_proc_timer.py ov MODEL.xml FEED.npz --hint f32|bf16|default --threads 2
    python benchmarks/_proc_timer.py bundle BUNDLE_DIR FEED.npz --threads 2

Why a process per build: several runtimes in one process move each other's figures (thread pools that
spin, caches); a user's app runs one. ORT and OpenVINO are driven here the way their docs show, not
through edgekit, so a peer build's figure owes nothing to edgekit's runner; `bundle` times edgekit's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _ort(path: str, feed: dict[str, np.ndarray], threads: int) -> Callable[[], Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, feed)


def _ov(path: str, feed: dict[str, np.ndarray], threads: int, hint: str) -> Callable[[], Any]:
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if hint != "default":  # "default": what OpenVINO picks on this CPU (bf16 where the CPU has it)
        config["INFERENCE_PRECISION_HINT"] = hint
    compiled = ov.Core().compile_model(path, "CPU", config)
    request = compiled.create_infer_request()
    return lambda: request.infer(feed)


def _bundle(path: str, feed: dict[str, np.ndarray], threads: int) -> Callable[[], Any]:
    import edgekit

    runner = edgekit.load(path, threads=threads)
    runner.run(feed)  # checked once, as `edgekit bench` does; the timed calls skip the check
    return lambda: runner.run(feed, check_inputs=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["ort", "ov", "bundle"])
    parser.add_argument("path")
    parser.add_argument("feed", help=".npz with one array per input name")
    parser.add_argument("--hint", default="default", choices=["default", "f32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    with np.load(args.feed, allow_pickle=False) as z:
        feed = {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    call = {"ort": lambda: _ort(args.path, feed, args.threads),
            "ov": lambda: _ov(args.path, feed, args.threads, args.hint),
            "bundle": lambda: _bundle(args.path, feed, args.threads)}[args.kind]()
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(args.warmup):
        call()
    samples: list[float] = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end or len(samples) < 10:
        t = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - t) / 1e6)
    print(json.dumps({"p50_ms": float(np.median(samples)), "p90_ms": float(np.percentile(samples, 90)),
                      "runs": len(samples), "load_ms": load_ms}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
