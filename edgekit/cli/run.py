"""`edgekit run RECIPE.toml`: the whole pipeline in one command, cached, with bundles and a report.

`edgekit run A.toml B.toml ... [--cluster ADDRESS]`: many recipes, in turn or one Ray task each
(`edgekit.pipeline.many`), with one summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.cli._common import JsonOpt, command, emit_json, err_console, out, provenance_style
from edgekit.errors import BadInputError
from edgekit.specs import format_shapes


@command("run", progress=False)  # its own live display: stage lines, with in-stage progress
def run(
    recipes: Annotated[list[Path], typer.Argument(help="Recipe file (TOML), or the name of a shipped recipe, "
                                                  "e.g. lenet-digits-cpu-int8; several run in turn, or on "
                                                  "--cluster.", metavar="RECIPE")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (default ./edgekit-out/NAME; "
                                                "with several recipes or --cluster: OUT/NAME per recipe, "
                                                "default ./edgekit-out).")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t", help="Run only this recipe target "
                                                     "(repeatable).")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Stage cache folder (default: the user "
                                                   "cache dir, or $EDGEKIT_CACHE_DIR).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every stage; store nothing.")] = False,
    trust_code: Annotated[bool, typer.Option("--trust-code", help="Allow the recipe to run Python code "
                                             "(model.factory, py: data); the recipe must also say trust_code = "
                                             "true.")] = False,
    cluster: Annotated[str | None, typer.Option("--cluster", metavar="ADDRESS",
                                                help="Run each recipe as one task on this Ray cluster "
                                                     "(ray://HEAD:10001, HEAD:6379 or auto); docs/devices.md.")]
    = None,
    json_dest: JsonOpt = None,
) -> None:
    """Run a recipe: export → simplify → quantize → compile → accuracy → bench → budget checks.

    Writes OUT/<target>/ bundles (budgets stored for `edgekit gate`), OUT/report.md and OUT/report.html.
    Exit 1 a budget failed · 3 a target is unsupported · 4 a target could not be built or judged here
    (toolchain/device missing, a budget not measurable) — unless the recipe marks that target optional.
    Several recipes (or --cluster): OUT/<recipe name>/ each, one summary table, the most severe exit code
    (2 > 1 > 3 > 4 > 0); 130 when interrupted (running tasks are cancelled).
    """
    if cluster is not None or len(recipes) != 1:
        run_recipes(recipes, output=output, target=target, cache_dir=cache_dir, no_cache=no_cache,
                    trust_code=trust_code, cluster=cluster, json_dest=json_dest)
        return
    recipe = recipes[0]
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Column, Table

    from edgekit.pipeline import Pipeline
    from edgekit.progress import Event, reporting

    console = out(json_dest)
    pipeline = Pipeline.from_recipe(recipe, trust_code=trust_code)
    tasks: dict[str, Any] = {}
    # the description column gives way (ellipsis) before the stage time does, at any terminal width
    columns = (SpinnerColumn(), TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True,
                                                                                     overflow="ellipsis")),
               TimeElapsedColumn(table_column=Column(min_width=7, no_wrap=True)))
    with Progress(*columns, console=console, transient=False, expand=True) as bar:

        current: list[str] = []

        def progress(event: str, record: Any, label: str) -> None:
            if event == "start":
                tasks[label] = bar.add_task(f"{escape(label)} …", total=1)
                current[:] = [label]
                return
            if record.stage == "checks":
                tag = {"passed": "[green]passed[/]", "failed": "[red]failed[/]"}.get(record.detail,
                                                                                    f"[yellow]{record.detail}[/]")
            elif record.stage == "bench":
                tag = "[yellow]measured now[/]"
            else:
                tag = "[cyan]cached[/]" if record.hit else "[yellow]built[/]"
            detail = f" [dim]{escape(record.detail)}[/]" if record.detail and record.stage != "checks" else ""
            if label not in tasks:
                tasks[label] = bar.add_task("", total=1)
            bar.update(tasks[label], description=f"{escape(label)} {tag}{detail}", completed=1)

        def inner(event: Event) -> None:  # calibration n/N, candidate timing rounds, ... inside the stage
            if current and current[0] in tasks and not event.finished and event.phase != current[0]:
                bar.update(tasks[current[0]], description=f"{escape(current[0])} … [dim]{escape(event.text())}[/]")

        with reporting(None if json_dest == "-" else inner):
            result = pipeline.run(output, targets=target or None, cache_dir=cache_dir, use_cache=not no_cache,
                                  progress=progress)

    skipped = sum(t.skipped for t in result.targets)
    title = f"{result.recipe}: {result.status.upper()} (exit {result.exit_code})" + \
        (f" ({skipped} target(s) not built)" if skipped else "")
    rows = []
    for t in result.targets:
        colour = {"passed": "green", "failed": "red"}.get(t.status, "yellow")
        p50, p99 = t.latency.get("p50"), t.latency.get("p99")
        latency = f"{p50:.3f} / {p99 or p50:.3f} ms {provenance_style(t.latency_provenance)}" \
            if p50 is not None else "—"
        if t.latency_figure is not None and p50 is not None:
            shapes = format_shapes(t.latency_figure.input_shapes, " ")
            latency += f" [dim](this run{', ' + shapes if shapes else ''})[/]"
        acc = t.accuracy.get("accuracy")
        if t.accuracy.get("metric"):
            acc_text = metric_text(t.accuracy["metric"])
        elif acc is None and t.accuracy.get("sqnr_db") is not None:
            acc_text = f"SQNR {t.accuracy['sqnr_db']:.1f} dB"
        else:
            acc_text = f"{acc:.4f}" if acc is not None else "—"
        if acc_text != "—":
            acc_text += f" {provenance_style(str(t.accuracy.get('provenance')))}"
        status = t.status + (" (optional)" if t.optional and t.skipped else "")
        rows.append((escape(t.target), f"[{colour}]{status}[/]", f"{t.adapter or '—'} / {t.precision_used or '—'}",
                     latency, acc_text, escape(str(t.bundle) if t.bundle and not t.skipped else t.reason)))
    if console.width >= 120:
        table = Table(title=title)
        for col in ("target", "status", "adapter / precision", "latency p50 / p99", "accuracy", "bundle / reason"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:  # narrow terminal: one line per target, nothing cut off
        console.print(f"[bold]{escape(title)}[/]")
        for (name, status, build, latency, acc_text, where), t in zip(rows, result.targets, strict=True):
            text = f"  {name} {status} — {where}" if t.skipped else \
                f"  {name} {status}: {build}; p50 {latency}; accuracy {acc_text} — {where}"
            console.print(text, highlight=False)
    for t in result.targets:
        if len(t.candidates) > 1:
            console.print(render_candidates(t))
    for t in result.targets:
        if t.status == "failed":
            console.print(f"[red]budget failed[/] {escape(t.target)}: {escape(t.reason)}", highlight=False)
        elif t.status == "not-run":
            console.print(f"[yellow]not checkable[/] {escape(t.target)}: {escape(t.reason)}", highlight=False)
    hits = sum(1 for s in result.stages if s.hit)
    console.print(f"{hits}/{len(result.stages)} stages from cache; {result.seconds:.2f} s; report: "
                  f"{result.report_md} and {result.report_html}", highlight=False)
    emit_json(result.to_json(), json_dest)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def run_recipes(recipes: list[Path], *, output: Path | None, target: list[str] | None, cache_dir: Path | None,
                no_cache: bool, trust_code: bool, cluster: str | None, json_dest: str | None) -> None:
    """Several recipes (or any on a cluster): a line as each finishes, then one table and the worst exit code."""
    from rich.markup import escape
    from rich.table import Table

    from edgekit.pipeline.many import PlannedRecipe, RecipeRun, exit_code, run_many

    if target:
        raise BadInputError("--target selects targets of one recipe", path="--target",
                            hint="run that recipe on its own, or drop --target")
    console = out(json_dest)
    colours = {"passed": "green", "failed": "red"}

    def where(run: RecipeRun) -> str:
        if run.node == "local":
            return f"here ({run.host}, pid {run.pid})"
        return f"node {run.node[:12]} ({run.host}, pid {run.pid})" if run.node else "— (task lost)"

    def done(run: RecipeRun) -> None:
        console.print(f"  [{colours.get(run.status, 'yellow')}]{run.status}[/] {escape(run.recipe)} (exit "
                      f"{run.exit_code}, {run.seconds:.1f} s) {escape(where(run))}", highlight=False)

    def start(jobs: list[PlannedRecipe]) -> None:
        how = f"on the cluster at {cluster}, one task each" if cluster is not None else "one after another"
        console.print(escape(f"{len(jobs)} recipe(s) {how}, into {jobs[0].output.parent}/<recipe>/"),
                      highlight=False)

    try:
        runs = run_many(recipes, output=output, cluster=cluster, cache_dir=cache_dir, use_cache=not no_cache,
                        trust_code=trust_code, on_start=start, on_done=done)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]: recipe runs still going were stopped (tasks cancelled); "
                          "their OUT/<name> folders may be incomplete")
        raise typer.Exit(130) from None
    code = exit_code(runs)
    title = f"{len(runs)} recipes: {'PASSED' if code == 0 else 'NOT PASSED'} (exit {code})"
    rows = [(escape(r.recipe), escape(", ".join(f"{t} {s}" for t, s in r.targets) or "—"),
             f"[{colours.get(r.status, 'yellow')}]{r.status}[/]", str(r.exit_code), f"{r.seconds:.1f}",
             escape(where(r))) for r in runs]
    if console.width >= 100:
        table = Table(title=title)
        for col in ("recipe", "targets", "status", "exit", "seconds", "ran on"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        console.print(f"[bold]{escape(title)}[/]")
        for name, targets, status, exit_text, seconds, ran in rows:
            console.print(f"  {name} {status} (exit {exit_text}, {seconds} s): {targets} — {ran}", highlight=False)
    for r in runs:
        if r.reason:
            console.print(f"[{colours.get(r.status, 'yellow')}]{r.status}[/] {escape(r.recipe)}: {escape(r.reason)}",
                          highlight=False)
    emit_json({"exit_code": code, "cluster": cluster, "recipes": [r.to_json() for r in runs]}, json_dest)
    if code:
        raise typer.Exit(code)


def metric_text(metric: dict[str, Any]) -> str:
    """`map50 90.28 % (FP32 93.92 %, drop 3.64 points; accuracy)`: a task metric, never called accuracy
    when it is agreement with FP32's own predictions."""
    from rich.markup import escape

    def show(value: Any) -> str:
        if value is None:
            return "n/a"
        return f"{100 * float(value):.2f} %" if metric.get("unit") == "%" else f"{float(value):.4g}"

    drop = metric.get("drop")
    tail = f", drop {drop:.2f} {metric.get('drop_unit', 'points')}" if drop is not None else ""
    return escape(f"{metric.get('name')} {show(metric.get('value'))} (FP32 {show(metric.get('fp32'))}{tail}; "
                  f"{metric.get('mode')})")


