"""`edgekit targets [show NAME]`: device profiles and adapters, with availability and the reason when missing."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgekit.cli._common import JsonOpt, command, emit_json, out

# Adapters whose probe imports a heavy package: `import tvm` pulls in torch (~4 s of the ~5.5 s `edgekit targets`
# took). The list view only checks that the package is installed (find_spec + version metadata) and says so;
# `targets show NAME`, `--probe` and `--json` import and probe it for real.
_HEAVY_PROBES: dict[str, tuple[str, str]] = {"tvm": ("tvm", "apache-tvm")}


def _avail(entry: dict[str, Any]) -> str:
    if entry["available"] is None:
        return "[cyan]installed[/] (not probed)"
    return "[green]yes[/]" if entry["available"] else "[red]no[/]"


def _mark(entry: dict[str, Any]) -> str:
    if entry["available"] is None:
        return "[cyan]·[/]"
    return "[green]✓[/]" if entry["available"] else "[red]✗[/]"


def _figure(value: Any) -> str | None:
    """`{"value": 16.0, "unit": "TOPS", "source": ...}` → "16 TOPS (source: ...)"; None for other data."""
    if not (isinstance(value, dict) and "value" in value):
        return None
    text = f"{value['value']:g} {value.get('unit', '')}".strip()
    why = value.get("source") or value.get("basis")
    label = "assumed" if value.get("assumed") else "source"
    return f"{text} ({label}: {why})" if why else text


def _section_lines(values: dict[str, Any], indent: str = "") -> list[str]:
    """A profile section as readable lines: figures with their source, lists joined, tables nested."""
    lines: list[str] = []
    for key, value in values.items():
        figure = _figure(value)
        if figure is not None:
            lines.append(f"{indent}{key}: {figure}")
        elif isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines += _section_lines(value, indent + "  ")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{indent}{key}: {', '.join(str(v) for v in value)}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def quick_status(name: str) -> dict[str, Any] | None:
    """Cheap status for a heavy adapter (None: probe it for real). `available` None = installed, not probed."""
    import importlib.metadata
    import importlib.util

    from edgekit.adapters.registry import adapter_names, adapter_origin

    if name not in _HEAVY_PROBES or name not in adapter_names() or adapter_origin(name) != "built-in":
        return None
    module, dist = _HEAVY_PROBES[name]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return {"name": name, "available": False,
                "reason": f"{module} is not installed (pip install 'edgekit[{name}]')"}
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return {"name": name, "available": None,
            "reason": f"{dist} {version} installed; not imported — `edgekit targets show NAME` probes it"}


def _list_data(probe: bool) -> dict[str, Any]:
    """describe_all(), with heavy adapters only checked for installation unless `probe`."""
    from edgekit.adapters.registry import adapter_names, adapter_origin, describe_all, plan_adapters
    from edgekit.targets import all_profiles

    if probe:
        return describe_all()
    profiles = all_profiles()
    targets = []
    for p in profiles.values():
        adapters = [quick_status(n) or plan_adapters(p, n, None)[0].to_json() for n in p.adapters]
        targets.append({"name": p.name, "description": p.description, "kind": p.kind, "adapters": adapters})
    return {"targets": targets,
            "adapters": [{"name": n, "origin": adapter_origin(n),
                          "targets": [p.name for p in profiles.values() if n in p.adapters]} for n in adapter_names()]}


@command("targets")
def targets_cmd(
    action: Annotated[str, typer.Argument(help="`list` (default) or `show`.")] = "list",
    name: Annotated[str | None, typer.Argument(help="Profile name for `show`.")] = None,
    probe: Annotated[bool, typer.Option("--probe", help="List view: import every backend to check it (slower; "
                                        "`targets show NAME` and --json always do).")] = False,
    json: JsonOpt = None,
) -> None:
    """List device profiles and adapters (available here, or why not); `show NAME` for one profile."""
    from edgekit.adapters.registry import describe_target
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
        console.print(f"[bold]{escape(data['name'])}[/] ({escape(data['kind'])}): {escape(data['description'])}",
                      highlight=False)
        console.print(f"profile: {escape(str(data['source']))}; precisions: {escape(', '.join(data['precisions']))}",
                      highlight=False)
        table = Table(title_justify="left")
        for col in ("adapter", "origin", "available", "precisions", "runs", "reason / detail"):
            table.add_column(col, overflow="fold")
        for a in data["adapters"]:
            table.add_row(escape(a["name"]), escape(a["origin"]), _avail(a), escape(",".join(a["precisions"])),
                          escape(a["run_provenance"]), escape(a["reason"]))
        console.print(table)
        for section, values in data["sections"].items():
            console.print(f"[bold]\\[{escape(section)}][/]", highlight=False)
            for line in _section_lines(values):
                console.print(f"  {escape(line)}", highlight=False, soft_wrap=False)
        emit_json(data, json)
        return
    data = _list_data(probe or json is not None)
    table = Table(title="targets", title_justify="left")
    for col in ("target", "kind", "adapters (available here?)", "description"):
        table.add_column(col)
    for t in data["targets"]:
        cells = [f"{escape(a['name'])} {_mark(a)}" for a in t["adapters"]]
        table.add_row(escape(t["name"]), escape(t["kind"]), ", ".join(cells), escape(t["description"]))
    console.print(table)
    adapters = Table(title="adapters", title_justify="left")
    for col in ("adapter", "origin", "serves"):
        adapters.add_column(col)
    for a in data["adapters"]:
        adapters.add_row(escape(a["name"]), escape(a["origin"]),
                         escape(", ".join(a["targets"])) or "(explicit --backend only)")
    console.print(adapters)
    unprobed = sorted({a["name"] for t in data["targets"] for a in t["adapters"] if a["available"] is None})
    if unprobed:
        console.print(f"[dim]· = installed, not imported here ({escape(', '.join(unprobed))}: slow to import); "
                      "--probe or `edgekit targets show NAME` checks it[/]", highlight=False)
    console.print("[dim]reasons: edgekit targets show NAME[/]")
    emit_json(data, json)
