"""`edgekit export`: torch → ONNX, verified against torch on the same seeded input."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgekit.cli._common import InputShapeOpt, JsonOpt, OutputOpt, command, emit_json, finite, fmt_num, out

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from edgekit.checks.numerics import Comparison
    from edgekit.stages.export import ExportResult


@command("export")
def export_cmd(
    model: Annotated[str, typer.Argument(help="zoo:NAME, package.module:factory, a TorchScript file or a "
                                         "torch.export .pt2 file (a pickled module needs --trust-pickle).")],
    input_shape: InputShapeOpt = None,
    output: OutputOpt = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Make dim 0 of inputs and outputs a "
                                                "dynamic `batch`.")] = False,
    exporter: Annotated[str, typer.Option("--exporter", help="torchscript | dynamo.")] = "torchscript",
    weights: Annotated[Path | None, typer.Option("--weights", help="state_dict to load into the model "
                                                 "(read with weights_only=True).")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow a fully pickled module "
                                               "(unpickling runs code from the file).")] = False,
    atol: Annotated[float, typer.Option("--atol", callback=finite(0), help="Absolute tolerance vs torch.")] = 1e-4,
    rtol: Annotated[float, typer.Option("--rtol", callback=finite(0), help="Relative tolerance vs torch.")] = 1e-3,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the random verification input.")] = 0,
    json_dest: JsonOpt = None,
) -> None:
    """Export a PyTorch model to ONNX and check it against torch (default output: ./<model-name>.onnx).

    A named dim stays dynamic (`-s input:batch,3,224,224`) and is traced at 1; give it a trace size
    where 1 cannot run (a fully convolutional net): `-s input:1,3,h=12,w=12`.
    """
    from edgekit.stages.export import export

    console = out(json_dest)
    with console.status(f"exporting {model} ({exporter}, opset {opset}) and checking against torch…"):
        result = export(model, input_shape or None, output, opset=opset, dynamic_batch=dynamic_batch,
                        exporter=exporter.lower(), weights=weights, trust_pickle=trust_pickle, atol=atol, rtol=rtol,
                        seed=seed)
    if result.options.trace_sizes:
        sizes = ", ".join(f"{k}={v}" for k, v in result.options.trace_sizes.items())
        console.print(f"traced and verified at {sizes} (the dims stay dynamic)", highlight=False)
    render(result, console)
    emit_json(result.to_json(), json_dest)


def comparison_table(comparison: Comparison, title: str) -> Table:
    """Per-output max abs/rel error and cosine (shared by export and simplify)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("output", "shape", "max abs", "max rel", "cosine", "within tol"):
        table.add_column(col, justify="left" if col in ("output", "shape") else "right")
    for o in comparison.outputs:
        table.add_row(o.name, "x".join(map(str, o.shape)), fmt_num(o.max_abs), fmt_num(o.max_rel),
                      f"{o.cosine:.6f}", "[green]yes[/]" if o.within_tolerance else "[red]no[/]")
    return table


def render(result: ExportResult, console: Console) -> None:
    from rich.table import Table

    from edgekit.cli.inspect import dims_text

    io = Table(title=f"exported {result.source} → {result.path}", title_justify="left")
    io.add_column("kind")
    io.add_column("name")
    io.add_column("shape")
    io.add_column("dtype")
    for kind, specs in (("input", result.inputs), ("output", result.outputs)):
        for spec in specs:
            io.add_row(kind, spec.name, dims_text(spec.shape), spec.dtype)
    console.print(io)
    c = result.comparison
    console.print(comparison_table(c, f"onnxruntime vs torch (measured, atol {c.atol:g}, rtol {c.rtol:g})"))
    manifest = result.artifact.manifest_path.name
    console.print(f"[green]ok[/] {result.path} ({result.duration_s:.1f} s, manifest {manifest})", highlight=False)
