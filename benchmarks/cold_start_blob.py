"""OpenVINO bundles with and without the compiled blob: `edgekit.load` + first run, each in a fresh process.

    python benchmarks/cold_start_blob.py [--models resnet18,yolov5n] [--precisions fp32,bf16,int8] [--reps 5]

Per (zoo model × precision): `edgekit.compile --backend openvino` (int8: NNCF on 32 seeded synthetic samples),
which measures one blob import against the IR compile and keeps the blob only when import is faster
(`info.load` in the manifest). Then `edgekit.load` of that bundle in fresh processes, `--reps` times each,
alternating: as shipped (the blob when kept) and forced to compile the IR (as before). Medians; every
figure measured on this machine in this run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def child(bundle: Path, force_ir: bool) -> dict:
    t0 = time.perf_counter()
    import openvino  # noqa: F401  (the backend's import is not the bundle's load)

    import edgekit
    import edgekit.adapters.openvino as ov_adapter

    if force_ir:
        ov_adapter._import_blob = lambda *a: (None, "IR compiled (forced)")
    imported = time.perf_counter()
    runner = edgekit.load(bundle)
    loaded = time.perf_counter()
    spec = runner.input_specs[0]
    feed = {spec.name: np.random.default_rng(0).standard_normal(spec.concrete_shape()).astype(np.float32)}
    t1 = time.perf_counter()
    runner.run(feed)
    first = time.perf_counter() - t1
    return {"import_ms": (imported - t0) * 1e3, "load_ms": (loaded - imported) * 1e3, "first_run_ms": first * 1e3,
            "load_path": runner.load_path}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,yolov5n")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekit-cold-blob"))
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"cold_start_blob-{dt.date.today()}")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--force-ir", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.force_ir)))
        return 0
    import edgekit
    from edgekit.stages.export import export

    args.work.mkdir(parents=True, exist_ok=True)
    bundles: dict[str, Path] = {}
    for model in args.models.split(","):
        onnx = args.work / f"{model}.onnx"
        if not onnx.exists():
            export(f"zoo:{model}", None, onnx)
        for precision in args.precisions.split(","):
            out = args.work / f"{model}-openvino-{precision}"
            edgekit.compile(onnx, output=out, backend="openvino", precision=precision,
                            calib="synthetic" if precision == "int8" else None, calib_samples=32)
            bundles[f"{model} {precision}"] = out
    plans = [(name, force) for name in bundles for force in (False, True)]
    runs: dict[tuple[str, bool], list[dict]] = {p: [] for p in plans}
    for rep in range(args.reps):
        for name, force in plans[rep % len(plans):] + plans[:rep % len(plans)]:
            cmd = [sys.executable, __file__, "--child", str(bundles[name])] + (["--force-ir"] if force else [])
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
            figure = json.loads(done.stdout.strip().splitlines()[-1])
            figure["load_avg"] = round(os.getloadavg()[0], 2)
            runs[(name, force)].append(figure)
        print(f"rep {rep + 1}/{args.reps} done", flush=True)
    rows = []
    for name, path in bundles.items():
        info = json.loads((path / "manifest.json").read_text())["info"]
        shipped, ir = runs[(name, False)], runs[(name, True)]
        med = {k: (statistics.median(f[k] for f in shipped), statistics.median(f[k] for f in ir))
               for k in ("load_ms", "first_run_ms")}
        rows.append({"bundle": name, "precision_used": info.get("precision_used"), "decision": info["load"]["decision"],
                     "load_path": shipped[0]["load_path"], "load_ms_shipped": med["load_ms"][0],
                     "load_ms_ir": med["load_ms"][1], "first_run_ms_shipped": med["first_run_ms"][0],
                     "first_run_ms_ir": med["first_run_ms"][1],
                     "blob_mb": round((path / "model.blob").stat().st_size / 1e6, 2)
                     if (path / "model.blob").exists() else None,
                     "load_avg": [f["load_avg"] for f in shipped + ir]})
    import openvino as ov

    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"created_at": created, "openvino": ov.get_version(),
                                                         "reps": args.reps, "rows": rows, "runs": {
                                                             f"{n} {'ir' if f else 'shipped'}": v
                                                             for (n, f), v in runs.items()}}, indent=1))
    lines = [f"# OpenVINO cold start with and without the compiled blob ({created})", "",
             f"OpenVINO {ov.get_version()}; `edgekit.load` + first run in fresh processes, {args.reps} reps each, "
             "alternating; medians, ms. 'shipped' = the bundle as compiled (the blob when compile kept it), "
             "'IR' = the same bundle forced to compile its IR (the load path before this change). Measured on "
             "this machine in this run (2 shared cores).", "",
             "| bundle | computes in | compile's decision | load shipped | load IR | × | first run shipped | "
             "first run IR | blob MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = r["load_ms_ir"] / r["load_ms_shipped"] if r["load_ms_shipped"] else float("nan")
        lines.append(f"| {r['bundle']} | {r['precision_used']} | {r['decision']} | {r['load_ms_shipped']:.0f} | "
                     f"{r['load_ms_ir']:.0f} | {ratio:.2f} | {r['first_run_ms_shipped']:.1f} | "
                     f"{r['first_run_ms_ir']:.1f} | {r['blob_mb'] or '—'} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
