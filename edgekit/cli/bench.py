"""`edgekit bench`: latency of a bundle (or an .onnx compiled on the fly), with budgets a CI gates on."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from edgekit.cli._common import (
    InputShapeOpt,
    JsonOpt,
    ThreadsOpt,
    TrustBundleOpt,
    command,
    emit_json,
    fmt_num,
    out,
    provenance_style,
)
from edgekit.cli._device_opts import (
    ClusterOpt,
    DeviceKindOpt,
    DeviceOpt,
    LeaseTimeoutOpt,
    RunTimeoutOpt,
    remote_kwargs,
)

if TYPE_CHECKING:
    from rich.console import Console

    from edgekit.checks.budgets import BudgetVerdict
    from edgekit.checks.latency import BenchResult
    from edgekit.checks.regression import ABComparison, ABConfig

_STATUS = {"pass": "[bold green]pass[/]", "fail": "[bold red]FAIL[/]", "not-run": "[dim]not-run[/]",
           "inconclusive": "[bold yellow]inconclusive[/]"}

BudgetOpt = Annotated[list[str] | None, typer.Option(
    "--budget", metavar="EXPR", help="Latency budget, e.g. 'p90<=25ms' (p50/p90/p95/p99/mean/max/min; ms/us/s; "
    "repeatable), or a throughput floor 'throughput>=120/s'. Exit 1 when one fails.")]
JunitOpt = Annotated[Path | None, typer.Option("--junit", metavar="FILE.xml",
                                               help="Write JUnit XML: one testcase per budget.")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", metavar="FILE.png", help="Latency histogram + timeline.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before timing.")]
ItersOpt = Annotated[int | None, typer.Option("--iters", min=1, help="Timed runs (default 100, or ~10 s).")]
DurationOpt = Annotated[float | None, typer.Option(
    "--duration", help="Seconds of timed runs instead of --iters (--mode throughput: the run's length, default 10).")]
ModeOpt = Annotated[str, typer.Option(
    "--mode", metavar="latency|throughput", help="latency: one request at a time (default). throughput: items/s "
    "with requests in parallel by the backend's own machinery (OpenVINO THROUGHPUT hint + async requests, ONNX "
    "Runtime parallel sessions), per-request latency alongside; budget e.g. 'throughput>=120/s'.")]
StreamsOpt = Annotated[int | None, typer.Option(
    "--streams", metavar="N", help="--mode throughput: requests in flight (OpenVINO streams, ORT sessions); "
    "default: the backend's choice.")]
BaselineBundleOpt = Annotated[Path | None, typer.Option(
    "--baseline-bundle", metavar="OLD/", help="Regression gate: time this bundle side by side with OLD (same "
    "inputs) in shuffled interleaved rounds; pass, fail (regression) or inconclusive (exit 4) on the paired "
    "ratios' 95% CI against --max-regression. The reliable regression gate on a shared host.")]
MaxRegressionOpt = Annotated[str | None, typer.Option(
    "--max-regression", metavar="PCT", help="Allowed slowdown vs --baseline-bundle or --baseline (default 10%).")]
AbMaxSecondsOpt = Annotated[float | None, typer.Option(
    "--ab-max-seconds", metavar="S", help="With --baseline-bundle: time cap of the rounds (default 60); "
    "undecided by then is inconclusive (exit 4).")]
EmulatedOpt = Annotated[bool, typer.Option(
    "--emulated", help="Without the device and without an estimate in the bundle, time host emulation "
    "(host emulation time, not device latency: budgets are reported not-run, exit 4).")]


def budget_table(verdicts: list[BudgetVerdict], title: str = "budgets") -> Table:
    """Each budget: measured value, limit, margin (headroom; negative = over) and provenance."""
    from edgekit.checks.budgets import _fmt

    table = Table(title=title, title_justify="left")
    for col in ("budget", "value", "limit", "margin", "provenance", "verdict"):  # provenance says if measured
        table.add_column(col, justify="right" if col in ("value", "limit", "margin") else "left")
    for v in verdicts:
        margin = v.margin
        margin_text = "—" if margin is None else f"{margin:+.3g}"
        if v.margin_pct is not None:
            margin_text += f" ({v.margin_pct:+.0f}%)"
        name = v.name if v.kind == "latency" else f"{v.kind}: {v.name}"
        # accuracy figures sit near 1 (cosine 0.999998): 4 digits would print "1" against ">= 0.9999"
        fmt = _fmt if v.kind != "accuracy" else (lambda x: "—" if x is None else f"{x:.6g}")
        table.add_row(name, f"{fmt(v.measured)} {v.unit}".strip(), f"{v.op} {fmt(v.limit)}",
                      margin_text, provenance_style(v.provenance), _STATUS.get(v.status, v.status))
    return table


def print_verdict_notes(verdicts: list[BudgetVerdict], console: Console) -> None:
    for v in verdicts:
        if v.note and not (v.kind == "regression" and v.unit == "×"):  # an A/B verdict: render_comparison says it
            console.print(f"[dim]  {escape(f'{v.name} ({v.source}): {v.note}')}[/]", highlight=False)


def render_comparison(comparison: ABComparison, console: Console) -> None:
    """The A/B verdict line, what NEW and OLD are, the rule, the rounds and the contention."""
    colour = {"pass": "green", "regression": "red"}.get(comparison.status, "yellow")
    console.print(f"[bold {colour}]{escape(comparison.headline)}[/]", highlight=False)
    console.print(f"  NEW = {escape(comparison.new)} · OLD = {escape(comparison.old)}", highlight=False)
    console.print(f"  {escape(comparison.reason)}; {comparison.interval.rounds} paired rounds in "
                  f"{comparison.seconds:.1f} s (seed {comparison.seed}); medians NEW "
                  f"{fmt_num(comparison.new_median_ms)} ms, OLD {fmt_num(comparison.old_median_ms)} ms",
                  highlight=False)
    console.print(f"  [dim]rule: {escape(comparison.config.rule)}[/]", highlight=False)
    console.print(f"  contention: {escape(comparison.contention.summary())}", highlight=False)


def render_bench(result: BenchResult, console: Console) -> None:
    """Percentile table with provenance, timings, environment, then the budget verdicts."""
    from edgekit.checks.latency import EMULATION_NOTE

    b = result.bundle
    prov = provenance_style(result.provenance)
    console.print(f"[bold]{b.get('target')}[/] · {b.get('adapter')} · {b.get('precision_used') or b.get('precision')}"
                  f" · batch {result.config.batch} · threads {result.config.threads or 'backend default'} · {prov}",
                  highlight=False)
    if result.device:  # a device's figure, never the host's: say which device
        d = result.device
        console.print(f"[bold]measured on device {escape(str(d.get('name')))}[/] ({escape(str(d.get('transport')))} "
                      f"{escape(str(d.get('url')))}, host {escape(str(d.get('hostname')))}, "
                      f"{escape(str(d.get('cpu_model')))})", highlight=False)
    if result.input_shapes:  # the shapes are part of the figure
        shapes = " ".join(f"{name}:{','.join(str(d) for d in dims)}" for name, dims in result.input_shapes.items())
        console.print(f"inputs: {escape(shapes)}", highlight=False)
    if result.stats is not None:
        s = result.stats
        title = "latency" if result.provenance == "measured" else f"latency — {EMULATION_NOTE}"
        table = Table(title=title, title_justify="left")
        table.add_column("statistic")
        table.add_column("ms", justify="right")
        table.add_column("provenance")
        for key in ("min", "mean", "p50", "p90", "p95", "p99", "max", "std"):
            table.add_row(key, fmt_num(getattr(s, key)), provenance_style(result.provenance))
        console.print(table)
        tp = result.throughput
        if tp is not None:
            console.print(f"[bold]throughput {fmt_num(tp.items_per_s)} items/s[/] ({tp.items} items in "
                          f"{tp.seconds:.2f} s, {tp.streams} in flight; {escape(tp.method)}) · latency above per "
                          f"request, {s.n} requests", highlight=False)
        else:
            console.print(f"{s.n} runs · CV {s.cv:.1%} (robust {s.robust_cv:.1%}) · throughput "
                          f"{fmt_num(s.throughput)} items/s", highlight=False)
        st = result.stability
        if st is not None:
            state = "[green]stable[/]" if st.stable else "[yellow]noisy[/]"
            console.print(f"stability: {state} ({st.metric} {st.cv:.1%}, threshold {st.threshold:.0%}, "
                          f"{st.rounds}/{st.max_rounds} rounds)", highlight=False)
    elif result.estimate is not None:
        console.print(f"latency: [magenta]{fmt_num(result.estimate.get('latency_ms'))} ms estimated[/] "
                      "(cost model, not measured on the device)", highlight=False)
        for assumption in list(result.estimate.get("assumptions") or [])[:6]:
            console.print(f"  [dim]assumes: {escape(str(assumption))}[/]", highlight=False)
    load_label = f"load ({escape(result.load_path)})" if result.load_path else "load"
    timings = [(name, value) for name, value in (("compile", result.compile_ms), (load_label, result.load_ms),
                                                 ("cold first run", result.cold_ms)) if value is not None]
    if timings:  # cold start, apart from the steady state above
        console.print("cold start: " + " · ".join(f"{n} {fmt_num(v)} ms" for n, v in timings)
                      + (f" · peak RSS {fmt_num(result.peak_rss_mb)} MiB" if result.peak_rss_mb else ""),
                      highlight=False)
    env = result.environment
    console.print(f"[dim]{env.get('cpu_model')} ({', '.join(env.get('cpu_flags') or []) or 'no int8 flags'}), "
                  f"{env.get('usable_cpus')} cpus, governor {env.get('governor') or 'n/a'}, "
                  f"load avg {(env.get('load_average') or ['n/a'])[0]}, "
                  f"bundle {str(env.get('bundle_sha256'))[:12]}[/]", highlight=False)
    if result.contention is not None and result.comparison is None:
        console.print(f"[dim]contention: {escape(result.contention.summary())}[/]", highlight=False)
    if result.comparison is not None:
        render_comparison(result.comparison, console)
    if result.verdicts:
        console.print(budget_table(result.verdicts))
        print_verdict_notes(result.verdicts, console)
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {escape(str(warning))}", highlight=False)
    for note in result.notes:
        console.print(f"[dim]note: {escape(str(note))}[/]", highlight=False)


def finish(result: Any, console: Console, json: str | None) -> None:
    """Print the overall verdict and exit with the budgets' code (0 pass, 1 fail, 4 not checkable)."""
    status = result.status
    emit_json(result.to_json(), json)  # files first: the verdict is the last line a user (or CI log) reads
    if result.verdicts:
        word = {"pass": "[bold green]all budgets hold[/]", "fail": "[bold red]budget failed[/]",
                "not-run": "[yellow]budget(s) could not be checked here[/]",
                "inconclusive": "[yellow]inconclusive: could not decide (exit 4, neither a pass nor a fail)[/]",
                "unsupported": "[bold red]unsupported[/]"}.get(status, status)
        console.print(word)
    else:
        console.print("[dim]no budgets given: figures only (nothing judged)[/]")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def ab_settings(baseline_bundle: Path | None, max_regression: str | None, max_seconds: float | None) -> ABConfig | None:
    """`--ab-max-seconds` (and `--max-regression`) as ABConfig, checked before any compile or load."""
    from edgekit.checks.budgets import parse_regression
    from edgekit.checks.regression import ABConfig
    from edgekit.errors import BadInputError

    if baseline_bundle is None:
        if max_seconds is not None:
            raise BadInputError("--ab-max-seconds needs --baseline-bundle", path="--ab-max-seconds")
        return None
    fraction = parse_regression(max_regression)
    return ABConfig(max_regression=fraction) if max_seconds is None else \
        ABConfig(max_regression=fraction, max_seconds=max_seconds)


