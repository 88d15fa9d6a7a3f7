"""Markdown table and PNG chart for benchmarks/run.py results (plain dicts in, text/files out)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SUMMARY_COLUMNS = (
    ("torch", "PyTorch eager"), ("torch-1t", "PyTorch 1 thread"),
    ("ort-fp32", "ORT FP32"), ("ort-int8", "ORT INT8"), ("ov-fp32", "OV FP32"),
    ("ov-bf16", "OV bf16"), ("ov-int8-qdq", "OV INT8 QDQ"), ("ov-int8-nncf", "OV INT8 NNCF"),
    ("tvm-untuned", "TVM untuned"), ("tvm-tuned", "TVM tuned"), ("auto-fp32", "auto fp32"),
    ("auto-int8", "auto int8"), ("auto", "edgekit auto"),
)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if value != value:  # NaN
            return "nan"
        if abs(value) == float("inf"):
            return "inf"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _reason(text: str) -> str:
    """Failure reasons without the run's temporary folder (it is gone when the run ends)."""
    return re.sub(r"\S*edgekit-benchmarks-[^/\s]+/[^/\s]+/", "", text)


def _cell(row: dict[str, Any] | None) -> str:
    if not row:
        return "not run"
    if row.get("status") != "ok":
        return "failed"
    if row.get("median_ms") is None:
        return "not timed"
    return _num(row["median_ms"])


def _verdict(target: dict[str, Any]) -> str:
    """met / missed, or 'not run' when the run did not measure it (a partial run is not a miss)."""
    if target.get("value") is None:
        return "not run"
    return "**met**" if target["met"] else "**missed**"


