"""`edgekit run RECIPE.toml`: the whole pipeline in one command, cached, with bundles and a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.cli._common import JsonOpt, command, emit_json, out, provenance_style


@command("run")
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML), or the name of a shipped recipe, "
                                           "e.g. lenet-digits-cpu-int8.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default ./edgekit-out/NAME).")]
    = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t", help="Run only this recipe target "
                                                     "(repeatable).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Stage cache folder (default: the user "
                                                   "cache dir, or $EDGEKIT_CACHE_DIR).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every stage; store nothing.")] = False,
    trust_code: Annotated[bool, typer.Option("--trust-code", help="Allow the recipe to run Python code "
                                             "(model.factory, py: data); the recipe must also say trust_code = "
                                             "true.")] = False,
    json_dest: JsonOpt = None,
) -> None:
    """Run a recipe: export → simplify → quantize → compile → accuracy → bench → budget checks.

    Writes OUT/<target>/ bundles (budgets stored for `edgekit gate`), OUT/report.md and OUT/report.html.
    Exit 1 when a budget fails.
    """
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from edgekit.pipeline import Pipeline

    console = out(json_dest)
    pipeline = Pipeline.from_recipe(recipe, trust_code=trust_code)
    tasks: dict[str, Any] = {}
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=False) as bar:

        def progress(event: str, record: Any, label: str) -> None:
            if event == "start":
                tasks[label] = bar.add_task(f"{escape(label)} …", total=1)
                return
            if record.stage == "checks":
                tag = "[green]passed[/]" if record.detail == "passed" else "[red]failed[/]"
            else:
                tag = "[cyan]cached[/]" if record.hit else "[yellow]built[/]"
            detail = f" [dim]{escape(record.detail)}[/]" if record.detail and record.stage != "checks" else ""
            bar.update(tasks[label], description=f"{escape(label)} {tag}{detail}", completed=1)

        result = pipeline.run(output, targets=target or None, cache_dir=cache_dir, use_cache=not no_cache,
                              progress=progress)

    skipped = sum(t.status == "skipped" for t in result.targets)
    title = f"{result.recipe}: {'PASSED' if result.passed else 'FAILED'}" + (f" ({skipped} target(s) skipped)"
                                                                            if skipped else "")
    rows = []
    for t in result.targets:
        colour = {"passed": "green", "failed": "red", "skipped": "yellow"}[t.status]
        p50 = t.latency.get("p50")
        latency = f"{p50:.3f} ms {provenance_style(t.latency_provenance)}" if p50 is not None else "—"
        acc = t.accuracy.get("accuracy")
        if acc is None and t.accuracy.get("sqnr_db") is not None:
            acc_text = f"SQNR {t.accuracy['sqnr_db']:.1f} dB"
        else:
            acc_text = f"{acc:.4f}" if acc is not None else "—"
        if acc_text != "—":
            acc_text += f" {provenance_style(str(t.accuracy.get('provenance')))}"
        rows.append((escape(t.target), f"[{colour}]{t.status}[/]", f"{t.adapter or '—'} / {t.precision_used or '—'}",
                     latency, acc_text, escape(str(t.bundle) if t.bundle and t.status != "skipped" else t.reason)))
    if console.width >= 120:
        table = Table(title=title)
        for col in ("target", "status", "adapter / precision", "latency p50", "accuracy", "bundle / reason"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:  # narrow terminal: one line per target, nothing cut off
        console.print(f"[bold]{escape(title)}[/]")
        for (name, status, build, latency, acc_text, where), t in zip(rows, result.targets, strict=True):
            text = f"  {name} {status} — {where}" if t.status == "skipped" else \
                f"  {name} {status}: {build}; p50 {latency}; accuracy {acc_text} — {where}"
            console.print(text, highlight=False)
    for t in result.targets:
        if len(t.candidates) > 1:
            console.print(render_candidates(t))
    for t in result.targets:
        if t.status == "failed":
            console.print(f"[red]budget failed[/] {escape(t.target)}: {escape(t.reason)}", highlight=False)
    hits = sum(1 for s in result.stages if s.hit)
    console.print(f"{hits}/{len(result.stages)} stages from cache; {result.seconds:.2f} s; report: "
                  f"{result.report_md} and {result.report_html}", highlight=False)
    emit_json(result.to_json(), json_dest)
    if not result.passed:
        raise typer.Exit(1)


def render_candidates(target: Any, width: int | None = None) -> Any:
    """A precision-auto search: every (adapter × precision), its figures and provenance (★ chosen).

    A table on a wide terminal; one line per candidate on a narrow one, so nothing is cut off.
    """
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from edgekit.cli._common import console as default_console

    def fields(c: Any) -> tuple[str, ...]:
        used = f" → {c.precision_used}" if c.precision_used and c.precision_used != c.precision else ""
        latency = f"{c.latency_ms:.3f} ms {provenance_style(c.latency_provenance)}" if c.latency_ms is not None \
            else "—"
        acc = f"{c.accuracy:.4f} {provenance_style(c.accuracy_provenance)}" if c.accuracy is not None else "—"
        return (("★ " if c.chosen else "") + c.adapter, c.precision + used, latency, acc,
                f"{c.cosine:.5f}" if c.cosine is not None else "—",
                f"{c.sqnr_db:.1f} dB" if c.sqnr_db is not None else "—",
                "[green]ok[/]" if c.meets_budget else "[red]no[/]",
                "" if c.reason == "meets the accuracy budget" else escape(c.reason))

    title = f"{target.target}: precision auto candidates (★ chosen; fastest within the accuracy budget)"
    if (width or default_console.width) >= 130:
        table = Table(title=title)
        for col in ("adapter", "precision", "latency p50", "task accuracy", "cosine", "SQNR", "budget", "why"):
            table.add_column(col)
        for c in target.candidates:
            table.add_row(*fields(c))
        return table
    lines = [f"[bold]{escape(title)}[/]"]
    for c in target.candidates:
        name, precision, latency, acc, cos, sqnr, ok, why = fields(c)
        lines.append(f"  {name} {precision}: p50 {latency}, accuracy {acc}, cosine {cos}, SQNR {sqnr}, budget {ok}"
                     + (f" — {why}" if why else ""))
    return Group(*lines)
