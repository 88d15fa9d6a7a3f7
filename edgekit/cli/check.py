"""`edgekit check IN.onnx --target T`: per-op support preflight (exit 3 when a node is unsupported)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgekit.cli._common import JsonOpt, command, emit_json, out

_STYLE = {"npu": "green", "supported": "green", "cpu-fallback": "yellow", "unknown": "magenta",
          "unsupported": "bold red"}


@command("check")
def check_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX model to check.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Target profile, e.g. ascend310, mlu220.")] = "cpu",
    nodes: Annotated[bool, typer.Option("--nodes", help="Also list every non-npu node.")] = False,
    json: JsonOpt = None,
) -> None:
    """Which ops run on the target's NPU, fall back, are unsupported or unknown (each with its source)."""
    from rich.markup import escape

    from edgekit.artifact import to_jsonable
    from edgekit.checks.support import check, op_table

    console = out(json)
    report = check(model, target)
    details = report.details
    table = Table(title=escape(f"{model.name} on {report.target} ({report.adapter})"), title_justify="left")
    for col in ("op type", "nodes", "verdict", "reason", "source"):
        table.add_column(col, overflow="fold")
    for row in details.get("op_table") or op_table(report.verdicts):
        style = _STYLE.get(row["verdict"], "white")
        counts = ", ".join(f"{k} {v}" for k, v in row["verdicts"].items())
        mixed = "" if len(row["verdicts"]) == 1 else f" ({counts})"
        # escape: rule texts and op names are data ("[...]" in them is not Rich markup)
        table.add_row(escape(row["op_type"]), str(row["count"]), f"[{style}]{row['verdict']}[/]{escape(mixed)}",
                      escape("; ".join(row["reasons"])[:300]), escape("\n".join(row["sources"])))
    console.print(table)
    part = details.get("partition")
    if part:
        console.print(
            f"partition: {part['npu_subgraphs']} NPU subgraph(s), {part['cpu_fallbacks']} CPU fallback node(s), "
            + (f"{_mac_share(part)} of {part['total_macs'] / 1e6:.1f} M MACs (estimated) on the NPU, "
               if part["total_macs"] else "no MACs counted (no Conv/Gemm/MatMul with known shapes), ")
            + f"{part['host_device_copies']} host<->device copies ({part['host_device_copy_bytes']} bytes)"
            + (f"; {part['assumed_on_npu']} node(s) with verdict unknown assumed on the NPU"
               if part.get("assumed_on_npu") else ""), highlight=False)
    if nodes:
        for v in report.verdicts:
            if v.verdict not in ("npu", "supported"):
                console.print(escape(f"  {v.node} ({v.op_type}): {v.verdict}: {v.reason}"), highlight=False)
    if report.dynamic_dims:
        console.print(f"[yellow]dynamic dims to fix[/]: {escape(str(report.dynamic_dims))}", highlight=False)
        fix = details.get("dynamic_fix", {})
        if fix:
            console.print(f"  {escape(fix['why'])}", highlight=False)
            console.print(f"  fix: [bold]{escape(fix['command'])}[/]", highlight=False)
    unsupported = report.unsupported
    unknown = [v for v in report.verdicts if v.verdict == "unknown"]
    if unsupported:
        console.print(f"[bold red]{len(unsupported)} node(s) unsupported[/] on {report.target}: "
                      + ", ".join(sorted({v.op_type for v in unsupported})), highlight=False)
    if unknown:  # no vendor statement either way: counted and named, never passed off as supported
        console.print(f"[magenta]{len(unknown)} node(s) unknown[/] on {report.target} (no vendor statement found; "
                      "not confirmed to run on the NPU, a real build decides): "
                      + escape(", ".join(sorted({v.op_type for v in unknown}))), highlight=False)
    if not unsupported and not unknown:
        console.print(f"[green]no unsupported nodes[/] on {report.target}", highlight=False)
    emit_json({"target": report.target, "adapter": report.adapter, "ok": report.ok,
               "unsupported": len(unsupported), "unknown": len(unknown), "dynamic_dims": report.dynamic_dims,
               "details": to_jsonable(details), "verdicts": to_jsonable(report.verdicts)}, json)
    if unsupported:
        raise typer.Exit(3)


def _mac_share(part: dict) -> str:
    """The NPU's MAC share; with unknown nodes assumed there, the confirmed part and the assumed part apart."""
    total = part["mac_share_npu"] * 100
    if not part.get("npu_macs_assumed"):
        return f"{total:.1f}%"
    confirmed = part.get("mac_share_npu_confirmed", part["mac_share_npu"]) * 100
    return f"{total:.1f}% ({confirmed:.1f}% confirmed + {total - confirmed:.1f}% assumed from unknown nodes)"
