"""`edgekit compare`: the same inputs through several backends, differences vs the ONNX reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgekit.cli._common import JsonOpt, ThreadsOpt, command, emit_json, fmt_num, out


def _num(value: object, digits: int = 4) -> str:
    """Manifest-style JSON numbers ("inf" is a string there) → table text."""
    return fmt_num(None if value is None else float(value), digits)  # type: ignore[arg-type]


@command("compare")
def compare_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model.")],
    backends: Annotated[str, typer.Option("--backends", "-b", help="Comma-separated adapters, e.g. "
                                          "onnxruntime,openvino,tvm (null = the unoptimized reference).")
                        ] = "onnxruntime",
    target: Annotated[str, typer.Option("--target", "-t", help="Device profile.")] = "cpu",
    precision: Annotated[str, typer.Option("--precision", "-p", help="fp32 | fp16 | bf16 | int8 (QDQ model).")
                         ] = "fp32",
    inputs: Annotated[Path | None, typer.Option("--inputs", help=".npz with one array per input (default: "
                                                "seeded random).")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Random samples to run.")] = 1,
    threads: ThreadsOpt = None,
    json: JsonOpt = None,
) -> None:
    """Per-output cosine / SQNR / max-abs error of each backend against onnxruntime CPU."""
    import edgekit

    console = out(json)
    result = edgekit.compare(model, backends.split(","), target=target, precision=precision, inputs=inputs,
                             seed=seed, samples=samples, threads=threads)
    table = Table(title=f"{model} vs {result.reference} ({result.inputs}, {precision})", title_justify="left")
    for col in ("backend", "output", "shape", "cosine", "SQNR dB", "max abs", "max rel", "top-1 agree", "verdict"):
        table.add_column(col, justify="left" if col in ("backend", "output", "shape", "verdict") else "right")
    for row in result.backends:
        if not row.outputs:
            table.add_row(row.backend, "—", "—", "—", "—", "—", "—", "—", f"[dim]{row.status}[/]: {row.reason}")
            continue
        for o in row.outputs:
            colour = "green" if row.status == "ok" else "red"
            table.add_row(row.backend, o["name"], "x".join(map(str, o["shape"])), _num(o["cosine"], 6),
                          _num(o["sqnr_db"]), _num(o["max_abs"]), _num(o["max_rel"]),
                          _num(o["top1_agreement"]), f"[{colour}]{row.status}[/]")
    console.print(table)
    emit_json(result.to_json(), json)
    if not result.passed:
        raise typer.Exit(1)
