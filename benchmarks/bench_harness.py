"""How far is `edgekit bench` from the backend's own view of latency?

Published complaints about Python latency loops: numbers 2x off the vendor tool. This script times
the same onnxruntime bundle three ways, interleaved in rounds on one thread:

1. `edgekit.bench` (the harness under test: p50 of the timed runs),
2. a bare Python loop around `InferenceSession.run` (same model file, same session options),
3. onnxruntime's own profiler (`enable_profiling`, the `model_run` event of every run) — the
   backend's view, without Python.

and prints the ratios. Run: `python benchmarks/bench_harness.py [--rounds 3] [--iters 300]`.
Results are written to `benchmarks/results/bench_harness-<date>.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def matmul_model(path: Path) -> Path:
    """x[1,16] @ W[16,8] -> Relu: microseconds, where harness overhead shows most."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def conv_model(path: Path, layers: int = 4, channels: int = 32, size: int = 56) -> Path:
    """A stack of 3x3 conv + ReLU at 56x56 (~115 M MACs): milliseconds, a typical edge CNN block."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x, cin = "input", 3
    for i in range(layers):
        w = (rng.standard_normal((channels, cin, 3, 3)) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(channels, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x, cin = f"r{i}", channels
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [1, 3, size, size])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels, size, size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def raw_loop_p50(model_file: Path, feeds: dict, iters: int, warmup: int) -> float:
    from edgekit.onnxio import ort_session

    sess = ort_session(model_file, threads=1)
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        start = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return float(np.median(times))


def profiler_p50(model_file: Path, feeds: dict, iters: int, warmup: int, tmp: Path) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / "ortprof")
    sess = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    for _ in range(warmup + iters):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    runs = [e["dur"] / 1000 for e in events if e.get("name") == "model_run"][warmup:]
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime

    import edgekit
    from edgekit.onnxio import random_inputs
    from edgekit.runtime import load
    from edgekit.stages.compile import compile as compile_model

    lines = [f"# bench harness vs onnxruntime's profiler ({dt.date.today().isoformat()})", "",
             f"onnxruntime {onnxruntime.__version__}, 1 intra-op thread, {args.rounds} interleaved rounds of "
             f"{args.iters} runs (median over rounds of each round's p50). Shared 2-core host: compare ratios.", "",
             "| model | edgekit.bench p50 ms | bare Python loop p50 ms | ORT profiler model_run p50 ms "
             "| edgekit / loop | edgekit / profiler |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for label, build in (("MatMul 16x8", matmul_model), ("4x Conv3x3 32ch 56x56", conv_model)):
            bundle = Path(compile_model(build(tmp / f"{build.__name__}.onnx"), output=tmp / build.__name__,
                                        target="cpu", backend="onnxruntime", threads=1).bundle.path)
            info = json.loads((bundle / "manifest.json").read_text())["info"]
            model_file = bundle / info.get("model_file", "source.onnx")
            with load(bundle) as runner:
                feeds = random_inputs(runner.input_specs)
            ours, loop, prof = [], [], []
            for _ in range(args.rounds):
                result = edgekit.bench(bundle, warmup=args.warmup, iters=args.iters, threads=1, max_extend_rounds=0)
                ours.append(result.stats.p50)
                loop.append(raw_loop_p50(model_file, feeds, args.iters, args.warmup))
                prof.append(profiler_p50(model_file, feeds, args.iters, args.warmup, tmp))
            o, lp, p = statistics.median(ours), statistics.median(loop), statistics.median(prof)
            lines.append(f"| {label} | {o:.4f} | {lp:.4f} | {p:.4f} | {o / lp:.2f} | {o / p:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / f"bench_harness-{dt.date.today().isoformat()}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
