"""`edgekit inspect`: inputs/outputs, ops, parameters, MACs/FLOPs, quantization of an ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgekit.cli._common import InputShapeOpt, JsonOpt, command, emit_json, out, provenance_style
from edgekit.specs import format_shapes

if TYPE_CHECKING:
    from rich.console import Console

    from edgekit.stages.inspect import ModelInfo


def human(n: float, unit: str = "") -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {suffix}{unit}".rstrip()
    return f"{n:g} {unit}".rstrip()


def dims_text(shape: tuple) -> str:
    """1x3x224x224, with dynamic dims named and highlighted."""
    return "x".join(f"[cyan]{d}[/]" if not isinstance(d, int) else str(d) for d in shape)


@command("inspect")
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model.")],
    input_shape: InputShapeOpt = None,
    json_dest: JsonOpt = None,
) -> None:
    """Describe an ONNX model (MACs are counted at --input-shape, else dynamic dims = 1)."""
    from edgekit.stages.inspect import inspect

    info = inspect(model, input_shapes=input_shape or None)
    render(info, out(json_dest))
    emit_json(info.to_json(), json_dest)


def render(info: ModelInfo, console: Console) -> None:
    from rich.table import Table

    console.print(f"[bold]{info.path}[/]  {human(info.file_bytes, 'B')}, opset {info.opset}, IR {info.ir_version}, "
                  f"{info.producer or 'unknown producer'}, sha256 {info.sha256[:12]}…", highlight=False)
    io = Table(title="tensors", title_justify="left")
    for col in ("kind", "name", "shape", "dtype"):
        io.add_column(col)
    for kind, specs in (("input", info.inputs), ("output", info.outputs)):
        for spec in specs:
            io.add_row(kind, spec.name, dims_text(spec.shape), spec.dtype)
    console.print(io)
    ops = Table(title=f"{info.node_count} nodes", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    ops.add_column("MACs", justify="right")
    ops.add_column("FLOPs", justify="right")
    for op, count in info.op_histogram.items():
        ops.add_row(op, str(count), human(info.macs_by_op.get(op, 0)) if op in info.macs_by_op else "",
                    human(info.flops_by_op.get(op, 0)) if op in info.flops_by_op else "")
    console.print(ops)
    shapes = format_shapes(info.cost_shapes)
    summary = Table(show_header=False, box=None)
    summary.add_column("k")
    summary.add_column("v")
    summary.add_row("parameters", f"{human(info.params)} ({info.params:,})")
    summary.add_row("weight bytes", human(info.weight_bytes, "B"))
    summary.add_row("MACs", f"{human(info.macs)} ({provenance_style(info.provenance)}, at {shapes})")
    summary.add_row("FLOPs", f"{human(info.flops)} ({provenance_style(info.provenance)})")
    if info.unsized_nodes:
        summary.add_row("unsized nodes", f"[yellow]{info.unsized_nodes}[/] (shape inference failed: counted as 0)")
    q = info.quantization
    summary.add_row("quantized", f"yes, {q.format} ({', '.join(f'{k}×{v}' for k, v in q.ops.items())})"
                    if q.quantized else "no")
    if info.history:
        summary.add_row("history", " → ".join(info.history))
    console.print(summary)
