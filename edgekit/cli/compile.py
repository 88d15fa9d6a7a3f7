"""`edgekit compile`: ONNX → a verified bundle for a target (one backend, or `auto`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgekit.cli._common import (
    InputShapeOpt,
    JsonOpt,
    ThreadsOpt,
    command,
    emit_json,
    fmt_num,
    out,
    provenance_style,
)
from edgekit.specs import format_shapes

_STATUS_STYLE = {"chosen": "bold green", "passed": "green", "rejected": "yellow", "failed": "red", "skipped": "dim",
                 "unavailable": "dim"}


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    from edgekit.errors import BadInputError

    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise BadInputError(f"cannot parse {text!r}", path=option,
                            hint="comma-separated numbers, e.g. 123.7,116.3,103.5") from None


def _options(pairs: list[str] | None) -> dict[str, Any]:
    """`-O key=value` → typed adapter options (ints, floats, true/false, else strings)."""
    from edgekit.errors import BadInputError

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BadInputError(f"cannot parse {pair!r}", path="--option", hint="KEY=VALUE, e.g. trials=200")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    continue
        options[key] = value
    return options


def candidates_table(candidates: list[Any], title: str = "backend auto: candidates") -> Table:
    table = Table(title=title, title_justify="left")
    numeric = ("median ms", "p90 ms", "runs", "cosine", "SQNR dB", "max abs")
    # every figure carries its provenance in the same row: "timing" for the ms columns, "numerics" for cosine/SQNR
    for col in ("candidate", "precision", "median ms", "p90 ms", "runs", "timing", "cosine", "SQNR dB", "max abs",
                "numerics", "verdict"):
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=True)
    table.add_column("why", overflow="fold", min_width=20)
    for c in candidates:
        style = _STATUS_STYLE.get(c.status, "")
        table.add_row(
            escape(c.adapter), c.precision_used or c.precision, fmt_num(c.median_ms), fmt_num(c.p90_ms),
            str(c.runs or "—"), _prov(c, "timing"), fmt_num(c.min_cosine, 6), fmt_num(c.min_sqnr_db),
            fmt_num(c.max_abs), _prov(c, "numerics"), f"[{style}]{c.status}[/]", escape(c.reason),
        )
    return table


def _prov(candidate: Any, which: str) -> str:
    """Provenance label of a candidate's timing or numerics figures ("not-run" when there are none)."""
    if which == "timing":
        value = getattr(candidate, "timing_provenance", "not-run") if candidate.median_ms is not None else "not-run"
    else:
        value = getattr(candidate, "numerics_provenance", "measured") if candidate.min_cosine is not None else "not-run"
    return provenance_style(str(value))


def print_candidates(console: Any, candidates: list[Any]) -> None:
    """The auto table; on a narrow terminal one line per candidate so nothing is cut off."""
    if console.width >= 130:
        console.print(candidates_table(candidates))
        return
    console.print("[bold]backend auto: candidates[/]")
    for c in candidates:
        style = _STATUS_STYLE.get(c.status, "")
        timing = (f"median {fmt_num(c.median_ms)} ms, p90 {fmt_num(c.p90_ms)} ms ({c.runs} runs, "
                  f"{_prov(c, 'timing')})" if c.median_ms is not None else "not timed")
        numerics = (f"cosine {fmt_num(c.min_cosine, 6)}, SQNR {fmt_num(c.min_sqnr_db)} dB, "
                    f"max abs {fmt_num(c.max_abs)} ({_prov(c, 'numerics')})" if c.min_cosine is not None else "")
        parts = [p for p in (timing if c.status != "unavailable" else "", numerics) if p]
        console.print(f"  [{style}]{c.status:<11}[/] {escape(c.adapter)} ({c.precision_used or c.precision})"
                      + (f": {'; '.join(parts)}" if parts else "") + (f" — {escape(c.reason)}" if c.reason else ""),
                      highlight=False, soft_wrap=True)


