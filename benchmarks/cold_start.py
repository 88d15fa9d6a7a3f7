"""Cold start, measured (issue 17): bundle load + first run per backend, and what would make loading cheaper.

Each figure is taken in a fresh process (a second load in the same process hits warm caches), the
variants alternate in rotating order for `--reps` repetitions, and the median is reported. Rows:

- `edgekit.load` — what a user's app pays on top of importing the backend (the import column): verify
  the bundle (hash every file, check the manifest's inputs against source.onnx), trust, adapter load.
  `edgekit.load-before` is the same with onnx.checker run on source.onnx at load, as before issue 17.
- ORT: an InferenceSession on the bundle's `model.opt.onnx` (saved at "extended") at load-time
  optimization levels all (today) / extended / basic / disable: load, first run, steady-state median,
  and the outputs' max abs difference from level "all" (same seeded input).
- OpenVINO: `compile_model` of the bundle's IR with its config (today) vs `import_model` of a blob
  written by `export_model` from the same compile: load, first run, steady state, and the precision
  each computes in (an imported blob must not silently change it).

    python benchmarks/cold_start.py --model resnet18 --reps 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ORT_LEVELS = ("all", "extended", "basic", "disable")
STEADY_RUNS = 20


def _feed(specs: Any) -> dict:
    from edgekit.onnxio import random_inputs

    return random_inputs(specs, seed=0)


def child(variant: str, bundle: Path, blob: Path | None) -> dict[str, Any]:
    """One cold load in this fresh process; times in ms."""
    import numpy as np

    t_import = time.perf_counter()
    if variant.startswith("edgekit.load"):
        import edgekit
        import edgekit.adapters.loading
        import edgekit.adapters.registry
        import edgekit.bundle

        if variant == "edgekit.load-before":  # as before this change: onnx.checker on source.onnx at every load
            checked = edgekit.bundle.load_onnx
            edgekit.bundle.load_onnx = lambda path, **kw: checked(path, **{**kw, "check": True})

        adapter = json.loads((bundle / "manifest.json").read_text())["info"]["adapter"]
        edgekit.adapters.registry.get_adapter(adapter)  # the backend and its Python module: imports, not load
        importlib.import_module(adapter)  # openvino / onnxruntime themselves
        imported = time.perf_counter()
        runner = edgekit.load(bundle)
        loaded = time.perf_counter()
        feed = _feed(runner.input_specs)
        run = runner.run
        precision = getattr(runner, "precision_used", None)
    elif variant.startswith("ort-"):
        from edgekit.onnxio import input_specs, load_onnx, ort_session

        imported = time.perf_counter()
        session = ort_session(bundle / "model.opt.onnx", optimization=variant.removeprefix("ort-"))
        loaded = time.perf_counter()
        feed = _feed(input_specs(load_onnx(bundle / "source.onnx", load_weights=False)))
        names = [o.name for o in session.get_outputs()]

        def run(f: dict) -> dict:
            return dict(zip(names, session.run(names, f), strict=True))

        precision = "fp32"
    else:
        import openvino as ov

        from edgekit.adapters.openvino import bundle_config
        from edgekit.onnxio import input_specs, load_onnx

        imported = time.perf_counter()
        core = ov.Core()
        config_path = bundle / "openvino_config.json"
        device, properties = bundle_config(json.loads(config_path.read_text()), config_path)
        if variant == "ov-compile":
            compiled = core.compile_model(str(bundle / "model.xml"), device, properties)
        else:
            if blob is None:
                raise SystemExit("ov-import needs --blob")
            compiled = core.import_model(blob.read_bytes(), device, properties)
        loaded = time.perf_counter()
        feed = _feed(input_specs(load_onnx(bundle / "source.onnx", load_weights=False)))
        request = compiled.create_infer_request()

        def run(f: dict) -> dict:
            out = request.infer(f)
            return {str(i): np.array(v) for i, v in enumerate(out.values())}

        precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    t0 = time.perf_counter()
    outputs = run(feed)
    first = time.perf_counter() - t0
    steady = []
    for _ in range(STEADY_RUNS):
        t0 = time.perf_counter()
        run(feed)
        steady.append(time.perf_counter() - t0)
    first_output = next(iter(outputs.values())).ravel()
    return {"variant": variant, "import_ms": (imported - t_import) * 1e3, "load_ms": (loaded - imported) * 1e3,
            "first_run_ms": first * 1e3, "steady_ms": statistics.median(steady) * 1e3, "precision": str(precision),
            "output": [float(x) for x in first_output[:1000]]}


def export_blob(bundle: Path, blob: Path) -> None:
    import openvino as ov

    from edgekit.adapters.openvino import bundle_config

    config_path = bundle / "openvino_config.json"
    device, properties = bundle_config(json.loads(config_path.read_text()), config_path)
    compiled = ov.Core().compile_model(str(bundle / "model.xml"), device, properties)
    blob.write_bytes(compiled.export_model().getvalue())


def run_child(variant: str, bundle: Path, blob: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--bundle", str(bundle)]
    if blob is not None:
        cmd += ["--blob", str(blob)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgekit-throughput"))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"cold_start-{dt.date.today()}")
    parser.add_argument("--loader-only", action="store_true", help="only the edgekit.load rows (before/after)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--blob", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.bundle, args.blob)))
        return 0
    sys.path.insert(0, str(HERE))
    from throughput import build

    args.work.mkdir(parents=True, exist_ok=True)
    bundles = build(args.model, args.work)
    blob = args.work / f"{args.model}-openvino.blob"
    export_blob(bundles["openvino"], blob)
    plans = [(f"edgekit.load{when}", bundles[name], backend) for when in ("-before", "")
             for name, backend in (("onnxruntime", "ORT"), ("openvino", "OpenVINO"))]
    if not args.loader_only:
        plans += [(f"ort-{level}", bundles["onnxruntime"], "ORT") for level in ORT_LEVELS]
        plans += [("ov-compile", bundles["openvino"], "OpenVINO"), ("ov-import", bundles["openvino"], "OpenVINO")]
    runs: dict[str, list[dict[str, Any]]] = {f"{b} {v}": [] for v, _, b in plans}
    for r in range(args.reps):
        order = plans[r % len(plans):] + plans[:r % len(plans)]
        for variant, bundle, backend in order:
            figure = run_child(variant, bundle, blob if variant == "ov-import" else None)
            figure["load_avg"] = os.getloadavg()[0]
            runs[f"{backend} {variant}"].append(figure)
            print(f"rep {r + 1} {backend} {variant}: load {figure['load_ms']:.1f} ms, first "
                  f"{figure['first_run_ms']:.1f} ms", flush=True)
    import numpy as np

    def median(key: str, name: str) -> float:
        return statistics.median(f[key] for f in runs[name])

    reference = {"ORT": np.array(runs["ORT edgekit.load-before"][0]["output"]),
                 "OpenVINO": np.array(runs["OpenVINO edgekit.load-before"][0]["output"])}
    rows = []
    for name, figures in runs.items():
        backend = name.split()[0]
        diff = float(np.max(np.abs(np.array(figures[0]["output"]) - reference[backend])))
        rows.append({"row": name, "load_ms": median("load_ms", name), "first_run_ms": median("first_run_ms", name),
                     "steady_ms": median("steady_ms", name), "import_ms": median("import_ms", name),
                     "precision": figures[0]["precision"], "max_abs_vs_today": diff,
                     "load_avg": [round(f["load_avg"], 2) for f in figures]})
    from edgekit.artifact import tool_versions
    from edgekit.environment import environment_fingerprint

    env = environment_fingerprint(versions=tool_versions())
    payload = {"model": args.model, "reps": args.reps, "rows": rows, "environment": env,
               "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "blob_bytes": blob.stat().st_size}
    for figures in runs.values():
        for f in figures:
            f.pop("output", None)
    payload["runs"] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    lines = ["| backend · how | load ms | first run ms | load + first ms | steady ms | precision | "
             "max abs vs load-before | load avg |", "|---|---:|---:|---:|---:|---|---:|---|"]
    for row in rows:
        lines.append(f"| {row['row']} | {row['load_ms']:.1f} | {row['first_run_ms']:.1f} | "
                     f"{row['load_ms'] + row['first_run_ms']:.1f} | {row['steady_ms']:.2f} | {row['precision']} | "
                     f"{row['max_abs_vs_today']:.2g} | {', '.join(map(str, row['load_avg']))} |")
    text = "\n".join(lines)
    args.out.with_suffix(".md").write_text(f"# Cold start — {args.model}, {payload['created_at']}\n\n"
                                           f"{env.get('cpu_model')}, {env.get('usable_cpus')} shared CPUs; "
                                           f"{args.reps} fresh processes per row, medians.\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
