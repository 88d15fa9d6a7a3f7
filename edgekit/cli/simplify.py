"""`edgekit simplify`: fix dynamic dims, onnxsim (fallback onnxslim), verify against the input model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from edgekit.cli._common import InputShapeOpt, JsonOpt, OutputOpt, command, emit_json, finite, out
from edgekit.specs import format_shapes

if TYPE_CHECKING:
    from rich.console import Console

    from edgekit.stages.simplify import SimplifyResult


@command("simplify")
def simplify_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model to simplify.")],
    output: OutputOpt = None,
    input_shape: InputShapeOpt = None,
    tool: Annotated[str, typer.Option("--tool", help="auto (onnxsim, then onnxslim) | onnxsim | onnxslim.")] = "auto",
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare with the input model.")] = True,
    atol: Annotated[float, typer.Option(
        "--atol", callback=finite(0), help="Absolute tolerance vs the input model.")] = 1e-4,
    rtol: Annotated[float, typer.Option(
        "--rtol", callback=finite(0), help="Relative tolerance vs the input model.")] = 1e-3,
    json_dest: JsonOpt = None,
) -> None:
    """Simplify an ONNX model (default output: IN.sim.onnx beside the input)."""
    from edgekit.stages.simplify import simplify

    console = out(json_dest)
    dest = output if output is not None else model.with_name(f"{model.stem}.sim.onnx")
    with console.status(f"simplifying {model}…"):
        result = simplify(model, dest, input_shapes=input_shape or None, verify=verify, tool=tool.lower(),
                          atol=atol, rtol=rtol)
    render(result, console)
    emit_json(result.to_json(), json_dest)


def render(result: SimplifyResult, console: Console) -> None:
    from rich.table import Table

    from edgekit.cli.export import comparison_table

    if result.fallback_reason:
        console.print(f"[yellow]fallback[/]: {escape(str(result.fallback_reason))}; used {result.tool}",
                      highlight=False)
    if result.fixed_shapes:
        fixed = format_shapes(result.fixed_shapes)
        console.print(f"fixed input shapes: {fixed}", highlight=False)
    table = Table(title=f"{result.tool}: {result.before.node_count} → {result.after.node_count} nodes",
                  title_justify="left")
    table.add_column("op")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    ops = list(dict.fromkeys([*result.before.op_histogram, *result.after.op_histogram]))
    for op in ops:
        b, a = result.before.op_histogram.get(op, 0), result.after.op_histogram.get(op, 0)
        change = "" if a == b else (f"[green]{a - b:+d}[/]" if a < b else f"[yellow]{a - b:+d}[/]")
        table.add_row(op, str(b), str(a), change)
    table.add_row("[bold]total[/]", str(result.before.node_count), str(result.after.node_count),
                  f"{result.after.node_count - result.before.node_count:+d}")
    console.print(table)
    if result.comparison is not None:
        c = result.comparison
        console.print(comparison_table(c, f"simplified vs input model, onnxruntime (measured, atol {c.atol:g}, "
                                          f"rtol {c.rtol:g})"))
    else:
        console.print("[dim]verification: not-run (--no-verify)[/]")
    console.print(f"[green]ok[/] {result.path} ({result.duration_s:.1f} s)", highlight=False)