@command("compile")
def compile_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model to compile.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle directory to write.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Device profile (see `edgekit targets`).")] = "cpu",
    backend: Annotated[str | None, typer.Option(
        "--backend", "-b", help="Adapter, or `auto` (fastest that passes; the default), or `null` (reference).")
                       ] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", "-p", help="fp32 | fp16 | bf16 | int8 | auto (fastest (adapter × precision) within "
        "--accuracy-budget). Default: what the model is (int8 for a QDQ model, else fp32).")] = None,
    accuracy_budget: Annotated[list[str] | None, typer.Option(
        "--accuracy-budget", help="With --precision auto: e.g. sqnr>=20dB, cosine>=0.999, drop<=1 (points, needs "
        "--eval with labels).")] = None,
    eval_source: Annotated[str | None, typer.Option(
        "--eval", help="With --precision auto: eval data (dir/.npz with labels, `digits`); default synthetic.")
    ] = None,
    calib: Annotated[str | None, typer.Option(
        "--calib", help="int8 calibration: dir of .npy/.npz, image folder, or `synthetic` (not for accuracy).")
    ] = None,
    calib_samples: Annotated[int, typer.Option("--calib-samples", min=1, help="Calibration samples to use.")
                             ] = 100,
    threads: ThreadsOpt = None,
    input_shape: InputShapeOpt = None,
    mean: Annotated[str | None, typer.Option("--mean", help="Per-channel mean in pixel units: normalizes image-folder "
                                             "calibration (as in quantize); fused by NPU toolchains.")] = None,
    std: Annotated[str | None, typer.Option("--std", help="Per-channel std in pixel units: normalizes image-folder "
                                            "calibration (as in quantize); fused by NPU toolchains.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-O", metavar="KEY=VALUE",
                                                     help="Adapter option, e.g. -O tune=false (repeatable).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the verification inputs.")] = 0,
    allow_code: Annotated[bool, typer.Option("--allow-code", help="Allow `py:module:function` calibration.")
                          ] = False,
    exhaustive: Annotated[bool, typer.Option(
        "--exhaustive", help="With --precision auto: build and time every candidate (no screening, no pruning).")
    ] = False,
    json: JsonOpt = None,
) -> None:
    """Compile an ONNX model for a target; verify it against the ONNX reference; write a bundle."""
    import edgekit

    if exhaustive and precision != "auto":
        from edgekit.errors import BadInputError

        raise BadInputError("--exhaustive only applies to --precision auto", path="--exhaustive")
    console = out(json)
    asked_auto = backend == "auto"  # the candidates block is for those who asked to see the choice
    backend = backend or "auto"
    if precision == "auto":
        from edgekit.cli.run import render_candidates

        auto = edgekit.compile(model, output=output, target=target, backend=backend, precision="auto", calib=calib,
                               eval=eval_source, accuracy_budget=accuracy_budget or ["sqnr>=20dB"], threads=threads,
                               input_shapes=tuple(input_shape or ()) or None,
                               mean=_floats(mean, "--mean"), std=_floats(std, "--std"), exhaustive=exhaustive)
        chosen = auto.target
        console.print(render_candidates(chosen))
        figure = chosen.latency_figure
        measured = f"; measured now: p50 {figure.stats['p50']:.3f} ms, p99 {figure.stats.get('p99', 0.0):.3f} ms " \
            f"({figure.provenance})" if figure is not None and figure.stats.get("p50") is not None else ""
        console.print(f"[bold green]compiled[/] {model} → {auto.bundle} ([bold]{escape(str(auto.adapter))}[/], "
                      f"{auto.precision_used}){measured}", highlight=False)
        emit_json(auto.to_json(), json)
        if auto.exit_code:
            raise typer.Exit(auto.exit_code)
        return
    result = edgekit.compile(
        model, output=output, target=target, backend=backend, precision=precision, threads=threads, calib=calib,
        input_shapes=tuple(input_shape or ()), mean=_floats(mean, "--mean"), std=_floats(std, "--std"),
        adapter_options=_options(option), seed=seed, allow_code=allow_code, calib_samples=calib_samples,
    )
    if asked_auto and len(result.candidates) > 1:
        print_candidates(console, result.candidates)
        auto_info = result.bundle.manifest.info.get("auto", {})
        shapes = format_shapes(result.timed_shapes, " ")
        console.print(f"[dim]timed side by side at {escape(shapes)}[/]" +
                      (f" — [yellow]{escape(auto_info['note'])}[/]" if auto_info.get("note") else ""), highlight=False)
    elif backend == "auto" and len(result.candidates) > 1:
        console.print(f"[dim]backend {escape(str(result.adapter))} chosen of {len(result.candidates)} candidates "
                      "(`--backend auto` lists them)[/]", highlight=False)
    info = result.bundle.manifest.info
    v = result.verification
    console.print(
        f"[bold green]compiled[/] {model} → {result.bundle.path} "
        f"([bold]{result.adapter}[/], {info.get('target')}, {result.precision_used}; "
        f"runs: {provenance_style(str(info.get('run_provenance')))})", highlight=False)
    figures = str(v.get("provenance") or info.get("run_provenance") or "measured")
    console.print(f"verified vs ONNX reference ({provenance_style(figures)}) on {escape(str(v.get('inputs')))}: "
                  f"{escape(str(v.get('reason')))}", highlight=False, soft_wrap=True)
    if info.get("note"):  # adapter caveats worth a line, e.g. TVM "untuned: ... compile with tune=True"
        console.print(f"[yellow]note[/]: {info['note']}", highlight=False)
    if info.get("calibration", {}).get("synthetic"):
        console.print("[yellow]warning[/]: synthetic calibration — int8 accuracy not validated on real data")
    emit_json(result.to_json(), json)