def _bundle_for(
    target_or_bundle: str, model: Path | None, *, target: str | None, backend: str | None, precision: str | None,
    threads: int | None, batch: int, shapes: tuple[str, ...], budgets: tuple[str, ...], work: Path,
) -> tuple[Path, tuple[str, float] | None]:
    """The bundle to time: BUNDLE/ as is, or MODEL.onnx (for TARGET) compiled into `work` first.

    Returns the bundle and, when compiled here, (what was compiled, compile ms). Unsized dynamic dims
    and bad budgets fail before the compile (minutes, for some backends).
    """
    from edgekit.checks.budgets import parse_budgets
    from edgekit.checks.latency import sized_specs
    from edgekit.errors import BadInputError
    from edgekit.onnxio import input_specs, load_onnx
    from edgekit.specs import parse_input_shapes
    from edgekit.stages.compile import compile as compile_model

    first = Path(target_or_bundle)
    if first.is_dir():
        if model is not None:
            raise BadInputError("a bundle was given; do not also give a model", path=str(model))
        return first, None
    if model is None and (first.suffix.lower() == ".onnx" or first.is_file()):
        model, target_name = first, target or "cpu"
    elif model is not None:
        target_name = target or target_or_bundle
        if target is not None and target_or_bundle != target:
            raise BadInputError(f"two targets given ({target_or_bundle!r} and --target {target!r})", path="--target")
    else:
        raise BadInputError("not a bundle directory or an .onnx model", path=target_or_bundle,
                            hint="give BUNDLE/, MODEL.onnx --target T, or TARGET MODEL.onnx")
    if not model.exists():
        raise BadInputError("no such file", path=str(model))
    parse_budgets(budgets)
    specs = parse_input_shapes(list(shapes))
    sized_specs(input_specs(load_onnx(model, load_weights=False)), batch, shapes=specs)  # sizes before compiling
    start = time.perf_counter()
    compiled = compile_model(model, target=target_name, backend=backend or "auto", precision=precision,
                             output=work / "bundle", threads=threads, input_shapes=specs)
    return Path(compiled.bundle.path), (f"{model} for {target_name}", (time.perf_counter() - start) * 1000)