def render_markdown(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    cfg = results.get("config", {})
    lines = [
        f"# edgekit benchmarks: {results['created_at'][:10]} on `{results['host']}`"
        + (" (quick mode: few rounds, not for quoting)" if results.get("quick") else "")
        + ("" if results.get("complete", True) else " — PARTIAL (run still going or interrupted)"), "",
        f"- Machine: {env.get('cpu_model')} · {env.get('usable_cpus')} usable CPUs · "
        f"flags {', '.join(env.get('cpu_flags') or [])} · governor {env.get('governor') or 'n/a'} · {env.get('os')}",
        f"- Threads: {cfg.get('threads')} for every candidate (torch.set_num_threads, ORT intra-op, OpenVINO "
        f"INFERENCE_NUM_THREADS, TVM_NUM_THREADS) · batch 1",
        f"- Load average (1/5/15 min) at start {env.get('load_average')}, at end {results.get('load_average_end')} "
        "— the host is shared; compare ratios within this run, not absolute times across runs.",
        f"- Timing: per model, all candidates loaded in one process and timed in {cfg.get('rounds')} interleaved "
        f"round-robin rounds (order rotated each round, ~{cfg.get('round_seconds')} s per candidate per round, "
        f"{cfg.get('warmup')} warm-up runs); median and p90 over all timed runs. TVM untuned: 1 run per round.",
        f"- Provenance: **measured** (every figure in this file was measured in this run on this machine). "
        f"Run wall time {_num(results.get('wall_s'))} s. Command: `{results.get('command')}`.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in sorted((env.get('tool_versions') or {}).items()))}",
        "",
        "## Targets (issue 9)", "", "| target | value | met? | detail |", "|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {_num(t['value'])} | {_verdict(t)} | "
                     f"{t['detail']} |")
    lines += ["", "## Latency summary (median ms, batch 1)", "",
              "| model | " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " | auto picked | auto × PyTorch | "
              "auto × best single |", "|---" * (len(SUMMARY_COLUMNS) + 4) + "|"]
    for m in results.get("models", {}).values():
        rows = m["candidates"]
        a = rows.get("auto", {})
        picked = f"{a.get('chosen')} {a.get('precision_used')}" if a.get("status") == "ok" else "–"
        lines.append(f"| {m['label']} | " + " | ".join(_cell(rows.get(k)) for k, _ in SUMMARY_COLUMNS)
                     + f" | {picked} | {_num(a.get('x_vs_torch_paired'))} ({_num(a.get('x_vs_torch'))}) | "
                     f"{_num(a.get('x_vs_best_paired'))} ({_num(a.get('x_vs_best'))}) |")
    lines += ["", "Ratios: paired per-round ratio first (the median over rounds of the two candidates' round "
              "medians, taken seconds apart), pooled-median ratio in brackets. "
              "`× PyTorch` is against the faster PyTorch row (T threads or 1 thread). "
              "`× best single` = median of the fastest single backend whose output is within the auto "
              "accuracy budget (SQNR ≥ 20 dB vs ONNX Runtime FP32) ÷ median of the row; > 1 is faster. "
              "'not run' = not requested for this model; 'failed' = see the per-model table.", ""]
    for key, m in results.get("models", {}).items():
        lines += _model_section(key, m)
    lines += _toolchain_section(results)
    notes = list(results.get("notes", []))
    for m in results.get("models", {}).values():
        notes += [f"{m['model']}: {n}" for n in m.get("notes", [])]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if results.get("outputs", {}).get("png"):
        lines += [f"![latency chart]({results['outputs']['png']})", ""]
    return "\n".join(lines) + "\n"


def _model_section(key: str, m: dict[str, Any]) -> list[str]:
    q = m.get("quantize_report") or {}
    lines = [f"## {m['label']} (`{key}`, input {', '.join(m.get('input', []))})", "",
             f"Load average at timing {m.get('load_average_timing')}. Best single backend: "
             f"{m.get('best_single', {}).get('any')} (fp32: {m.get('best_single', {}).get('fp32')}, "
             f"int8: {m.get('best_single', {}).get('int8')}). Quantize report (ORT QDQ vs FP32, "
             f"{q.get('samples')} held-out synthetic samples): cosine {_num(q.get('min_cosine'), 6)}, "
             f"SQNR {_num(q.get('min_sqnr_db'))} dB.", "",
             "| candidate | precision used | median ms | p90 ms | runs | × PyTorch | × best single | cosine vs FP32 "
             "| SQNR dB | compile s | notes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in m["candidates"].values():
        note = _reason(r.get("reason", "")) if r.get("status") != "ok" else ""
        if r.get("key", "").startswith("auto") and r.get("chosen"):
            note = f"picked {r['chosen']} {r.get('precision_used')}"
            if r.get("x_vs_best_same_pool") is not None:
                note += (f"; {_num(r.get('x_vs_best_same_pool_paired'))}× (paired; pooled "
                         f"{_num(r['x_vs_best_same_pool'])}×) best {r.get('best_same_pool')}")
                if r.get("same_build_as_best"):
                    note += ", same adapter+precision"
        if r.get("key", "").startswith("tvm") and r.get("status") == "ok":
            note = (f"tuned {r.get('tasks_tuned')}/{r.get('tasks')} tasks, {r.get('trials')} trials"
                    if r.get("tuned") else "untuned default schedules")
        lines.append(f"| {r['label']} | {r.get('precision_used') or r.get('precision')} | {_num(r.get('median_ms'))} "
                     f"| {_num(r.get('p90_ms'))} | {r.get('n', '–')} | {_num(r.get('x_vs_torch'))} | "
                     f"{_num(r.get('x_vs_best'))} | {_num(r.get('cosine'), 6)} | {_num(r.get('sqnr_db'))} | "
                     f"{_num(r.get('compile_s'))} | {note} |")
    return [*lines, ""]


def _toolchain_section(results: dict[str, Any]) -> list[str]:
    lines = ["## Toolchain cost (wall seconds, measured; torch already imported)", "",
             "| model | export | simplify | quantize (report, no sensitivity) | compile ORT FP32 | ORT INT8 (incl. "
             "calibration) | OV FP32 | OV bf16 | OV INT8 QDQ | OV INT8 NNCF | TVM untuned | TVM tuned | auto fp32 | "
             "auto int8 | precision auto | export→INT8 |", "|---" * 16 + "|"]
    for m in results.get("models", {}).values():
        t, c = m["toolchain"], m["candidates"]
        cells = [_num(t.get(k)) for k in ("export_s", "simplify_s", "quantize_s")]
        cells += [_num(c.get(k, {}).get("compile_s")) for k in ("ort-fp32", "ort-int8", "ov-fp32", "ov-bf16",
                                                                  "ov-int8-qdq", "ov-int8-nncf", "tvm-untuned",
                                                                  "tvm-tuned", "auto-fp32", "auto-int8", "auto")]
        cells.append(_num(t.get("export_to_int8_s")))
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Compile = `edgekit.compile` wall time: adapter compile, load, and verification against ONNX "
              "Runtime (and, for INT8 from the float model, calibration + quantization; for TVM tuned, the "
              "tuning itself when the persistent database lacks records). Calibration data: seeded random "
              "normal samples (the zoo models have random weights).", ""]
    cal = results.get("calibration_script")
    if cal:
        lines += ["### Calibration, ResNet-18 (`benchmarks/calibration.py`)", "",
                  f"{cal.get('samples')} samples, {cal.get('method')}: validate {cal.get('validate_s')} s · prepare "
                  f"{cal.get('prepare_s')} s · calibrate {cal.get('calibrate_s')} s · write QDQ "
                  f"{cal.get('write_qdq_s')} s · total {cal.get('total_s')} s · peak RSS "
                  f"{cal.get('peak_rss_mb_calibration')} MB (process-wide).", ""]
    cache = results.get("cached_rerun")
    if cache:
        lines += ["### Cached pipeline re-run and real task accuracy (`recipes/lenet-digits-cpu-int8.toml`)", "",
                  f"First run {_num(cache.get('first_run_s'))} s; re-run with nothing changed "
                  f"{_num(cache.get('rerun_s'))} s in process (every stage from the cache: "
                  f"{_num(cache.get('rerun_all_cached'))}), {_num(cache.get('rerun_cli_s'))} s as a fresh "
                  f"`edgekit run` process (imports included, exit {cache.get('rerun_cli_exit')}). "
                  f"LeNet-5 trained on scikit-learn digits, {cache.get('adapter')} {cache.get('precision_used')}: "
                  f"FP32 accuracy {_num(cache.get('fp32_accuracy'), 4)}, INT8 {_num(cache.get('int8_accuracy'), 4)} "
                  f"(drop {_num(cache.get('accuracy_drop_points'))} points, cosine {_num(cache.get('cosine'), 6)}) "
                  f"on {cache.get('eval')}.", ""]
    return lines


def render_chart(results: dict[str, Any], path: Path) -> None:
    """One panel per model: median latency per candidate (log scale), p90 as a whisker; auto in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in results.get("models", {}).values() if any(r.get("median_ms") for r in
                                                                   m["candidates"].values())]
    if not models:
        raise ValueError("no timed candidates to plot")
    fig, axes = plt.subplots(len(models), 1, figsize=(9, max(3.5, 3.9 * len(models))), squeeze=False)
    for ax, m in zip(axes[:, 0], models, strict=True):
        rows = [r for r in m["candidates"].values() if r.get("median_ms")]
        labels = [r["label"] for r in rows]
        med = [r["median_ms"] for r in rows]
        err = [max(0.0, r.get("p90_ms", r["median_ms"]) - r["median_ms"]) for r in rows]
        colors = ["tab:orange" if r["group"] == "auto" else "tab:gray" if r["group"] == "baseline" else "tab:blue"
                  for r in rows]
        y = range(len(rows))
        ax.barh(list(y), med, xerr=[[0] * len(err), err], color=colors, capsize=2)
        ax.set_yticks(list(y), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("median latency, ms (log; whisker = p90)", fontsize=8)
        ax.set_title(f"{m['label']} — load avg {m.get('load_average_timing')}", fontsize=9)
        for i, (v, e) in enumerate(zip(med, err, strict=True)):
            ax.text(v + e, i, f"  {v:.3g}", va="center", fontsize=6)
    fig.suptitle(f"edgekit benchmarks {results['created_at'][:10]} on {results['host']} "
                 f"({results['config'].get('threads')} threads, measured)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=110)
    plt.close(fig)