def render_candidates(target: Any, width: int | None = None) -> Any:
    """A precision-auto search: every (adapter × precision), its status, the figures the choice was made
    on (side-by-side medians), and ★ with the rule that decided.

    A table on a wide terminal; one line per candidate on a narrow one, so nothing is cut off.
    """
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from edgekit.cli._common import console as default_console

    marks = {"passed": "[green]✅ passed[/]", "rejected": "[yellow]❎ rejected[/]", "failed": "[red]❌ failed[/]",
             "skipped": "[dim]⏭ skipped[/]"}

    fp32 = [c.latency_ms for c in target.candidates if c.precision == "fp32" and c.latency_ms is not None
            and c.latency_kind == "side-by-side median"]

    def fields(c: Any) -> tuple[str, ...]:
        used = f" → {c.precision_used}" if c.precision_used and c.precision_used != c.precision else ""
        tail = f" / {c.latency_p99_ms:.3f}" if c.latency_p99_ms is not None else ""
        latency = f"{c.latency_ms:.3f}{tail} ms {provenance_style(c.latency_provenance)}" \
            if c.latency_ms is not None else "—"
        speed = f"{min(fp32) / c.latency_ms:.2f}×" if fp32 and c.latency_ms and \
            c.latency_kind == "side-by-side median" else "—"
        acc = metric_text(c.metric) if c.metric else \
            (f"{c.accuracy:.4f} {provenance_style(c.accuracy_provenance)}" if c.accuracy is not None else "—")
        if c.dead:
            acc = f"[red]dead: {escape(c.dead)}[/]"
        return (("★ " if c.chosen else "") + escape(c.adapter), c.precision + used, marks.get(c.status, c.status),
                f"{c.size_mb:.1f}" if c.size_mb is not None else "—", latency, speed, acc,
                f"{c.cosine:.5f}" if c.cosine is not None else "—",
                f"{c.sqnr_db:.1f} dB" if c.sqnr_db is not None else "—",
                "" if c.reason == "meets the accuracy budget" else escape(c.reason))

    screened = any(c.latency_kind == "screening median" for c in target.candidates)
    title = f"{target.target}: precision auto candidates (latency: side-by-side medians the choice was made on" + \
        ("; the screening's short rounds for what it dropped)" if screened else ")")
    decision = f"★ {escape(str(target.adapter))} {escape(str(target.precision_used))}: {escape(target.decision)}" \
        if target.decision else ""
    if (width or default_console.width) >= 130:
        table = Table(title=title, caption=decision or None, caption_justify="left")
        for col in ("candidate", "precision", "status", "size MB", "p50 / p99", "× FP32", "accuracy", "cosine",
                    "SQNR", "why"):
            table.add_column(col, overflow="fold")
        for c in target.candidates:
            table.add_row(*fields(c))
        return table
    lines = [f"[bold]{escape(title)}[/]"]
    for c in target.candidates:
        name, precision, status, _size, latency, speed, acc, cos, sqnr, why = fields(c)
        lines.append(f"  {name} {precision} {status}: p50/p99 {latency} ({speed} FP32), accuracy {acc}, cosine {cos}, "
                     f"SQNR {sqnr}" + (f" — {why}" if why else ""))
    if decision:
        lines.append(decision)
    return Group(*lines)
