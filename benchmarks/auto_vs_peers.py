"""edgekit's precision auto against every build a user could make by hand, each build timed in its own process.

    python benchmarks/auto_vs_peers.py [--models resnet18,mobilenetv2,yolov5n-320,unet,yolov5n-640]
                                       [--runs 5] [--seconds 1.5] [--threads 2] [--out benchmarks/results]

Per zoo model (seeded random weights, exported by edgekit; data are real photographs):
1. data: crops of scikit-image's sample photographs, resized to the model input and normalised (ImageNet mean/std;
   grayscale for 1-channel models): 32 calibration images, 16 evaluation images from other photographs.
2. `edgekit compile -p auto` (the default screening) and `-p auto --exhaustive`, each a fresh process with an empty
   stage cache: wall time and pick. The same pick is issue 17's "same choice as the exhaustive search".
3. peers, built the way each tool's documentation shows, not through edgekit: ORT FP32; ORT INT8
   (`quant_pre_process` + `quantize_static`, QDQ U8S8 per-channel as its docs advise on x86, the 32 calibration
   images); OpenVINO FP32 (f32 hint);
   OpenVINO default (bf16 on a CPU with AMX/AVX512-BF16); NNCF INT8 (`nncf.quantize` defaults, the same images),
   run with OpenVINO defaults.
4. accuracy: SQNR of every build's outputs vs ORT FP32 on the 16 evaluation images; "accurate" = SQNR >= 20 dB, the
   budget auto is given. A peer that is not accurate is not a peer auto must match.
5. timing: each build in its own `benchmarks/_proc_timer.py` process, `--runs` runs each in rotated order (a busy
   spell hits every build alike), p50 per process. Ratio = median over runs of (best accurate peer's p50 ÷ auto's
   pick's p50), paired by run; >= 0.98 is issue 17's target. Mixed builds of the exhaustive search are timed too.

Writes OUT/auto_vs_peers-YYYY-MM-DD.json and .md. Every figure is measured on this machine in this run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS: dict[str, tuple[str, str | None, str]] = {
    "resnet18": ("resnet18", None, "ResNet-18 224"),
    "mobilenetv2": ("mobilenetv2", None, "MobileNetV2 224"),
    "yolov5n-320": ("yolov5n", "images:1,3,320,320", "YOLOv5n-shaped 320"),
    "unet": ("unet", None, "U-Net 256 (1 ch)"),
    "yolov5n-640": ("yolov5n", None, "YOLOv5n-shaped 640"),
    "lenet5": ("lenet5", None, "LeNet-5 32 (smoke)"),
}
BUDGET_DB = 20.0
TARGET_RATIO = 0.98
WALL_TARGET_S = 60.0
CALIB_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "colorwheel")
EVAL_PHOTOS = ("cat", "camera", "moon", "coins", "horse", "clock", "grass", "brick")
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def log(text: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {text}", flush=True)


def photo_samples(names: tuple[str, ...], count: int, shape: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """`count` crops of real photographs (scikit-image's bundled samples) as NCHW float32 inputs of `shape`."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    _, channels, height, width = shape
    photos = []
    for name in names:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        photos.append(img[..., :3].astype(np.uint8))
    out = []
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = Image.fromarray(img[y:y + side, x:x + side]).resize((width, height), Image.BILINEAR)
        arr = np.asarray(crop, dtype=np.float32)
        if channels == 1:
            arr = (arr @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            arr = (arr - np.mean(MEAN)) / np.mean(STD)
        else:
            arr = (arr - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        out.append(np.ascontiguousarray(arr.transpose(2, 0, 1)[None], dtype=np.float32))
    return out


def sqnr_db(ref: list[dict[str, np.ndarray]], got: list[dict[str, np.ndarray]]) -> float:
    """Worst output's SQNR over all samples (edgekit's `checks.numerics.sqnr_db` on the concatenated outputs)."""
    from edgekit.checks.numerics import sqnr_db as one_sqnr

    def joined(outs: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
        return np.concatenate([np.asarray(x[name]).ravel() for x in outs])

    return min(one_sqnr(joined(ref, name), joined(got, name)) for name in ref[0])


# ------------------------------------------------------------------------------------------ peers

def build_peers(model: Path, calib: list[np.ndarray], input_name: str, work: Path) -> dict[str, dict[str, Any]]:
    """The builds a user makes by hand with each tool's documented defaults (no edgekit code)."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    peers: dict[str, dict[str, Any]] = {
        "ort-fp32": {"label": "ORT FP32", "kind": "ort", "path": model, "precision": "fp32"}}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{input_name: x} for x in calib])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    pre = work / "peer.pre.onnx"
    t0 = time.perf_counter()
    quant_pre_process(str(model), str(pre))
    # U8S8 per-channel: what ORT's docs recommend on x86 with AVX2/AVX-512 (VPMADDUBSW), for speed and CNN accuracy
    quantize_static(str(pre), str(work / "peer.int8.onnx"), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    peers["ort-int8"] = {"label": "ORT INT8 (quantize_static QDQ U8S8)", "kind": "ort", "path": work / "peer.int8.onnx",
                         "precision": "int8", "build_s": time.perf_counter() - t0}
    ov_model = ov.convert_model(str(model))
    ov.save_model(ov_model, str(work / "peer.xml"), compress_to_fp16=False)
    peers["ov-fp32"] = {"label": "OpenVINO FP32 (f32 hint)", "kind": "ov", "path": work / "peer.xml", "hint": "f32",
                        "precision": "fp32"}
    peers["ov-default"] = {"label": "OpenVINO default (bf16 here)", "kind": "ov", "path": work / "peer.xml",
                           "hint": "default", "precision": "bf16"}
    t0 = time.perf_counter()
    quantized = nncf.quantize(ov.convert_model(str(model)), nncf.Dataset(calib))
    ov.save_model(quantized, str(work / "peer.nncf.xml"), compress_to_fp16=False)
    peers["nncf-int8"] = {"label": "NNCF INT8 (defaults), OpenVINO default", "kind": "ov",
                          "path": work / "peer.nncf.xml", "hint": "default", "precision": "int8",
                          "build_s": time.perf_counter() - t0}
    return peers


def outputs_of(entry: dict[str, Any], feeds: list[dict[str, np.ndarray]], threads: int) -> list[dict[str, Any]]:
    """Outputs of a build on the evaluation feeds, run as its timing process runs it."""
    if entry["kind"] == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        session = ort.InferenceSession(str(entry["path"]), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return [dict(zip(names, session.run(None, f), strict=True)) for f in feeds]
    if entry["kind"] == "ov":
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
        if entry.get("hint", "default") != "default":
            config["INFERENCE_PRECISION_HINT"] = entry["hint"]
        compiled = ov.Core().compile_model(str(entry["path"]), "CPU", config)
        request = compiled.create_infer_request()
        return [{o.any_name: np.array(v) for o, v in request.infer(f).items()} for f in feeds]
    import edgekit

    with edgekit.load(entry["path"], threads=threads) as runner:
        return [dict(runner.run(f)) for f in feeds]


def _align(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """Output names may differ between runtimes (OpenVINO renames some): match by order when they do."""
    if set(ref) == set(got):
        return got
    return dict(zip(ref, got.values(), strict=False))


# ------------------------------------------------------------------------------------------ edgekit auto

def run_auto(model: Path, calib: Path, eval_dir: Path, out: Path, threads: int, exhaustive: bool,
             work: Path) -> dict[str, Any]:
    """`edgekit compile -p auto` in a fresh process with an empty stage cache: wall time, pick, candidates."""
    cache = work / ("cache-exhaustive" if exhaustive else "cache-auto")
    report = work / ("auto-exhaustive.json" if exhaustive else "auto.json")
    cmd = [sys.executable, "-m", "edgekit", "compile", str(model), "-p", "auto", "--calib", str(calib), "--eval",
           str(eval_dir), "--accuracy-budget", f"sqnr>={BUDGET_DB:g}dB", "--threads", str(threads), "-o", str(out),
           "--json", str(report)] + (["--exhaustive"] if exhaustive else [])
    env = {**os.environ, "EDGEKIT_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not report.is_file():
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return {"wall_s": wall, "error": tail, "exit_code": proc.returncode}
    data = json.loads(report.read_text())
    target = data["targets"][0]
    cands = [{k: c.get(k) for k in ("adapter", "precision", "precision_used", "status", "sqnr_db", "latency_ms",
                                    "latency_kind", "reason", "chosen")} for c in target["candidates"]]
    mixed = {}
    for c in target["candidates"]:
        if c["precision"] == "mixed" and c["status"] in ("passed", "rejected"):
            variant = "+bf16" if "float part with float_precision=bf16" in (c.get("reason") or "") else ""
            found = sorted(cache.glob(f"v1/compile[[]{c['adapter']}-mixed{variant}[]]/*/*/bundle"))
            if found:
                mixed[f"{c['adapter']}-mixed"] = found[0]
    chosen = next((c for c in target["candidates"] if c.get("chosen")), {})
    return {"wall_s": wall, "exit_code": proc.returncode, "adapter": target.get("adapter"),
            "candidate": f"{chosen.get('adapter')}·{chosen.get('precision')}",
            "precision_used": target.get("precision_used"), "decision": target.get("decision"), "candidates": cands,
            "bundle": out, "mixed_bundles": mixed}


# ------------------------------------------------------------------------------------------ timing

def time_in_processes(builds: dict[str, dict[str, Any]], feed: Path, *, runs: int, seconds: float,
                      threads: int) -> dict[str, list[float | None]]:
    """p50 of every build, one process per (build, run), the order rotated each run."""
    keys = list(builds)
    p50s: dict[str, list[float | None]] = {k: [] for k in keys}
    for run in range(runs):
        order = keys[run % len(keys):] + keys[:run % len(keys)]
        for key in order:
            b = builds[key]
            cmd = [sys.executable, str(HERE / "_proc_timer.py"), b["kind"], str(b["path"]), str(feed),
                   "--threads", str(threads), "--seconds", f"{seconds:g}", "--hint", b.get("hint", "default")]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
            try:
                p50s[key].append(float(json.loads(proc.stdout.strip().splitlines()[-1])["p50_ms"]))
            except (IndexError, KeyError, ValueError):
                p50s[key].append(None)
                b["timing_error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"  timing run {run + 1}/{runs} done")
    return p50s


def paired(a: list[float | None], b: list[float | None]) -> float | None:
    """Median over runs of a/b (runs where both timed)."""
    ratios = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
    return float(np.median(ratios)) if ratios else None


def median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(np.median(got)) if got else None


# ------------------------------------------------------------------------------------------ one model

def bench_model(key: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgekit.onnxio import input_specs, load_onnx
    from edgekit.stages.export import export

    zoo_name, shape, label = MODELS[key]
    result: dict[str, Any] = {"model": key, "label": label, "load_average_start": os.getloadavg()}
    log(f"{key}: export")
    export(f"zoo:{zoo_name}", input_shapes=[shape] if shape else None, output=work / "model.onnx")
    model = work / "model.onnx"
    specs = input_specs(load_onnx(model, load_weights=False))
    if len(specs) != 1:
        raise SystemExit(f"{key}: one-input models only")
    spec = specs[0]
    dims = tuple(spec.concrete_shape())
    calib = photo_samples(CALIB_PHOTOS, args.calib, dims, seed=1)
    evals = photo_samples(EVAL_PHOTOS, args.eval, dims, seed=2)
    for folder, arrays in (("calib", calib), ("eval", evals)):
        (work / folder).mkdir()
        for i, a in enumerate(arrays):
            np.save(work / folder / f"{i:03d}.npy", a)
    feed = work / "feed.npz"
    np.savez(feed, **{spec.name: evals[0]})
    result["data"] = {"calibration": f"{len(calib)} crops of {', '.join(CALIB_PHOTOS)} (scikit-image)",
                      "eval": f"{len(evals)} crops of {', '.join(EVAL_PHOTOS)} (scikit-image)",
                      "input": f"{spec.name}:{','.join(map(str, dims))}"}

    log(f"{key}: edgekit compile -p auto")
    auto = run_auto(model, work / "calib", work / "eval", work / "auto.bundle", args.threads, False, work)
    log(f"{key}: auto {auto.get('adapter')} {auto.get('precision_used')} in {auto['wall_s']:.1f} s")
    log(f"{key}: edgekit compile -p auto --exhaustive")
    exhaustive = run_auto(model, work / "calib", work / "eval", work / "exhaustive.bundle", args.threads, True, work)
    log(f"{key}: exhaustive {exhaustive.get('adapter')} {exhaustive.get('precision_used')} "
        f"in {exhaustive['wall_s']:.1f} s")
    result["auto"], result["exhaustive"] = auto, exhaustive
    result["same_pick"] = auto.get("candidate") == exhaustive.get("candidate") and "error" not in auto

    log(f"{key}: peers")
    peers = build_peers(model, calib, spec.name, work)
    builds: dict[str, dict[str, Any]] = dict(peers)
    if "error" not in auto:
        builds["auto"] = {"label": f"edgekit auto → {auto['adapter']} {auto['precision_used']}", "kind": "bundle",
                          "path": auto["bundle"], "precision": auto["precision_used"]}
    if "error" not in exhaustive and not result["same_pick"]:
        builds["exhaustive"] = {"label": f"edgekit --exhaustive → {exhaustive['adapter']} "
                                f"{exhaustive['precision_used']}", "kind": "bundle", "path": exhaustive["bundle"],
                                "precision": exhaustive["precision_used"]}
    for name, path in (exhaustive.get("mixed_bundles") or {}).items():
        builds[f"edgekit-{name}"] = {"label": f"edgekit mixed INT8 ({name.split('-')[0]})", "kind": "bundle",
                                     "path": path, "precision": "mixed"}

    log(f"{key}: accuracy of {len(builds)} builds on {len(evals)} eval images")
    feeds = [{spec.name: x} for x in evals]
    reference = outputs_of(peers["ort-fp32"], feeds, args.threads)
    for b in builds.values():
        try:
            got = outputs_of(b, feeds, args.threads)
            b["sqnr_db"] = sqnr_db(reference, [_align(r, g) for r, g in zip(reference, got, strict=True)])
        except Exception as exc:  # one build's failure must not end the run
            b["sqnr_db"], b["accuracy_error"] = None, f"{type(exc).__name__}: {exc}"[:200]
        b["accurate"] = b["sqnr_db"] is not None and b["sqnr_db"] >= BUDGET_DB

    log(f"{key}: timing {len(builds)} builds, one process each, {args.runs} runs")
    result["load_average_timing"] = os.getloadavg()
    p50s = time_in_processes(builds, feed, runs=args.runs, seconds=args.seconds, threads=args.threads)
    result["load_average_end"] = os.getloadavg()
    for k, b in builds.items():
        b["p50s_ms"], b["median_p50_ms"] = p50s[k], median(p50s[k])
    accurate_peers = [k for k in peers if builds[k]["accurate"] and builds[k]["median_p50_ms"] is not None]
    best = min(accurate_peers, key=lambda k: builds[k]["median_p50_ms"]) if accurate_peers else None
    result["best_peer"] = best
    if "exhaustive" in builds and "auto" in builds:  # different picks: how far apart, in separate processes
        result["exhaustive_vs_auto_paired"] = paired(p50s["exhaustive"], p50s["auto"])
    if best and "auto" in builds:
        result["ratio_paired"] = paired(p50s[best], p50s["auto"])
        result["ratio_medians"] = builds[best]["median_p50_ms"] / builds["auto"]["median_p50_ms"] \
            if builds["auto"]["median_p50_ms"] else None
    floats = [k for k in builds if builds[k]["precision"] in ("fp32", "bf16") and builds[k]["accurate"]
              and builds[k]["median_p50_ms"] is not None]
    best_float = min(floats, key=lambda k: builds[k]["median_p50_ms"]) if floats else None
    result["best_float"] = best_float
    for k, b in builds.items():
        if b["precision"] == "mixed" and best_float and b["median_p50_ms"]:
            b["vs_best_float_paired"] = paired(p50s[best_float], p50s[k])
    result["builds"] = {k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in b.items()}
                        for k, b in builds.items()}
    for k in ("auto", "exhaustive"):
        result[k] = {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in result[k].items()
                     if kk != "mixed_bundles"}
    return result


# ------------------------------------------------------------------------------------------ report

def render(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# edgekit precision auto vs every peer build, each in its own process ({meta['date']})", "",
             f"- Machine: {meta['cpu']} · {meta['cpus']} CPUs · Python {meta['python']} · threads {meta['threads']}",
             f"- Command: `{meta['command']}` · wall time {meta['wall_s']:.0f} s",
             "- Provenance: **measured** — every figure was measured in this run on this machine.",
             "- Data: real photographs (scikit-image samples) cropped and resized to each model's input, "
             "ImageNet mean/std; calibration and evaluation from different photographs. Zoo weights are seeded "
             "random, so accuracy is SQNR vs ORT FP32 (the budget auto is given: SQNR >= 20 dB), not task accuracy.",
             f"- Timing: each build in its own process (benchmarks/_proc_timer.py), {meta['runs']} runs per build in "
             f"rotated order, {meta['seconds']:g} s of runs after 5 warm-up runs; p50 per process. `ratio` = median "
             "over runs of best accurate peer p50 ÷ auto p50, paired by run (> 1: auto faster).", "",
             "## Targets (issue 17)", "",
             "| model | auto pick | auto wall s | exhaustive pick | exhaustive wall s | same pick | best accurate "
             "peer | ratio (paired) | ≥ 0.98× | wall ≤ 60 s |",
             "|---|---|---:|---|---:|---|---|---:|---|---|"]
    for r in results:
        a, e = r["auto"], r["exhaustive"]
        pick = f"{a.get('candidate')} ({a.get('precision_used')})" if "error" not in a else f"error: {a['error']}"
        epick = f"{e.get('candidate')} ({e.get('precision_used')})" if "error" not in e else f"error: {e['error']}"
        ratio = r.get("ratio_paired")
        best = r.get("best_peer")
        same = "yes" if r["same_pick"] else (f"**no**: auto's pick {r['exhaustive_vs_auto_paired']:.3f}× the "
                                             "exhaustive pick's speed" if r.get("exhaustive_vs_auto_paired")
                                             else "**no**")
        lines.append(f"| {r['label']} | {pick} | {a['wall_s']:.1f} | {epick} | {e['wall_s']:.1f} | "
                     f"{same} | {r['builds'][best]['label'] if best else '—'} | "
                     f"{ratio:.3f} | {'met' if ratio is not None and ratio >= TARGET_RATIO else '**missed**'} | "
                     f"{'met' if a['wall_s'] <= WALL_TARGET_S else '**missed**'} |" if ratio is not None else
                     f"| {r['label']} | {pick} | {a['wall_s']:.1f} | {epick} | {e['wall_s']:.1f} | "
                     f"{same} | {best or '—'} | — | **not computed** | — |")
    lines += ["", "Wall time: `edgekit compile -p auto` as a fresh CLI process with an empty stage cache (imports, "
              "export excluded, data given as .npy folders), on the same 2 shared cores as everything else.", ""]
    for r in results:
        lines += [f"## {r['label']}", "", f"Input {r['data']['input']}. Load average at timing "
                  f"{[round(x, 2) for x in r['load_average_timing']]}. Auto's decision: "
                  f"{r['auto'].get('decision', '—')}", "",
                  "| build | precision | SQNR dB vs ORT FP32 | accurate | p50 ms (median of processes) | p50 per "
                  "process | this ÷ auto (paired; > 1: auto faster) |", "|---|---|---:|---|---:|---|---:|"]
        for b in sorted(r["builds"].values(), key=lambda b: b.get("median_p50_ms") or 1e9):
            auto_p50s = r["builds"].get("auto", {}).get("p50s_ms") or []
            x = paired(b["p50s_ms"], auto_p50s) if auto_p50s else None  # > 1: auto's pick is faster
            sq = b.get("sqnr_db")
            sq_text = "—" if sq is None else ("inf" if sq == float("inf") else f"{sq:.1f}")
            lines.append(f"| {b['label']} | {b['precision']} | {sq_text} | "
                         f"{'yes' if b['accurate'] else 'no'} | {b['median_p50_ms'] or float('nan'):.3f} | "
                         f"{', '.join('—' if p is None else f'{p:.2f}' for p in b['p50s_ms'])} | "
                         f"{'—' if x is None else f'{x:.3f}'} |")
        lines += ["", "Search (screening on): " + "; ".join(
            f"{c['adapter']}·{c['precision']} {c['status']}" + (f" ({c['reason']})" if c["status"] == "skipped"
                                                                 or "dropped" in (c["reason"] or "") else "")
            for c in r["auto"].get("candidates", [])), ""]
        mixed = [b for b in r["builds"].values() if b["precision"] == "mixed"]
        for b in mixed:
            v = b.get("vs_best_float_paired")
            lines.append(f"Mixed: {b['label']} SQNR {b.get('sqnr_db') or float('nan'):.1f} dB, "
                         f"{'—' if v is None else f'{v:.3f}'}× the best accurate float build "
                         f"({r.get('best_float')}) in separate processes.")
        if not mixed:
            tried = [f"{c['adapter']}·mixed {c['status']}: {c.get('reason') or ''}"
                     for c in r["exhaustive"].get("candidates", []) if c["precision"] == "mixed"]
            lines.append("Mixed: no mixed INT8 build to time. In the exhaustive search: " + ("; ".join(tried) or
                                                                                            "none planned") + ".")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenetv2,yolov5n-320,unet,yolov5n-640")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--eval", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, default=None, help="keep the builds here (default: a temp dir)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgekit-auto-peers-") as tmp:
        root = args.work or Path(tmp)
        for key in args.models.split(","):
            work = root / key
            work.mkdir(parents=True, exist_ok=False)
            results.append(bench_model(key, args, work))
    date = dt.date.today().isoformat()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    meta = {"date": date, "cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "threads": args.threads, "runs": args.runs, "seconds": args.seconds,
            "command": "python benchmarks/auto_vs_peers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"auto_vs_peers-{date}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "models": results}, indent=1, default=str))
    stem.with_suffix(".md").write_text(render(results, meta))
    log(f"wrote {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
