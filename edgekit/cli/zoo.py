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
    table = Table(title="edgekit zoo (random seeded weights unless noted)", title_justify="left")
    for col in ("name", "task", "input", "params", f"MACs ({provenance_style('estimated')})", "description"):
        table.add_column(col, justify="right" if col in ("params",) or col.startswith("MACs") else "left")
    for e in entries:
        table.add_row(f"zoo:{e.name}", e.task, " ".join(str(s) for s in e.inputs), human(e.params), human(e.macs),
                      e.description)
    out(json_dest).print(table)
    emit_json([e.to_json() for e in entries], json_dest)
