"""`edgekit toolchain install|list|doctor|remove [NAME] [--path DIR]`: managed vendor environments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from edgekit.cli._common import JsonOpt, command, emit_json, err_console, out

ACTIONS = ("install", "list", "doctor", "remove")


@command("toolchain")
def toolchain_cmd(
    action: Annotated[str, typer.Argument(help="install | list | doctor | remove")],
    name: Annotated[str | None, typer.Argument(help="Toolchain name (e.g. rknn); list/doctor: all if omitted.")] = None,
    path: Annotated[Path | None, typer.Option("--path", help="Root dir of the environments "
                                              "(default: $EDGEKIT_TOOLCHAINS_DIR, else the user data dir).")] = None,
    force: Annotated[bool, typer.Option("--force", help="install: rebuild even when up to date.")] = False,
    json: JsonOpt = None,
) -> None:
    """Vendor toolchains with conflicting pins (RKNN-Toolkit2) in their own environment, never edgekit's."""
    from edgekit.errors import BadInputError, CheckFailedError, ToolchainMissingError
    from edgekit.toolchains import env

    console = out(json)
    if action not in ACTIONS:
        raise BadInputError(f"unknown action {action!r}", path="ACTION", hint=f"one of {', '.join(ACTIONS)}")
    if action in ("install", "remove") and not name:
        raise BadInputError(f"`toolchain {action}` needs a name", path="NAME",
                            hint=f"known: {', '.join(env.TOOLCHAINS)}")

    if action == "install":
        assert name is not None
        spec = env.get_spec(name)
        console.print(f"installing [bold]{name}[/]: {spec.description} into {env.toolchains_root(path) / name}",
                      highlight=False)
        state, installed = env.install(name, path=path, force=force,
                                       log=lambda line: err_console.print(f"[dim]{escape(line)}[/]", highlight=False))
        if installed:
            console.print(f"[green]installed[/] {name} in {state.install_seconds:.0f} s "
                          f"(steps: {', '.join(f'{s:.0f}s' for s in state.step_seconds)})", highlight=False)
        else:
            console.print(f"[green]already installed[/] {name} at {state.path} (use --force to rebuild)",
                          highlight=False)
        pins = ", ".join(f"{d} {state.packages.get(d, '?')}" for d in spec.pins)
        console.print(f"pinned: {pins}", highlight=False)
        emit_json({"installed_now": installed, **state.to_json()}, json)
        return

    if action == "remove":
        assert name is not None
        removed = env.remove(name, path=path)
        console.print(f"removed {name}" if removed else f"{name} was not installed", highlight=False)
        emit_json({"name": name, "removed": removed}, json)
        return

    if action == "list":
        rows = env.list_envs(path)
        table = Table(title=f"toolchains in {env.toolchains_root(path)}", title_justify="left")
        for col in ("name", "installed", "key versions", "created", "install s", "description"):
            table.add_column(col, overflow="fold")
        payload = []
        for tname, state in rows:
            spec = env.get_spec(tname)
            if state is None:
                table.add_row(tname, "[red]no[/]", "", "", "", f"{spec.description} — `{env.install_command(tname)}`")
                payload.append({"name": tname, "installed": False, "install_command": env.install_command(tname)})
                continue
            versions = ", ".join(f"{d} {state.packages.get(d, '?')}" for d in spec.pins)
            mark = "[green]yes[/]" if state.current else "[yellow]outdated[/]"
            table.add_row(tname, mark, versions, state.created_at, f"{state.install_seconds:.0f}", spec.description)
            payload.append({"installed": True, "current": state.current, **state.to_json()})
        console.print(table)
        emit_json({"root": str(env.toolchains_root(path)), "toolchains": payload}, json)
        return

    names = [name] if name else list(env.TOOLCHAINS)
    reports = [env.doctor(n, path=path) for n in names]
    for report in reports:
        table = Table(title=f"{report.name}: {report.path}", title_justify="left")
        for col in ("check", "ok", "detail"):
            table.add_column(col, overflow="fold")
        for check in report.checks:
            table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", escape(check.detail))
        console.print(table)
    emit_json({"toolchains": [r.to_json() for r in reports]}, json)
    missing = [r.name for r in reports if r.checks and r.checks[0].name == "installed" and not r.checks[0].ok]
    if missing:
        raise ToolchainMissingError(f"not installed: {', '.join(missing)}",
                                    hint=f"run `{env.install_command(missing[0], path)}`")
    failed = [r.name for r in reports if not r.ok]
    if failed:
        raise CheckFailedError(f"toolchain problems: {', '.join(failed)}", hint="see the table above; "
                               f"`{env.install_command(failed[0])} --force` rebuilds an environment")
