"""`python -m edgekit.runtime bench BUNDLE/`: bench and gate on a device without torch, Typer or Rich.

Same options, JSON (`edgekit.bench/1`) and exit codes as `edgekit bench` / `edgekit gate`:
0 every budget holds, 1 a budget failed, 2 bad input, 3 unsupported, 4 no device/toolchain.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from edgekit.errors import EdgekitError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edgekit.runtime",
                                     description="Bench or gate an edgekit bundle (torch-free).")
    sub = parser.add_subparsers(dest="verb", required=True)
    bench = sub.add_parser("bench", help="time a bundle and check latency budgets")
    gate = sub.add_parser("gate", help="re-check the budgets stored in a bundle's manifest")
    for p in (bench, gate):
        p.add_argument("bundle", help="bundle directory written by `edgekit compile`")
        p.add_argument("--warmup", type=int, default=10)
        group = p.add_mutually_exclusive_group()
        group.add_argument("--iters", type=int, default=None)
        group.add_argument("--duration", type=float, default=None, help="seconds per round")
        p.add_argument("--threads", type=int, default=None)
        p.add_argument("--trust-bundle", action="store_true",
                       help="allow the bundle to load native code (a TVM .so) although it is not signed "
                            "with your local key: only for bundles from someone you trust")
        p.add_argument("--emulated", action="store_true",
                       help="time host emulation when the device is absent (host emulation time, not device latency)")
        p.add_argument("--quiet", action="store_true", help="No progress lines on stderr.")
        p.add_argument("--json", dest="json_dest", nargs="?", const="-", default=None, metavar="FILE",
                       help="write the result as JSON (stdout with a bare --json)")
        p.add_argument("--junit", default=None, metavar="FILE", help="write JUnit XML, one testcase per budget")
    bench.add_argument("--batch", type=int, default=1)
    bench.add_argument("--mode", choices=("latency", "throughput"), default="latency",
                       help="throughput: items/s with requests in parallel (OpenVINO THROUGHPUT hint + async "
                            "requests, ONNX Runtime parallel sessions); --duration sets its length (default 10 s)")
    bench.add_argument("--streams", type=int, default=None, metavar="N",
                       help="--mode throughput: requests in flight (default: the backend's choice)")
    bench.add_argument("--input-shape", "-s", action="append", default=[], metavar="NAME:D0,D1,...",
                       help="size of a dynamic input, e.g. x:1,3,320,320 (repeat per input)")
    bench.add_argument("--budget", action="append", default=[], metavar="EXPR", help="e.g. p90<=25ms (repeat)")
    bench.add_argument("--baseline", default=None, metavar="FILE", help="a previous --json result")
    bench.add_argument("--max-regression", default=None, metavar="PCT", help="e.g. 10%% (default 10%%)")
    bench.add_argument("--force", action="store_true", help="compare with a baseline from a different environment")
    bench.add_argument("--cv-threshold", type=float, default=0.10)
    bench.add_argument("--stability-metric", choices=("robust_cv", "cv"), default="robust_cv",
                       help="spread judged against --cv-threshold")
    bench.add_argument("--max-extend-rounds", type=int, default=4, help="extra rounds for a noisy run")
    bench.add_argument("--plot", default=None, metavar="FILE.png", help="histogram + timeline (needs matplotlib)")
    return parser


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def render_text(result: Any) -> str:
    """A plain-text summary of a BenchResult (no Rich on devices)."""
    from edgekit.checks.budgets import verdict_rows

    lines = [f"bundle {result.bundle.get('path')}  target {result.bundle.get('target')}  "
             f"adapter {result.bundle.get('adapter')}  provenance {result.provenance}"]
    if result.input_shapes:  # the shapes are part of the figure
        lines.append("inputs " + "  ".join(f"{k}:{','.join(map(str, v))}" for k, v in result.input_shapes.items()))
    if result.stats is not None:
        s = result.stats
        lines.append("latency ms: " + "  ".join(f"{k} {_fmt(getattr(s, k))}" for k in
                                                 ("min", "mean", "p50", "p90", "p95", "p99", "max", "std")))
        tp = result.throughput
        if tp is not None:
            lines.append(f"throughput {_fmt(tp.items_per_s)} items/s  ({tp.items} items in {tp.seconds:.2f} s, "
                         f"{tp.streams} in flight; {tp.method}); latency above is per request")
        lines.append(f"cv {s.cv:.1%}  runs {s.n}" + ("" if tp is not None else
                                                     f"  throughput {_fmt(s.throughput)} items/s")
                     + f"  peak rss {_fmt(result.peak_rss_mb)} MiB")
    if result.load_ms is not None or result.cold_ms is not None:  # cold start, apart from the steady state
        how = f" ({result.load_path})" if result.load_path else ""
        lines.append(f"cold start: load {_fmt(result.load_ms)} ms{how}  first run {_fmt(result.cold_ms)} ms")
    elif result.estimate is not None:
        lines.append(f"estimated latency {_fmt(result.estimate.get('latency_ms'))} ms (estimated, not measured)")
    for row in verdict_rows(result.verdicts):
        lines.append("  ".join(row))
    lines += [f"warning: {w}" for w in result.warnings] + [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from edgekit.progress import LineSink, reporting

    args = _parser().parse_args(argv)
    human = sys.stderr if args.json_dest == "-" else sys.stdout
    quiet = args.quiet or args.json_dest == "-"  # stdout carries JSON: nothing else there, no chatter on stderr
    sink = None if quiet else LineSink(lambda line: print(line, file=sys.stderr, flush=True)).start()
    try:
        with reporting(sink):
            return _main(args, human)
    finally:
        if sink is not None:
            sink.close()


def _main(args: argparse.Namespace, human: Any) -> int:
    try:
        from edgekit.artifact import to_jsonable, write_text_atomic
        from edgekit.checks.budgets import bench_junit, write_junit
        from edgekit.runtime import bench

        common = dict(warmup=args.warmup, iters=args.iters, duration=args.duration, threads=args.threads,
                      allow_emulated=args.emulated, trust=args.trust_bundle)
        if args.verb == "bench":
            result = bench(args.bundle, batch=args.batch, input_shapes=args.input_shape, budgets=args.budget,
                           baseline=args.baseline,
                           max_regression=args.max_regression, force=args.force,
                           cv_threshold=args.cv_threshold, stability_metric=args.stability_metric,
                           max_extend_rounds=args.max_extend_rounds, mode=args.mode, streams=args.streams,
                           **common)
            print(render_text(result), file=human)
            if args.junit:
                bench_junit(result, args.junit)
            if args.plot:
                from edgekit.checks.plot import plot_bench

                plot_bench(result, args.plot)
        else:
            from edgekit.checks.gate import gate

            result = gate(args.bundle, **common)
            if result.bench is not None:
                print(render_text(result.bench), file=human)
            print(f"accuracy: {result.accuracy_source}", file=human)
            from edgekit.checks.budgets import verdict_rows

            for row in verdict_rows(result.verdicts):
                print("  ".join(row), file=human)
            if args.junit:
                write_junit(args.junit, result.verdicts, suite="edgekit.gate")
        payload = json.dumps(to_jsonable(result.to_json()), indent=2) + "\n"
        if args.json_dest == "-":
            sys.stdout.write(payload)
        elif args.json_dest:
            write_text_atomic(args.json_dest, payload)
        if result.verdicts:
            print(f"verdict: {result.status}", file=human)
        else:  # nothing was judged: a figure, not a pass
            print("verdict: none (no budgets given: figures only)", file=human)
        return result.exit_code
    except EdgekitError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # one line like every other outcome (outputs are written atomically)
        print("interrupted: nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
