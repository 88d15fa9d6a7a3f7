"""`edgekit targets [show NAME]`: device profiles and adapters, with availability and the reason when missing."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from edgekit.cli._common import JsonOpt, command, emit_json, out


def _avail(entry: dict[str, Any]) -> str:
    return "[green]yes[/]" if entry["available"] else "[red]no[/]"


@command("targets")
def targets_cmd(
    action: Annotated[str, typer.Argument(help="`list` (default) or `show`.")] = "list",
    name: Annotated[str | None, typer.Argument(help="Profile name for `show`.")] = None,
    json: JsonOpt = None,
) -> None:
    """List device profiles and adapters (available here, or why not); `show NAME` for one profile."""
    from edgekit.adapters.registry import describe_all, describe_target
    from edgekit.errors import BadInputError
    from edgekit.targets import get_profile

    console = out(json)
    if action not in ("list", "show"):
        action, name = "show", action  # `edgekit targets cpu` reads as `show cpu`
    if action == "show":
        if not name:
            raise BadInputError("`targets show` needs a profile name", path="NAME",
                                hint="e.g. edgekit targets show cpu")
        data = describe_target(get_profile(name))
        console.print(f"[bold]{data['name']}[/] ({data['kind']}): {data['description']}", highlight=False)
        console.print(f"profile: {data['source']}; precisions: {', '.join(data['precisions'])}", highlight=False)
        table = Table(title_justify="left")
        for col in ("adapter", "origin", "available", "precisions", "runs", "reason / detail"):
            table.add_column(col, overflow="fold")
        for a in data["adapters"]:
            table.add_row(a["name"], a["origin"], _avail(a), ",".join(a["precisions"]), a["run_provenance"],
                          a["reason"])
        console.print(table)
        for section, values in data["sections"].items():
            console.print(f"[bold]\\[{section}][/] " + ", ".join(f"{k}={v}" for k, v in values.items()),
                          highlight=False)
        emit_json(data, json)
        return
    data = describe_all()
    table = Table(title="targets", title_justify="left")
    for col in ("target", "kind", "adapters (available here?)", "description"):
        table.add_column(col)
    for t in data["targets"]:
        cells = [f"{a['name']} {'[green]✓[/]' if a['available'] else '[red]✗[/]'}" for a in t["adapters"]]
        table.add_row(t["name"], t["kind"], ", ".join(cells), t["description"])
    console.print(table)
    adapters = Table(title="adapters", title_justify="left")
    for col in ("adapter", "origin", "serves"):
        adapters.add_column(col)
    for a in data["adapters"]:
        adapters.add_row(a["name"], a["origin"], ", ".join(a["targets"]) or "(explicit --backend only)")
    console.print(adapters)
    console.print("[dim]reasons: edgekit targets show NAME[/]")
    emit_json(data, json)
