"""Run report: `OUT/report.md` and a self-contained `OUT/report.html` with tables and plots.

Every figure and every number carries its provenance (measured / emulated / estimated /
not-run), in the table cells, in plot titles and on each plotted point, so an NPU estimate is
never read as a measurement. Plots are PNG files in `OUT/figures/` (matplotlib, Agg backend);
the HTML embeds them as base64 so the file can be attached to a CI run on its own. Without
matplotlib the report is written with tables only and says so.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
from pathlib import Path
from typing import Any

from edgekit.artifact import write_text_atomic
from edgekit.pipeline.results import Candidate, PipelineResult, TargetResult
from edgekit.specs import format_shapes

_MARKERS = {"measured": "o", "emulated": "s", "estimated": "^", "not-run": "x"}
_PLOTS_ENABLED = [True]  # tests switch plotting off to check the fallback


def _num(value: Any, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if math.isnan(value):
        return "nan"
    text = f"{value:.{digits}g}"
    return f"{text} {unit}".strip()


def _acc_metric(c: Candidate | TargetResult) -> tuple[str, float | None]:
    """The accuracy figure to plot: task accuracy when labels exist, else SQNR (dB)."""
    if isinstance(c.accuracy, dict):  # a TargetResult: the chosen build's figures
        accuracy, sqnr = c.accuracy.get("accuracy"), c.accuracy.get("sqnr_db")
    else:
        accuracy, sqnr = c.accuracy, getattr(c, "sqnr_db", None)
    if accuracy is not None:
        return "task accuracy", float(accuracy)
    if sqnr is None:
        return "SQNR (dB)", None
    return "SQNR (dB) vs FP32", min(float(sqnr), 120.0)  # exact (inf) plotted at 120 dB


# ------------------------------------------------------------------------------------------ plots

def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save(fig: Any, path: Path, plt: Any) -> Path:
    from edgekit.artifact import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_frontier(target: TargetResult, path: Path, *, budget_note: str = "",
                  budget: dict[str, Any] | None = None, reference_accuracy: float | None = None) -> Path | None:
    """Latency vs accuracy for every (adapter × precision) candidate; the chosen one starred."""
    plt = _pyplot()
    if plt is None:
        return None
    points = [c for c in target.candidates if c.latency_ms is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    label = "accuracy"
    legend = []
    for i, c in enumerate(points):
        label, y = _acc_metric(c)
        if y is None:
            y = 0.0
        colour = "tab:green" if c.meets_budget else "tab:red"
        ax.scatter([c.latency_ms], [y], marker=_MARKERS.get(c.latency_provenance, "o"), s=60, c=colour,
                   edgecolors="black", linewidths=0.5, zorder=3)
        if c.chosen:
            ax.scatter([c.latency_ms], [y], marker="*", s=420, facecolors="none", edgecolors="gold",
                       linewidths=2.0, zorder=4)
        used = f"→{c.precision_used}" if c.precision_used and c.precision_used != c.precision else ""
        # a number beside each point and the names in a key below: labels never overlap, however close
        ax.annotate(str(i + 1), (c.latency_ms, y), textcoords="offset points", xytext=(5, 5), fontsize=8,
                    fontweight="bold")
        legend.append(f"{i + 1}: {c.adapter}/{c.precision}{used} — {_num(c.latency_ms, 4, 'ms')} "
                      f"({c.latency_kind or c.latency_provenance}), {label} {_num(y, 4)} (acc {c.accuracy_provenance})")
    budget = budget or {}
    if label.startswith("SQNR") and budget.get("min_sqnr_db") is not None:
        ax.axhline(float(budget["min_sqnr_db"]), color="red", linestyle="dashed", linewidth=1)
    elif label == "task accuracy" and budget.get("max_drop") is not None and reference_accuracy is not None:
        ax.axhline(reference_accuracy - float(budget["max_drop"]) / 100.0, color="red", linestyle="dashed",
                   linewidth=1)
    ax.set_xlabel("latency (ms): the side-by-side median the choice was made on")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    chosen = next((c for c in points if c.chosen), None)
    title = f"{target.target}: precision auto frontier"
    if chosen is not None:
        used = f"→{chosen.precision_used}" if chosen.precision_used not in (None, chosen.precision) else ""
        title += f" — chosen {chosen.adapter}/{chosen.precision}{used}"
    ax.set_title(title, fontsize=10)
    note = "green: meets the accuracy budget, red: does not; ★ chosen; red dashes: accuracy budget; " \
           "marker = latency provenance (o measured, s emulated, ^ estimated)"
    if budget_note:
        note += f"\nbudget: {budget_note}"
    note += "\n" + "\n".join(legend)
    fig.text(0.01, -0.04, note, fontsize=7, va="top")
    return _save(fig, path, plt)


def plot_latency(result: PipelineResult, path: Path) -> Path | None:
    """p50 per target (bar) with a p50→p99 whisker and the budget marked, provenance on each bar.

    A log axis when the figures and the budget span more than 20×, so a 0.05 ms bar next to a 5 ms
    budget stays visible; the budget is a labelled red marker at its own value either way.
    """
    plt = _pyplot()
    rows = [t for t in result.targets if t.latency.get("p50") is not None]
    if plt is None or not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(rows) + 2), 3.8))
    xs = range(len(rows))
    p50 = [t.latency["p50"] for t in rows]
    p99 = [t.latency.get("p99", t.latency.get("p90", t.latency["p50"])) for t in rows]
    limits = [v.limit for t in rows for v in t.verdicts if v.kind == "latency" and v.limit is not None]
    values = [v for v in (*p50, *p99, *limits) if v and v > 0]
    log = bool(values) and max(values) / min(values) > 20
    colours = ["tab:blue" if t.latency_provenance == "measured" else "tab:purple" for t in rows]
    ax.bar(xs, p50, color=colours, alpha=0.8)
    ax.errorbar(xs, p50, yerr=[[0] * len(rows), [max(0.0, b - a) for a, b in zip(p50, p99, strict=True)]],
                fmt="none", ecolor="black", capsize=4)
    for i, t in enumerate(rows):
        ax.annotate(f"p50 {_num(p50[i], 3)} ms\np99 {_num(p99[i], 3)} ms\n{t.latency_provenance}", (i, p99[i]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
        for v in t.verdicts:
            if v.kind == "latency" and v.limit is not None:
                ax.hlines(v.limit, i - 0.4, i + 0.4, colors="red", linestyles="dashed")
                ax.annotate(f"{v.name}", (i + 0.4, v.limit), textcoords="offset points", xytext=(2, 2),
                            fontsize=6, color="red")
    if log:
        ax.set_yscale("log")
    ax.set_xticks(list(xs), [f"{t.target}\n{t.adapter}/{t.precision_used or t.precision}" for t in rows], fontsize=8)
    ax.set_ylabel("latency (ms" + (", log scale" if log else "") + "): bar p50, whisker p99")
    ax.set_title("Latency per target, measured in this run (provenance on each bar; red = budget)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, plt)


def plot_accuracy(result: PipelineResult, path: Path) -> Path | None:
    """Accuracy of each target's build next to the FP32 reference, with provenance."""
    plt = _pyplot()
    rows = [t for t in result.targets if _acc_metric(t)[1] is not None]
    if plt is None or not rows:
        return None
    label = _acc_metric(rows[0])[0]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(rows) + 2.5), 3.8))
    names = ["FP32 ONNX\n(reference)"] if label == "task accuracy" and result.reference.get("accuracy") is not None \
        else []
    values = [float(result.reference["accuracy"])] if names else []
    provs = ["measured"] if names else []
    for t in rows:
        names.append(f"{t.target}\n{t.adapter}/{t.precision_used or t.precision}")
        values.append(float(_acc_metric(t)[1] or 0.0))
        provs.append(str(t.accuracy.get("provenance", "not-run")))
    ax.bar(range(len(values)), values, color=["grey"] + ["tab:green"] * (len(values) - 1) if names else None,
           alpha=0.8)
    for i, (v, p) in enumerate(zip(values, provs, strict=True)):
        ax.annotate(f"{_num(v, 4)}\n{p}", (i, v), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
    ax.set_xticks(range(len(values)), names, fontsize=8)
    ax.set_ylabel(label)
    if label == "task accuracy":
        ax.set_ylim(max(0.0, min(values) - 0.1), 1.02)
    ax.set_title(f"Accuracy on the eval set ({result.reference.get('eval', 'eval set')})", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path, plt)


# ------------------------------------------------------------------------------------------ tables

def _target_rows(result: PipelineResult) -> list[list[str]]:
    rows = []
    for t in result.targets:
        label, acc = _acc_metric(t)
        rows.append([
            t.target, t.status.upper(), t.adapter or "—", f"{t.precision or '—'} → {t.precision_used or '—'}",
            f"{_num(t.latency.get('p50'), 4, 'ms')} / {_num(t.latency.get('p90'), 4, 'ms')} / "
            f"{_num(t.latency.get('p99'), 4, 'ms')} / {_num(t.latency.get('max'), 4, 'ms')}",
            _num(100 * t.latency["cv"], 3, "%") if t.latency.get("cv") is not None else "—",
            t.latency_provenance + (f" ({_figure_context(t)})" if t.latency_figure else ""),
            f"{label}: {_num(acc)}" if acc is not None else "—",
            str(t.accuracy.get("provenance", "not-run")),
            str(t.bundle) if t.bundle else (t.reason or "—"),
        ])
    return rows


def _figure_context(t: TargetResult) -> str:
    """Where a latency figure comes from: this run or not, the shapes, the host."""
    f = t.latency_figure
    if f is None:
        return ""
    shapes = format_shapes(f.input_shapes)
    return ("this run" if f.fresh else f"from {f.measured_at}") + (f", {shapes}" if shapes else "") + \
        (f", {f.iterations} runs" if f.iterations else "")


def _decisions(result: PipelineResult) -> list[str]:
    return [f"{t.target}: ★ {t.adapter} {t.precision_used or t.precision} — {t.decision}"
            for t in result.targets if t.decision and len(t.candidates) > 1]


def _verdict_rows(t: TargetResult) -> list[list[str]]:
    rows = []
    for v in t.verdicts:
        digits = 6 if v.kind == "accuracy" else 4
        rows.append([t.target, v.name, v.kind, _num(v.measured, digits, v.unit), f"{v.op} {_num(v.limit, 4, v.unit)}",
                     v.status.upper(), v.provenance, v.note])
    return rows


def _candidate_rows(t: TargetResult) -> list[list[str]]:
    """One row per candidate; "× FP32" compares figures of the same kind (side by side, same rounds)."""
    rows = []
    fp32 = [c.latency_ms for c in t.candidates if c.precision == "fp32" and c.latency_ms is not None
            and c.latency_kind == "side-by-side median"]
    ref = min(fp32) if fp32 else None
    for c in t.candidates:
        ratio = f"{ref / c.latency_ms:.2f}×" if ref and c.latency_ms and c.latency_kind == "side-by-side median" \
            else "—"
        rows.append([
            ("★ " if c.chosen else "") + c.adapter, f"{c.precision} → {c.precision_used or '—'}", c.status,
            f"{_num(c.latency_ms, 4, 'ms')} ({c.latency_kind})" if c.latency_ms is not None else "—", ratio,
            c.latency_provenance, _num(c.size_mb, 3, "MB"),
            _num(c.accuracy), _num(c.accuracy_drop), _num(c.cosine, 6), _num(c.sqnr_db, 4, "dB"),
            c.accuracy_provenance, "yes" if c.meets_budget else "no", c.reason,
        ])
    return rows


def _environment_rows(result: PipelineResult) -> list[list[str]]:
    """Where the figures were measured: CPU, cores, threads, load when the run ended, tool versions."""
    env = result.environment
    if not env:
        return []
    versions = ", ".join(f"{k} {v}" for k, v in sorted(dict(env.get("tool_versions") or {}).items()))
    load = env.get("load_average")
    return [
        ["CPU", f"{env.get('cpu_model')} ({env.get('machine')}; INT8/BF16 flags: "
                f"{', '.join(env.get('cpu_flags') or []) or 'none'})"],
        ["cores", f"{env.get('usable_cpus')} usable of {env.get('logical_cpus')} logical "
                  f"({env.get('physical_cores') or '?'} physical)"],
        ["threads", str(env.get("threads") or "backend default")],
        ["load average (1/5/15 min)", " / ".join(str(x) for x in load) if load else "not readable"],
        ["governor", str(env.get("governor") or "not readable")],
        ["OS / Python / edgekit", f"{env.get('os')} / {env.get('python')} / {env.get('edgekit')}"],
        ["tool versions", versions or "—"],
    ]


def _scrub(rows: list[list[str]], roots: list[str]) -> list[list[str]]:
    """Machine-local paths (the stage cache) out of reasons: a report is read on other machines."""
    def clean(text: str) -> str:
        for root in roots:
            text = text.replace(root, "<stage cache>")
        return text

    return [[clean(str(c)) for c in row] for row in rows] if roots else rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


TARGET_HEADER = ["target", "status", "adapter", "precision asked → used", "latency p50 / p90 / p99 / max",
                 "CV", "latency provenance",
                 "accuracy", "accuracy provenance", "bundle"]
VERDICT_HEADER = ["target", "budget", "kind", "value", "limit", "status", "provenance", "note"]
CANDIDATE_HEADER = ["adapter", "precision asked → used", "status", "latency the choice used", "speed × FP32",
                    "latency provenance", "size",
                    "task accuracy", "drop (points)", "cosine", "SQNR", "accuracy provenance", "meets budget", "why"]
STAGE_HEADER = ["stage", "cache", "seconds", "detail"]


def _figure_keys(result: PipelineResult) -> dict[str, Any]:
    """What each figure shows (not where the bundles went, nor when): equal keys draw equal figures."""
    targets = [t.to_json() for t in result.targets]
    for t in targets:
        for drop in ("bundle", "latency_figure", "reason", "verdicts"):
            t.pop(drop, None)
    latency = [{k: t.get(k) for k in ("target", "latency", "latency_provenance", "adapter", "precision_used")}
               for t in targets]
    accuracy = [{k: t.get(k) for k in ("target", "accuracy", "adapter", "precision_used")} for t in targets]
    reference = {k: v for k, v in result.reference.items() if k in ("accuracy", "eval")}
    keys: dict[str, Any] = {"latency.png": latency, "accuracy.png": {"targets": accuracy, "reference": reference}}
    for t in targets:
        keys[f"frontier-{t['target']}.png"] = {"candidates": t.get("candidates"), "reference": reference}
    return {name: {"data": data, "format": 3} for name, data in keys.items()}


def write_report(result: PipelineResult, out: str | Path, *, cache: Any = None) -> tuple[Path, Path]:
    """Write OUT/report.md, OUT/report.html and OUT/figures/*.png; returns the two report paths.

    With `cache` (an edgekit.cache.StageCache) the PNGs are cached by what they show, so a re-run
    with unchanged figures neither imports matplotlib nor draws anything.
    """
    import importlib.util
    import shutil

    out = Path(out)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = []
    have_plots = importlib.util.find_spec("matplotlib") is not None and _PLOTS_ENABLED[0]
    if have_plots:
        budget = _accuracy_budget(result)
        note = ", ".join(f"{k}={v}" for k, v in budget.items())
        plan: list[tuple[str, str, Any]] = [
            ("Latency per target", "latency.png", lambda p: plot_latency(result, p)),
            ("Accuracy per target", "accuracy.png", lambda p: plot_accuracy(result, p)),
        ]
        for t in result.targets:
            if len(t.candidates) > 1:
                plan.append((f"{t.target}: latency vs accuracy frontier (precision auto)", f"frontier-{t.target}.png",
                             lambda p, t=t: plot_frontier(t, p, budget_note=note, budget=budget,
                                                          reference_accuracy=result.reference.get("accuracy"))))
        key_data = _figure_keys(result) if cache is not None else {}
        for title, name, draw in plan:
            dest = figures_dir / name
            if cache is None:
                made = draw(dest)
            else:
                from edgekit.cache import stage_key

                key = stage_key("figure", inputs=key_data.get(name), options={"name": name}, tools={})
                entry = cache.get_or_build("figure", key, lambda tmp, draw=draw, name=name: {"drawn": bool(
                    draw(tmp / name))})
                made = None
                if entry.meta.get("drawn") and entry.file(name).is_file():
                    from edgekit.artifact import atomic_path

                    with atomic_path(dest) as tmp_png:
                        shutil.copyfile(entry.file(name), tmp_png)
                    made = dest
            if made is not None:
                figures.append((title, dest))
    stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    roots = [str(cache.root)] if cache is not None and getattr(cache, "root", None) is not None else []
    verdicts = _scrub([r for t in result.targets for r in _verdict_rows(t)], roots)
    target_rows = _scrub(_target_rows(result), roots)
    env_rows = _environment_rows(result)
    hits = sum(1 for s in result.stages if s.hit)
    stage_rows = _scrub([[s.label, "hit" if s.hit else ("—" if s.stage in ("checks", "bench") else "built"),
                          f"{s.seconds:.3f}", s.detail] for s in result.stages], roots)
    ref = result.reference
    ref_line = (f"FP32 ONNX reference on {ref.get('eval', 'the eval set')}: task accuracy "
                f"{_num(ref.get('accuracy'))} (measured)" if ref.get("accuracy") is not None else
                f"FP32 ONNX reference on {ref.get('eval', 'the eval set')} (no labels: accuracy is cosine/SQNR "
                "vs FP32; synthetic inputs say nothing about task accuracy)" if ref else "no reference run")
    status = result.status.upper()

    md = [f"# edgekit run: {result.recipe}", "",
          f"Recipe `{result.recipe_path}` — **{status}** (exit {result.exit_code}) — {stamp} — "
          f"{result.seconds:.2f} s, {hits}/{len(result.stages)} stages from cache.", "",
          "Provenance: **measured** = run on this host; **emulated** = numerics reproduced on the host "
          "(not device time); **estimated** = cost model; **not-run** = could not be run here.", "",
          ref_line, "", "## Targets", "", _md_table(TARGET_HEADER, target_rows), ""]
    if verdicts:
        md += ["## Budgets", "", _md_table(VERDICT_HEADER, verdicts), ""]
    for t in result.targets:
        if len(t.candidates) > 1:
            md += [f"## {t.target}: every candidate (precision auto)", "",
                   _md_table(CANDIDATE_HEADER, _scrub(_candidate_rows(t), roots)), "", *_decisions(result), ""]
    if figures:
        md += ["## Figures", ""]
        md += [f"![{title}](figures/{p.name})\n" for title, p in figures]
    elif not have_plots:
        md += ["_Plots skipped: matplotlib is not installed (pip install 'edgekit[plot]')._", ""]
    if env_rows:
        md += ["## Environment", "", _md_table(["", "this run"], env_rows), ""]
    md += ["## Stages", "", _md_table(STAGE_HEADER, stage_rows), ""]
    md_path = write_text_atomic(out / "report.md", "\n".join(md) + "\n")

    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
             "margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
             "th{background:#f3f3f3}.PASSED{color:#1a7f37}.FAILED{color:#cf222e}"
             ".NOT-RUN,.UNSUPPORTED{color:#9a6700}figure{margin:1em 0}"
             "figcaption{font-size:12px;color:#555}")
    body = [f"<h1>edgekit run: {html.escape(result.recipe)}</h1>",
            f"<p>Recipe <code>{html.escape(str(result.recipe_path))}</code> — <b class='{status}'>{status}</b> "
            f"(exit {result.exit_code}) — {stamp} — {result.seconds:.2f} s, {hits}/{len(result.stages)} stages "
            "from cache.</p>",
            "<p><b>measured</b> = run on this host; <b>emulated</b> = numerics reproduced on the host (not device "
            "time); <b>estimated</b> = cost model; <b>not-run</b> = could not be run here.</p>",
            f"<p>{html.escape(ref_line)}</p>",
            "<h2>Targets</h2>", _html_table(TARGET_HEADER, target_rows)]
    if verdicts:
        body += ["<h2>Budgets</h2>", _html_table(VERDICT_HEADER, verdicts)]
    for t in result.targets:
        if len(t.candidates) > 1:
            body += [f"<h2>{html.escape(t.target)}: every candidate (precision auto)</h2>",
                     _html_table(CANDIDATE_HEADER, _scrub(_candidate_rows(t), roots)),
                     *(f"<p>{html.escape(d)}</p>" for d in _decisions(result))]
    if figures:
        body.append("<h2>Figures</h2>")
        for title, p in figures:
            data = base64.b64encode(p.read_bytes()).decode()
            body.append(f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{html.escape(title)} (file figures/{p.name})</figcaption></figure>")
    elif not have_plots:
        body.append("<p><i>Plots skipped: matplotlib is not installed.</i></p>")
    if env_rows:
        body += ["<h2>Environment</h2>", _html_table(["", "this run"], env_rows)]
    body += ["<h2>Stages</h2>", _html_table(STAGE_HEADER, stage_rows)]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekit {html.escape(result.recipe)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    html_path = write_text_atomic(out / "report.html", page)
    return md_path, html_path


def _accuracy_budget(result: PipelineResult) -> dict[str, Any]:
    for t in result.targets:
        for v in t.verdicts:
            if v.kind == "accuracy":
                return {v.name.split("=")[0]: v.limit for v in t.verdicts if v.kind == "accuracy"}
    return {}
