"""`edgekit quantize`: INT8 with an accuracy table, a sensitivity ranking, a speed verdict and budgets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgekit.cli._common import (
    JsonOpt,
    ThreadsOpt,
    command,
    emit_json,
    finite,
    fmt_num,
    out,
    provenance_style,
)
from edgekit.errors import BadInputError, CheckFailedError

if TYPE_CHECKING:
    from rich.console import Console

    from edgekit.checks.metrics import MetricFigure
    from edgekit.stages.quantize import QuantizeResult

SENSITIVITY_ROWS = 8


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise BadInputError(f"cannot parse {text!r}", path=flag,
                            hint="comma-separated numbers, e.g. 123.7,116.3,103.5") from None


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts if p.strip()]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise BadInputError(f"cannot parse {text!r}", path="--size", hint="H,W or one number for a square, e.g. 224")
    return dims[0], dims[1]


@command("quantize")
def quantize_cmd(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the INT8 (QDQ) model.")],
    calib: Annotated[str, typer.Option("--calib", help="Calibration data: folder of .npy/.npz or images, "
                                       "'synthetic', or py:module:function (with --trust-code).")],
    method: Annotated[str, typer.Option("--method", help="minmax | entropy | percentile.")] = "minmax",
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="Weight granularity.")] = True,
    symmetric_activations: Annotated[bool, typer.Option("--symmetric-activations",
                                                        help="int8 symmetric activations (NPU-style).")] = False,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node name or op type to keep in float "
                                                      "(repeatable, or comma-separated).")] = None,
    calib_samples: Annotated[int, typer.Option("--calib-samples", min=1, help="Calibration samples used.")] = 100,
    eval_source: Annotated[str | None, typer.Option("--eval", help="Evaluation data (same kinds as --calib; "
                                                    ".npz may carry `labels`). Default: held-out calibration "
                                                    "samples.")] = None,
    eval_samples: Annotated[int, typer.Option("--eval-samples", min=1, help="Cap on evaluation samples.")] = 200,
    max_drop: Annotated[str | None, typer.Option("--max-drop", help="Budget: max metric drop in points: `1` (top-1, "
                                                 "needs labels) or METRIC:POINTS (`map50:1`, `dice:0.5`: accuracy "
                                                 "with labels, agreement with FP32 without); keeps sensitive nodes "
                                                 "in float.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Task metric: top1, top5, dice, miou, map50, map, "
                                               "text-f1, or py:module:function (with --trust-code).")] = None,
    metric_option: Annotated[list[str] | None, typer.Option("--metric-option", help="Decoder option KEY=VALUE "
                                                            "(repeatable), e.g. layout=yolov8, conf=0.25, "
                                                            "threshold=0.3.")] = None,
    min_sqnr: Annotated[float | None, typer.Option(
        "--min-sqnr", callback=finite(), help="Budget: min output SQNR in dB.")] = None,
    require_speedup: Annotated[bool, typer.Option("--require-speedup",
                                                  help="Fail (exit 1) when INT8 is not faster here.")] = False,
    no_sensitivity: Annotated[bool, typer.Option("--no-sensitivity", help="Skip the sensitivity ranking.")] = False,
    no_speed: Annotated[bool, typer.Option("--no-speed", help="Skip the FP32 vs INT8 timing.")] = False,
    speed_aware: Annotated[bool, typer.Option("--speed-aware/--no-speed-aware",
                                              help="Budget fallback: keep float first where INT8 gains little "
                                                   "(per-node time measured with the ORT profiler).")] = True,
    trust_code: Annotated[bool, typer.Option("--trust-code", help="Allow py:module:function sources "
                                             "(runs your code).")] = False,
    size: Annotated[str | None, typer.Option("--size", help="Images: resize to H,W.")] = None,
    mean: Annotated[str | None, typer.Option("--mean", help="Images: per-channel mean in pixel units.")] = None,
    std: Annotated[str | None, typer.Option("--std", help="Images: per-channel std in pixel units.")] = None,
    layout: Annotated[str, typer.Option("--layout", help="Images: nchw | nhwc.")] = "nchw",
    grayscale: Annotated[bool, typer.Option("--grayscale", help="Images: convert to one channel.")] = False,
    threads: ThreadsOpt = None,
    json_dest: JsonOpt = None,
) -> None:
    """Quantize to INT8 (ONNX Runtime QDQ) and report accuracy vs FP32, sensitivity and speed."""
    from edgekit.checks.budgets import parse_metric_drop
    from edgekit.checks.metrics import canonical_metric_name, parse_metric_options
    from edgekit.specs import Preprocess
    from edgekit.stages.quantize import quantize

    console = out(json_dest)
    drop_metric, drop = parse_metric_drop(max_drop) if max_drop is not None else (None, None)
    chosen = canonical_metric_name(metric) if metric is not None else None
    if drop_metric and chosen and drop_metric != chosen:
        raise BadInputError(f"--max-drop names {drop_metric}, --metric {chosen}", path="--max-drop",
                            hint="name one metric")
    options = parse_metric_options(list(metric_option or ()))
    pre = Preprocess(size=_size(size), mean=_floats(mean, "--mean") or (0.0, 0.0, 0.0),
                     std=_floats(std, "--std") or (1.0, 1.0, 1.0), layout=layout.lower(), grayscale=grayscale)
    with console.status("quantizing (calibrate, evaluate, rank, time)…"):
        try:
            result = quantize(
                model, output, calib, method=method.lower(), per_channel=per_channel,
                symmetric_activations=symmetric_activations,
                exclude=tuple(e.strip() for item in exclude or () for e in item.split(",") if e.strip()),
                calib_samples=calib_samples, eval=eval_source, max_drop=drop, min_sqnr=min_sqnr,
                metric=drop_metric or chosen, metric_options=options,
                require_speedup=require_speedup, threads=threads, preprocess=pre, allow_code=trust_code,
                eval_samples=eval_samples, sensitivity=not no_sensitivity, speed=not no_speed,
                speed_aware=speed_aware,
            )
        except CheckFailedError as exc:
            failed = getattr(exc, "result", None)
            if failed is not None:
                render(failed, console)
                emit_json({**failed.to_json(), "error": exc.one_line()}, json_dest)
            raise
    render(result, console)
    emit_json(result.to_json(), json_dest)


def metric_line(m: MetricFigure) -> str:
    """`task accuracy (mAP@0.5 vs labels): FP32 61.20%  INT8 60.40%  drop +0.80 points`."""
    what = f"task accuracy ({m.title} vs labels)" if m.mode == "accuracy" else \
        f"agreement ({m.title} vs FP32's own predictions, no labels)"
    unit = "points" if m.unit == "%" else m.unit
    drop = "n/a" if m.drop is None else f"{m.drop:+.2f} {unit}".strip()
    text = f"{what}: FP32 {m.show(m.reference)}  INT8 {m.show(m.value)}  drop {drop}"
    return text + (f" ({m.note})" if m.note else "")


def render(result: QuantizeResult, console: Console) -> None:
    """Tables: calibration, accuracy FP32 vs INT8, sensitivity, budget steps, speed verdict."""
    from rich.table import Table

    for warning in result.warnings:
        style = "bold red" if "SYNTHETIC" in warning or "NOT valid" in warning else "yellow"
        console.print(f"[{style}]warning[/]: {warning}", highlight=False)
    cal = result.calibration
    console.print(f"calibration: {cal['samples']} sample(s), {cal['method']}, {cal['seconds']:.2f} s "
                  f"({cal['source']})", highlight=False)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)

    rep = result.report
    valid = "" if rep.valid_for_accuracy else " [bold red](synthetic: NOT valid for accuracy)[/]"
    table = Table(title=f"INT8 vs FP32 on {rep.source} — {provenance_style(rep.provenance)}{valid}",
                  title_justify="left")
    for col in ("output", "cosine", "SQNR dB", "max abs err", "top-1 agree"):
        table.add_column(col, justify="left" if col == "output" else "right")
    for o in rep.outputs:
        na = f"n/a ({o.note})" if o.note else "n/a"
        table.add_row(o.name, na if o.cosine is None else f"{o.cosine:.6f}",
                      na if o.sqnr_db is None else fmt_num(o.sqnr_db, 3), fmt_num(o.max_abs),
                      "—" if o.top1_agreement is None else f"{100 * o.top1_agreement:.2f}%")
    console.print(table)
    if rep.metric is not None:
        console.print(metric_line(rep.metric), highlight=False)
    for reason in rep.dead:
        console.print(f"[bold red]dead[/]: {reason}", highlight=False)

    if result.sensitivity:
        sens = Table(title="sensitivity: each node quantized alone (most harmful first)", title_justify="left")
        layer = any(s.local_loss_db is not None for s in result.sensitivity)
        metric_col = rep.metric is not None
        gain_col = any(s.int8_gain_ms is not None for s in result.sensitivity)
        cols = ("#", "node", "op", "SQNR dB", "cosine", *(("metric drop",) if metric_col else ()),
                *(("layer loss dB",) if layer else ()), *(("INT8 gain ms",) if gain_col else ()))
        for col in cols:
            sens.add_column(col, justify="left" if col in ("node", "op") else "right",
                            overflow="fold" if col == "node" else "ellipsis")
        for i, s in enumerate(result.sensitivity[:SENSITIVITY_ROWS], 1):
            na = s.note or "n/a"
            sens.add_row(str(i), s.node, s.op_type, na if s.sqnr_db is None else fmt_num(s.sqnr_db, 3),
                         "—" if s.cosine is None else f"{s.cosine:.6f}",
                         *(("n/a" if s.accuracy_drop is None else f"{s.accuracy_drop:+.2f}",) if metric_col else ()),
                         *((fmt_num(s.local_loss_db, 3),) if layer else ()),
                         *(("n/a" if s.int8_gain_ms is None else f"{s.int8_gain_ms:+.4f}",) if gain_col else ()))
        console.print(sens)
        if len(result.sensitivity) > SENSITIVITY_ROWS:
            console.print(f"[dim]… {len(result.sensitivity) - SENSITIVITY_ROWS} more in --json[/]")

    if result.excluded:
        full = result.full_int8_report
        drop = "" if full.metric is None or full.metric.drop is None else \
            f", {full.metric.name} drop {full.metric.drop:+.2f} points"
        cos = "n/a" if full.min_cosine is None else f"{full.min_cosine:.6f}"
        console.print(f"full INT8 before the fallback: min SQNR {fmt_num(full.min_sqnr_db, 3)} dB, "
                      f"min cosine {cos}{drop}", highlight=False)
    if result.budget:
        unit = " points" if result.options.max_drop is not None else " dB"
        for step in result.steps:
            mark = "[green]meets[/]" if step.met else "[red]misses[/]"
            kept = ", ".join(step.kept_float) or "none"
            value = "n/a" if step.value is None else f"{fmt_num(step.value, 4)}{unit}"
            console.print(f"budget {result.budget}: {value} {mark} (kept float: {kept})", highlight=False)
    if result.user_excluded:
        console.print(f"kept in float (--exclude): {', '.join(result.user_excluded)}", highlight=False)
    if result.excluded:
        cost = result.latency_cost_ms
        extra = f"; latency cost {cost:+.3f} ms vs full INT8 (measured)" if cost is not None else ""
        console.print(f"[bold]accuracy-aware: kept {len(result.excluded)} node(s) in float: "
                      f"{', '.join(result.excluded)}[/]{extra}", highlight=False)

    speed = result.speed
    if speed is not None:
        times = "  ".join(f"{k} {v:.3f} ms" for k, v in speed.medians_ms.items())
        colour = "green" if speed.speedup >= 1.1 else ("yellow" if speed.speedup >= 0.95 else "red")
        console.print(f"speed ({provenance_style(speed.provenance)}, onnxruntime CPU, {speed.threads} threads, "
                      f"{speed.runs} interleaved runs, medians): {times}", highlight=False)
        console.print(f"[{colour}]{speed.verdict}[/]", highlight=False)
    if result.artifact is not None:
        console.print(f"wrote {result.artifact.path} ({len(result.quantized)} node(s) in INT8)", highlight=False)
