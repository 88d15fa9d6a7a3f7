"""`edgekit zoo`: the built-in reference models with their inputs, parameters and MACs."""

from __future__ import annotations

from edgekit.cli._common import JsonOpt, command, emit_json, out, provenance_style


@command("zoo")
def zoo_cmd(json_dest: JsonOpt = None) -> None:
    """List the zoo models (use them as MODEL = zoo:NAME in `edgekit export`)."""
    from rich.table import Table

    from edgekit import zoo
    from edgekit.cli.inspect import human

    entries = zoo.list_models()
    console = out(json_dest)
    wide = console.width >= 110  # the description only fits a wide terminal (--json always has it)
    table = Table(title="edgekit zoo (random seeded weights unless noted)", title_justify="left")
    table.add_column("MODEL", no_wrap=True)
    table.add_column("input", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column(f"MACs ({provenance_style('estimated')})", justify="right", no_wrap=True)
    if wide:
        table.add_column("description", ratio=1)
    for e in entries:
        shapes = " ".join(f"{s.name}:{'x'.join(map(str, s.shape))}" for s in e.inputs)
        cells = [f"zoo:{e.name}", shapes, human(e.params), human(e.macs)]
        table.add_row(*cells, *([f"[dim]{e.task}[/] {e.description}"] if wide else []))
    console.print(table)
    emit_json([e.to_json() for e in entries], json_dest)
