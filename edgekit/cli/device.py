"""`edgekit device add|list|doctor|remove [NAME]`: boards that `bench --device NAME` measures on (docs/devices.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgekit.cli._common import JsonOpt, command, emit_json, out
from edgekit.errors import BadInputError, ToolchainMissingError

ACTIONS = ("add", "list", "doctor", "remove")


@command("device")
def device_cmd(
    action: Annotated[str, typer.Argument(help="add | list | doctor | remove")],
    name: Annotated[str | None, typer.Argument(help="Device name (one token: letters, digits, _ and -).")] = None,
    url: Annotated[str | None, typer.Option("--url", metavar="ssh://USER@HOST[:PORT]",
                                            help="add: where the device is (a host may be a ~/.ssh/config alias).")
                   ] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="add: what it is (e.g. rk3588, cpu).")] = None,
    python: Annotated[str, typer.Option("--python", help="add: the device's Python with edgekit installed.")
                      ] = "python3",
    workdir: Annotated[str, typer.Option("--workdir", help="add: folder on the device for bundles (relative: "
                                                           "to the login's home).")] = ".edgekit",
    ssh_config: Annotated[str | None, typer.Option("--ssh-config", help="add: ssh_config file (ssh -F).")] = None,
    known_hosts: Annotated[str | None, typer.Option("--known-hosts", help="add: known_hosts file to verify the "
                                                                          "host key with.")] = None,
    identity: Annotated[str | None, typer.Option("--identity", "-i", help="add: private key file (else the agent).")
                        ] = None,
    project: Annotated[bool, typer.Option("--project", help="add/remove: in ./devices.toml (the project's) "
                                                            "instead of the user's config.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="add: overwrite a device of that name.")] = False,
    json: JsonOpt = None,
) -> None:
    """Boards that bench --device measures on: add, list, doctor (connects; says what to install), remove.

    Stored in devices.toml in the user config dir (or $EDGEKIT_CONFIG_DIR), with ./devices.toml on top."""
    from edgekit import devices

    console = out(json)
    if action not in ACTIONS:
        raise BadInputError(f"unknown action {action!r}", path="ACTION", hint=f"one of {', '.join(ACTIONS)}")
    if action != "list" and not name:
        raise BadInputError(f"`device {action}` needs a NAME", path="NAME", hint="see `edgekit device list`")
    path = devices.project_devices_file() if project else devices.user_devices_file()

    if action == "add":
        if url is None or target is None:
            raise BadInputError("`device add` needs --url and --target", path="--url",
                                hint="e.g. edgekit device add board --url ssh://pi@192.168.1.20 --target rk3588")
        device = devices.make_device(str(name), url=url, target=target, python=python, workdir=workdir,
                                     ssh_config=ssh_config, known_hosts=known_hosts, identity=identity,
                                     source="edgekit device add")
        written = devices.add_device(device, path=path, replace_existing=replace)
        console.print(f"added device [bold]{escape(device.name)}[/] ({escape(str(device.url))}, {device.target}) "
                      f"to {escape(str(written))}; check it with `edgekit device doctor {device.name}`",
                      highlight=False)
        emit_json({"name": device.name, "file": str(written), **device.to_toml()}, json)
        return

    if action == "remove":
        written = devices.remove_device(str(name), path=path)
        console.print(f"removed device {escape(str(name))} from {escape(str(written))}", highlight=False)
        emit_json({"name": name, "removed": True, "file": str(written)}, json)
        return

    if action == "list":
        found = devices.all_devices()
        table = Table(title=f"devices ({devices.user_devices_file()}, then ./devices.toml)", title_justify="left")
        for col in ("name", "url", "target", "python", "workdir", "from"):
            table.add_column(col)
        for dev in found.values():
            table.add_row(dev.name, str(dev.url), dev.target, dev.python, dev.workdir, dev.source)
        console.print(table if found else "no devices: add one with `edgekit device add NAME --url ssh://USER@HOST "
                      "--target TARGET`", highlight=False)
        emit_json({"devices": [{"name": d.name, "source": d.source, **d.to_toml()} for d in found.values()]}, json)
        return

    report = devices.doctor(str(name))
    _render_doctor(report, console)
    emit_json(report, json)
    if not report["ok"]:
        raise ToolchainMissingError(f"device {name!r} is missing: " + "; ".join(report["missing"]),
                                    path=str(report["device"]["url"]))


def _render_doctor(report: dict[str, Any], console: Any) -> None:
    probe, dev = report["probe"], report["device"]
    console.print(f"[bold]{escape(dev['name'])}[/] {escape(dev['url'])} · target {escape(dev['target'])} · "
                  f"host {escape(str(probe.get('hostname')))} ({escape(str(probe.get('machine')))})", highlight=False)
    console.print(f"python {probe.get('python')} ({escape(str(probe.get('python_executable')))}) · edgekit "
                  f"{probe.get('edgekit') or '[red]not installed[/]'} · runtime "
                  f"{'[green]ok[/]' if probe.get('edgekit_runtime') else '[red]missing[/]'}", highlight=False)
    clocks = dict(probe.get("clocks") or {})
    mhz = sorted({c.get("max_mhz") for c in clocks.values() if isinstance(c, dict) and c.get("max_mhz")})
    console.print(f"cpu {escape(str(probe.get('cpu_model')))} · {probe.get('cores')} cores · governor "
                  f"{probe.get('governor') or 'n/a'} · max clocks {', '.join(f'{m} MHz' for m in mhz) or 'n/a'} · "
                  f"load {(probe.get('load_average') or ['n/a'])[0]}", highlight=False)
    drivers = dict(probe.get("npu_driver") or {})
    console.print("npu driver: " + (", ".join(f"{k} {escape(str(v))}" for k, v in drivers.items()) or "none found"),
                  highlight=False)
    table = Table(title="runtimes", title_justify="left")
    for col in ("module", "installed", "version", "package"):
        table.add_column(col)
    for module, info in dict(probe.get("runtimes") or {}).items():
        installed = "[green]yes[/]" if info.get("installed") else "[dim]no[/]"
        table.add_row(module, installed, str(info.get("version") or ""), escape(str(info.get("package"))))
    console.print(table)
    for line in report["missing"]:
        console.print(f"[yellow]missing[/]: {escape(line)}", highlight=False)
    if report["ok"]:
        console.print("[green]ready[/]: `edgekit bench BUNDLE --device " + escape(dev["name"]) + "`", highlight=False)

