"""`edgekit gate`: re-check the accuracy and latency budgets stored with a bundle (what CI runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from edgekit.cli._common import JsonOpt, ThreadsOpt, TrustBundleOpt, command, out
from edgekit.cli._device_opts import (
    ClusterOpt,
    DeviceKindOpt,
    DeviceOpt,
    LeaseTimeoutOpt,
    RunTimeoutOpt,
    remote_kwargs,
)
from edgekit.cli.bench import (
    AbMaxSecondsOpt,
    BaselineBundleOpt,
    DurationOpt,
    EmulatedOpt,
    ItersOpt,
    JunitOpt,
    MaxRegressionOpt,
    WarmupOpt,
    ab_settings,
    budget_table,
    finish,
    print_verdict_notes,
    render_bench,
    render_comparison,
)


@command("gate")
def gate_cmd(
    path: Annotated[Path, typer.Argument(metavar="RECIPE_OR_BUNDLE", help="A bundle dir (or a recipe .toml).")],
    warmup: WarmupOpt = 10,
    iters: ItersOpt = None,
    duration: DurationOpt = None,
    threads: ThreadsOpt = None,
    emulated: EmulatedOpt = False,
    baseline_bundle: BaselineBundleOpt = None,
    max_regression: MaxRegressionOpt = None,
    ab_max_seconds: AbMaxSecondsOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Recipe only: output folder of the run.")
                      ] = None,
    trust_code: Annotated[bool, typer.Option("--trust-code", help="Recipe only: allow its Python code to run.")
                          ] = False,
    json: JsonOpt = None,
    junit: JunitOpt = None,
    trust_bundle: TrustBundleOpt = False,
    device: DeviceOpt = None,
    cluster: ClusterOpt = None,
    device_kind: DeviceKindOpt = None,
    lease_timeout: LeaseTimeoutOpt = None,
    run_timeout: RunTimeoutOpt = None,
) -> None:
    """Re-check a bundle's stored budgets (info.budgets), measured now: exit 0 all hold, 1 one fails,
    3 a recipe target is unsupported, 4 not checkable here. Accuracy is re-run against the FP32 reference
    outputs on the eval data the bundle carries."""
    import edgekit
    from edgekit.checks.budgets import write_junit

    console = out(json)
    ab = ab_settings(baseline_bundle, max_regression, ab_max_seconds)
    if max_regression is not None and baseline_bundle is None:
        from edgekit.errors import BadInputError

        raise BadInputError("--max-regression needs --baseline-bundle", path="--max-regression")
    if not path.exists():  # a bare name: the recipe of that name shipped with edgekit (`edgekit gate NAME`)
        from edgekit.recipe import find_recipe

        path = find_recipe(path) or path
    result = edgekit.gate(path, warmup=warmup, iters=iters, duration=duration, threads=threads,
                          allow_emulated=emulated, output=output, trust_code=trust_code,
                          trust=trust_bundle, **({"baseline_bundle": baseline_bundle, "ab": ab} if ab else {}),
                          **remote_kwargs(device, cluster, device_kind, lease_timeout, run_timeout))
    if result.bench is not None:
        bench = result.bench
        bench_verdicts, bench.verdicts, comparison = bench.verdicts, [], bench.comparison
        bench.comparison = None
        render_bench(bench, console)
        bench.verdicts, bench.comparison = bench_verdicts, comparison
        if comparison is not None:
            render_comparison(comparison, console)
    console.print(f"accuracy: {result.accuracy_source}" if result.accuracy_source else "accuracy: no thresholds stored",
                  highlight=False)
    console.print(budget_table(result.verdicts, title=f"stored budgets of {path}"))
    print_verdict_notes(result.verdicts, console)
    for note in result.notes:
        console.print(f"[dim]note: {escape(str(note))}[/]", highlight=False)
    for failure in result.failures:
        console.print(f"[bold red]failed[/]: {escape(str(failure))}", highlight=False)
    if junit is not None:
        write_junit(junit, result.verdicts, suite="edgekit.gate", classname=f"edgekit.gate.{path.name}")
        console.print(f"wrote {junit}", highlight=False)
    finish(result, console, json)