@command("bench")
def bench_cmd(
    target_or_bundle: Annotated[str, typer.Argument(metavar="TARGET_OR_BUNDLE",
                                                    help="A bundle dir, an .onnx model, or a target name.")],
    model: Annotated[Path | None, typer.Argument(metavar="[IN.onnx]", help="Model to compile for TARGET first.")
                     ] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="Target when compiling an .onnx.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help="Adapter when compiling (default auto).")
                       ] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", "-p", help="Precision when compiling (default: what the model is; int8 for a QDQ model).")
                         ] = None,
    warmup: WarmupOpt = 10,
    iters: ItersOpt = None,
    duration: DurationOpt = None,
    mode: ModeOpt = "latency",
    streams: StreamsOpt = None,
    threads: ThreadsOpt = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size for a dynamic batch dim.")] = 1,
    input_shape: InputShapeOpt = None,
    budget: BudgetOpt = None,
    baseline_bundle: BaselineBundleOpt = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", metavar="OLD.json", help="A previous `bench --json` result to compare with (a figure from "
        "another time and load: prefer --baseline-bundle).")] = None,
    max_regression: MaxRegressionOpt = None,
    ab_max_seconds: AbMaxSecondsOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Compare with a --baseline JSON from another environment or under other contention.")
                     ] = False,
    cv_threshold: Annotated[float, typer.Option("--cv-threshold", help="Spread above which a run is extended.")
                            ] = 0.10,
    emulated: EmulatedOpt = False,
    json: JsonOpt = None,
    junit: JunitOpt = None,
    plot: PlotOpt = None,
    trust_bundle: TrustBundleOpt = False,
    device: DeviceOpt = None,
    cluster: ClusterOpt = None,
    device_kind: DeviceKindOpt = None,
    lease_timeout: LeaseTimeoutOpt = None,
    run_timeout: RunTimeoutOpt = None,
) -> None:
    """Time a bundle: percentiles (or --mode throughput items/s) with provenance, cold/load times, environment;
    gate on budgets."""
    import edgekit
    from edgekit.checks.budgets import bench_junit
    from edgekit.checks.latency import check_mode

    console = out(json)
    shapes = tuple(input_shape or ())
    ab = ab_settings(baseline_bundle, max_regression, ab_max_seconds)
    check_mode(mode, streams, iters=iters, baseline_bundle=baseline_bundle,  # before any compile
               remote=device is not None or cluster is not None)
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as tmp:
        bundle, compiled = _bundle_for(target_or_bundle, model, target=target, backend=backend, precision=precision,
                                       threads=threads, batch=batch, shapes=shapes, budgets=tuple(budget or ()),
                                       work=Path(tmp))
        result = edgekit.bench(
            bundle, warmup=warmup, iters=iters, duration=duration, threads=threads, batch=batch, input_shapes=shapes,
            budgets=tuple(budget or ()), baseline=baseline, max_regression=max_regression, force=force,
            baseline_bundle=baseline_bundle, ab=ab, cv_threshold=cv_threshold, allow_emulated=emulated,
            trust=trust_bundle, mode=mode, streams=streams,
            **remote_kwargs(device, cluster, device_kind, lease_timeout, run_timeout),
        )
    if compiled is not None:
        result.compile_ms = compiled[1]
        result.notes.append(f"compiled {compiled[0]} into a temporary bundle first")
        result.bundle["path"] = None  # the temporary bundle is gone
    render_bench(result, console)
    if junit is not None:
        bench_junit(result, junit)
        console.print(f"wrote {junit}", highlight=False)
    if plot is not None:
        from edgekit.checks.plot import plot_bench

        plot_bench(result, plot)
        console.print(f"wrote {plot}", highlight=False)
    finish(result, console, json)
