"""Latency that a CI can trust: a bundle timed at the input shapes the user chose, with its environment.

The loop, statistics and stability rules live in `edgekit.timing`, the machine fingerprint in
`edgekit.environment` (both core; their names stay importable from here). The shapes fed are part
of every figure (`BenchResult.input_shapes`); a dynamic dim nobody sized is an error, never a 1.

Only the runner call is inside the timed region (inputs are prepared before the loop), the clock
is monotonic (`time.perf_counter_ns`, injectable for tests), the first (cold) inference and the
load/compile time are reported apart from the steady state, and every result carries a
fingerprint of the machine so two results are only compared when they are comparable.

A bundle whose device is not here is never timed as if it were: with an estimate in its manifest
the result is that estimate (provenance `estimated`, no loop); host emulation is timed only when
asked for and is labelled "host emulation time, not device latency". This module imports no torch
and no CLI library: the standalone runtime (`python -m edgekit.runtime`) uses it as is.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.adapters.base import GENERIC_THROUGHPUT, check_streams
from edgekit.adapters.loading import load_bundle
from edgekit.bundle import check_threads
from edgekit.checks.budgets import parse_regression
from edgekit.checks.regression import ABComparison, ABConfig, Contention, ContentionProbe, compare_runners, same_inputs
from edgekit.devices import Device, RemoteBenchOptions, run_remote
from edgekit.environment import (
    INT8_FLAGS,
    RELEVANT_FIELDS,
    THREAD_ENV,
    cpu_info,
    environment_fingerprint,
    fingerprint_differences,
    peak_rss_mb,
)
from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.onnxio import check_input_dims, random_inputs, require_static, resolve_dims
from edgekit.specs import TensorSpec, as_specs
from edgekit.timing import (
    DEFAULT_ITERS,
    DEFAULT_MAX_SECONDS,
    STATISTICS,
    BenchConfig,
    InterleavedTiming,
    LatencyStats,
    Stability,
    Timer,
    _time_once,
    hot_call,
    interleaved,
    paired_ratios,
    statistic_value,
    time_runs,
)

if TYPE_CHECKING:
    from edgekit.adapters.base import Runner
    from edgekit.artifact import Artifact
    from edgekit.checks.budgets import Budget, BudgetVerdict

SCHEMA = "edgekit.bench/1"
EMULATION_NOTE = "host emulation time, not device latency"
MODES = ("latency", "throughput")
DEFAULT_THROUGHPUT_SECONDS = 10.0  # benchmark_app's figure needs seconds of saturated requests, not 100 runs


@dataclass(frozen=True)
class ThroughputFigures:
    """Throughput mode: items/s with `streams` requests in flight, by whose machinery (`method`)."""

    items_per_s: float
    items: int
    calls: int
    seconds: float
    streams: int  # requests in flight (OpenVINO infer requests, ORT sessions, generic threads)
    method: str
    generic: bool  # the generic threaded fallback, not the backend's own async machinery
    threads_per_stream: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"items_per_s": self.items_per_s, "items": self.items, "calls": self.calls, "seconds": self.seconds,
                "streams": self.streams, "method": self.method, "generic": self.generic,
                "threads_per_stream": self.threads_per_stream, "details": dict(self.details)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThroughputFigures:
        """From a device's reply (untrusted): numbers checked finite and in range."""
        figures = cls(float(data["items_per_s"]), int(data["items"]), int(data["calls"]), float(data["seconds"]),
                      int(data["streams"]), str(data["method"]), bool(data["generic"]),
                      None if data.get("threads_per_stream") is None else int(data["threads_per_stream"]),
                      dict(data.get("details") or {}))
        numbers = (figures.items_per_s, figures.seconds, figures.items, figures.calls)
        if not all(np.isfinite(x) and x >= 0 for x in numbers) or figures.streams < 1:
            raise ValueError("throughput figures out of range")
        return figures


@dataclass
class BenchResult:
    """One bench: figures with their provenance, the environment, and the budget verdicts."""

    provenance: str  # measured | emulated | estimated
    bundle: dict[str, Any]
    config: BenchConfig
    environment: dict[str, Any]
    stats: LatencyStats | None = None
    samples_ms: list[float] = field(default_factory=list)
    stability: Stability | None = None
    cold_ms: float | None = None
    load_ms: float | None = None
    load_path: str | None = None  # how the runner loaded, when the adapter says (OpenVINO: blob imported / IR)
    compile_ms: float | None = None
    peak_rss_mb: float | None = None
    memory_method: str = ""
    estimate: dict[str, Any] | None = None  # LatencyEstimate JSON when provenance is estimated
    input_shapes: dict[str, list[int]] = field(default_factory=dict)  # the exact shapes fed (part of the figure)
    verdicts: list[BudgetVerdict] = field(default_factory=list)
    contention: Contention | None = None  # how busy the host was while timing (load, others' CPU, steal, ...)
    comparison: ABComparison | None = None  # NEW vs a baseline bundle, timed side by side (`baseline_bundle`)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    device: dict[str, Any] | None = None  # the remote device measured on (edgekit.devices); None: this host
    throughput: ThroughputFigures | None = None  # --mode throughput; the samples are then per-request latencies

    @property
    def mode(self) -> str:
        return "throughput" if self.throughput is not None else "latency"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchResult:
        """A result from its `edgekit.bench/1` JSON (a device's reply: untrusted, so checked; stats recomputed)."""
        try:
            samples = [float(x) for x in data.get("samples_ms") or []]
            if len(samples) > 10_000_000 or not all(np.isfinite(x) and x >= 0 for x in samples):
                raise ValueError("samples_ms out of range")
            config = BenchConfig(**{k: v for k, v in dict(data["config"]).items()
                                    if k in BenchConfig.__dataclass_fields__})
            stab = data.get("stability")
            stability = Stability(**{k: v for k, v in dict(stab).items() if k in Stability.__dataclass_fields__}) \
                if stab else None
            memory = dict(data.get("memory") or {})
            result = cls(
                provenance=str(data["provenance"]), bundle=dict(data["bundle"]), config=config,
                environment=dict(data["environment"]),
                stats=LatencyStats.from_samples(samples, batch=config.batch) if samples else None,
                samples_ms=samples, stability=stability, cold_ms=data.get("cold_ms"), load_ms=data.get("load_ms"),
                load_path=str(data["load_path"]) if data.get("load_path") else None,
                compile_ms=data.get("compile_ms"), peak_rss_mb=memory.get("peak_rss_mb"),
                memory_method=str(memory.get("method") or ""), estimate=data.get("estimate"),
                input_shapes={str(k): [int(d) for d in v] for k, v in dict(data.get("input_shapes") or {}).items()},
                warnings=[str(w) for w in data.get("warnings") or []], notes=[str(n) for n in data.get("notes") or []],
                created_at=str(data.get("created_at") or ""), device=data.get("device"),
                throughput=ThroughputFigures.from_json(data["throughput"]) if data.get("throughput") else None,
            )
            if result.throughput is not None and result.stats is not None:  # items/s measured, not 1000/mean
                result.stats = replace(result.stats, throughput=result.throughput.items_per_s)
            return result
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ToolchainMissingError(f"malformed bench result ({type(exc).__name__}: {exc})", path="bench JSON",
                                        hint="compare edgekit versions here and on the device") from None

    def value(self, statistic: str) -> float | None:
        """A statistic in ms (`throughput`: items/s); for an estimate, the single estimated figure stands for
        every latency statistic. In latency mode `throughput` is the sequential 1000 × batch / mean."""
        if statistic == "throughput":
            if self.throughput is not None:
                return self.throughput.items_per_s
            return float(self.stats.throughput) if self.stats is not None else None
        if self.stats is not None:
            if statistic in STATISTICS or statistic == "std":
                return float(getattr(self.stats, statistic))
            return statistic_value(self.samples_ms, statistic)
        if self.estimate is not None and statistic != "std":
            return float(self.estimate["latency_ms"])
        return None

    @property
    def status(self) -> str:
        from edgekit.checks.budgets import overall_status

        return overall_status(self.verdicts)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def exit_code(self) -> int:
        """0 every budget holds, 1 one failed, 4 a budget could not be checked here (no device) or a
        regression check could not decide (inconclusive)."""
        return {"pass": 0, "fail": 1, "inconclusive": 4, "not-run": 4}[self.status]

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({
            "schema": SCHEMA,
            "mode": self.mode,
            "created_at": self.created_at,
            "provenance": self.provenance,
            "bundle": self.bundle,
            "config": {k: getattr(self.config, k) for k in self.config.__dataclass_fields__},
            "latency_ms": self.stats.to_json() if self.stats else None,
            "samples_ms": self.samples_ms,
            "input_shapes": self.input_shapes,
            "stability": self.stability.to_json() if self.stability else None,
            "cold_ms": self.cold_ms,
            "load_ms": self.load_ms,
            "load_path": self.load_path,
            "compile_ms": self.compile_ms,
            "memory": {"peak_rss_mb": self.peak_rss_mb, "method": self.memory_method},
            "estimate": self.estimate,
            "environment": self.environment,
            "budgets": [v.to_json() for v in self.verdicts],
            "contention": self.contention.to_json() if self.contention else None,
            "comparison": self.comparison.to_json() if self.comparison else None,
            "verdict": {"status": self.status, "passed": self.passed, "exit_code": self.exit_code},
            "warnings": self.warnings,
            "notes": self.notes,
            "device": self.device,
            "throughput": self.throughput.to_json() if self.throughput else None,
        })


# ---------------------------------------------------------------------------------------------
# Timing loop


def prepare_inputs(
    runner: Runner, batch: int = 1, seed: int = 0, *, shapes: Sequence[TensorSpec | str] = (),
    argument: str = "--input-shape",
) -> dict[str, np.ndarray]:
    """Seeded inputs for the runner, outside the timed loop, at the sizes the caller chose (`sized_specs`)."""
    return random_inputs(sized_specs(runner.input_specs, batch, shapes=shapes, argument=argument), seed=seed,
                         strict=True, argument=argument)


def sized_specs(
    specs: Sequence[TensorSpec], batch: int = 1, *, shapes: Sequence[TensorSpec | str] = (),
    argument: str = "--input-shape",
) -> list[TensorSpec]:
    """The model's inputs at the sizes a figure is taken at; every dim sized, or BadInputError.

    `shapes` (`--input-shape`, a recipe's `model.inputs`) size an input's dynamic dims; without
    one, `batch` fills a dynamic first (batch) dim. Any other dynamic dim left is an error naming
    `argument` (never a silent 1: a 1×3×1×1 input times nothing a user runs).
    """
    model = {spec.name: spec for spec in specs}
    given = {spec.name: spec for spec in as_specs(list(shapes))}
    for name, spec in given.items():
        if name not in model:
            raise BadInputError(f"the model has no input {name!r}", path=argument,
                                hint="its inputs: " + " ".join(str(s) for s in model.values()))
        check_input_dims(spec, model[name], argument=argument)
    resolved: list[TensorSpec] = []
    for spec in specs:
        if spec.name in given:
            wanted = given[spec.name]
            shape = tuple(w if isinstance(w, int) else d for w, d in zip(wanted.shape, spec.shape, strict=True))
            spec = TensorSpec(spec.name, shape, spec.dtype, spec.layout)
        first = spec.shape[0] if spec.shape else None
        if first is None or (isinstance(first, int) and first >= 0):
            if first is not None and batch != 1 and first != batch:
                raise BadInputError(
                    f"input {spec.name!r} has a fixed batch of {first}; --batch {batch} needs a dynamic batch dim",
                    path="--batch", hint="recompile with a dynamic batch or use --input-shape to fix it to the batch",
                )
            resolved.append(spec)
        else:
            resolved.append(resolve_dims(spec, {str(first): batch}))
    require_static(resolved, argument=argument)
    return resolved


def feed_shapes(inputs: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """The exact shapes fed, stored with every figure (a latency means nothing without them)."""
    return {name: [int(d) for d in np.shape(value)] for name, value in inputs.items()}


def measure_runner(
    runner: Runner, config: BenchConfig, *, timer: Timer = time.perf_counter_ns,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> tuple[float, list[float], Stability]:
    """Cold first run, untimed warm-up, then timed rounds. Returns (cold_ms, samples_ms, stability).

    `inputs`: the feed (from `prepare_inputs` with the caller's shapes); by default the runner's own
    static shapes with `config.batch`.
    """
    feed = dict(inputs) if inputs is not None else prepare_inputs(runner, config.batch)
    cold = _time_once(lambda: runner.run(feed), timer)  # `run` validates names/shapes: once, here
    run = hot_call(runner)  # later runs skip that validation (edgekit's ~2 µs, not the model's)

    def call() -> Any:
        return run(feed)

    warm_total = 0.0
    for _ in range(config.warmup):
        warm_total += _time_once(call, timer)
    per_run = warm_total / config.warmup if config.warmup else cold
    samples, stability = time_runs(call, config, timer=timer, per_run_ms=per_run)
    return cold, samples, stability


# ---------------------------------------------------------------------------------------------
# Bundles: loading, deciding what can be measured here


def _bundle_summary(artifact: Artifact) -> dict[str, Any]:
    info = artifact.manifest.info
    versions: dict[str, str] = {}
    for record in artifact.manifest.history:
        versions.update(record.tool_versions or {})
    return {
        "path": str(artifact.path),
        "sha256": artifact.sha256,
        "target": info.get("target"),
        "adapter": info.get("adapter"),
        "precision": info.get("precision"),
        "precision_used": info.get("precision_used"),
        "run_provenance": info.get("run_provenance"),
        "tool_versions": versions,
    }


def _device_here(artifact: Artifact) -> tuple[bool | None, str]:
    """Ask the bundle's adapter whether its device is usable here (None = could not tell)."""
    info = artifact.manifest.info
    try:
        from edgekit.adapters.registry import get_adapter
        from edgekit.targets import get_profile

        caps = get_adapter(str(info.get("adapter"))).capabilities(get_profile(str(info.get("target"))))
    except Exception as exc:  # unknown adapter/profile here: fall back to the manifest
        return None, f"{type(exc).__name__}: {exc}"
    measured = caps.device.available and str(caps.run_provenance) == "measured"
    return measured, caps.device.reason


def _stored_estimate(artifact: Artifact) -> dict[str, Any] | None:
    """The bundle's latency estimate: `info["estimate"]`, else the adapter's `estimate` on source.onnx."""
    info = artifact.manifest.info
    est = info.get("estimate")
    if isinstance(est, Mapping) and "latency_ms" in est:
        return dict(est)
    source = artifact.path / str(info.get("source_model", "source.onnx"))
    with contextlib.suppress(Exception):
        from edgekit.adapters.registry import get_adapter
        from edgekit.artifact import to_jsonable
        from edgekit.targets import get_profile

        result = get_adapter(str(info.get("adapter"))).estimate(source, get_profile(str(info.get("target"))))
        if result is not None:
            return to_jsonable(result)
    return None


def bench(
    bundle: str | Path | Artifact,
    *,
    warmup: int = 10,
    iters: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    batch: int = 1,
    input_shapes: Sequence[TensorSpec | str] = (),
    budgets: Sequence[str | Budget] = (),
    baseline: str | Path | Mapping[str, Any] | None = None,
    max_regression: str | float | None = None,
    force: bool = False,
    baseline_bundle: str | Path | Artifact | None = None,
    ab: ABConfig | None = None,
    cv_threshold: float = 0.10,
    stability_metric: str = "robust_cv",
    max_extend_rounds: int = 4,
    allow_emulated: bool = False,
    timer: Timer = time.perf_counter_ns,
    loader: Callable[..., Runner] | None = None,
    trust: bool = False,
    device: str | Device | None = None,
    cluster: str | None = None,
    device_kind: str | None = None,
    lease_timeout: float | None = None,
    run_timeout: float | None = None,
    mode: str = "latency",
    streams: int | None = None,
) -> BenchResult:
    """Benchmark a bundle and check latency budgets: `edgekit.bench("out/bundle", budgets=["p90<=25ms"])`.

    A bundle only (an .onnx is compiled first by `edgekit bench MODEL.onnx` or `edgekit.compile`: checks
    never import stages). Budgets like "p90<=25ms" and a baseline JSON with `max_regression="10%"`
    become verdicts on the result (`.exit_code`). `input_shapes` ("x:1,3,320,320") size the bundle's
    dynamic dims; a dynamic dim (other than the batch, `batch`) with no size is BadInputError (exit 2).

    `baseline_bundle` (the recommended regression gate): the bundle and OLD are loaded together and timed
    side by side in shuffled interleaved rounds until the ratio's interval decides against `max_regression`
    (`edgekit.checks.regression`; `ab` sets the confidence, caps and seed). The verdict is pass, fail
    (regression) or inconclusive (exit 4), and `result.comparison` carries the interval, rounds, rule and
    contention. The figures of the result are then NEW's samples from those rounds.

    `device` (a name from devices.toml, or `ssh://user@host[:port]`) benches on that board over SSH;
    `cluster` (a Ray address) on a free device of `device_kind` (default: the bundle's target) in the
    farm (edgekit.devices). The figure is the device's (`result.device` says which); budgets and the
    baseline are judged here as for a local bench. A device that cannot bench is exit 4, never a figure.

    `mode="throughput"`: items/s with `streams` requests in flight for `duration` seconds (default 10),
    by the adapter's own machinery (`Runner.throughput`: OpenVINO's AsyncInferQueue with the THROUGHPUT
    hint, ONNX Runtime's parallel sessions; other adapters a generic threaded loop, labelled so); the
    samples are the per-request latencies. `result.throughput` carries the figure, `throughput>=N/s` budgets.
    """
    from edgekit.checks.budgets import check_against_baseline, evaluate_budgets, load_result_json, parse_budgets

    threads = check_threads(threads)  # bounded before any work (a huge count hangs the backend)
    check_mode(mode, streams, iters=iters, baseline_bundle=baseline_bundle, remote=device is not None or
                cluster is not None)
    config = BenchConfig(warmup=warmup, iters=iters, duration=duration, threads=threads, batch=batch,
                         cv_threshold=cv_threshold, stability_metric=stability_metric,
                         max_extend_rounds=max_extend_rounds,
                         allow_emulated=allow_emulated)
    parsed = parse_budgets(budgets)  # bad budgets fail before any work
    shapes = as_specs(list(input_shapes))
    if baseline is not None and baseline_bundle is not None:
        raise BadInputError("give either --baseline (a JSON) or --baseline-bundle, not both", path="--baseline-bundle",
                            hint="--baseline-bundle OLD/ times both side by side: the reliable one on a shared host")
    if max_regression is not None and baseline is None and baseline_bundle is None:
        raise BadInputError("--max-regression needs --baseline-bundle or --baseline", path="--max-regression")
    if baseline_bundle is not None:
        ab = _ab_config(ab, max_regression)  # bad settings fail before any work
        old_path = _bundle_dir(baseline_bundle, argument="--baseline-bundle")
    baseline_data = load_result_json(baseline) if baseline is not None else None  # a bad file fails before work
    bundle_path = _bundle_dir(bundle, argument="BUNDLE")
    loader = loader or partial(load_bundle, trust=trust)  # trust: the bundle may load native code
    if baseline_bundle is not None and (device is not None or cluster is not None):
        raise BadInputError("--baseline-bundle is not supported with --device/--cluster yet", path="--device",
                            hint="use --baseline OLD.json recorded on the same device")
    if baseline_bundle is not None and ab is not None:
        result = _bench_ab(bundle_path, old_path, config, ab, timer=timer, loader=loader, shapes=shapes)
        result.verdicts = evaluate_budgets(result, parsed)
        if result.comparison is not None:
            result.verdicts.append(result.comparison.verdict())
        return result
    if device is not None or cluster is not None:
        result = _bench_remote(bundle_path, config, shapes, trust=trust, device=device, cluster=cluster,
                               device_kind=device_kind, lease_timeout=lease_timeout, run_timeout=run_timeout)
    else:
        result = _bench_bundle(bundle_path, config, timer=timer, loader=loader, shapes=shapes,
                               streams=streams if mode == "throughput" else 0)
    result.verdicts = evaluate_budgets(result, parsed)
    if baseline_data is not None:
        label = "baseline" if isinstance(baseline, Mapping) else f"baseline {baseline}"
        latency_stats = [b.statistic for b in parsed if b.statistic != "throughput"]  # a floor, not a ceiling
        result.verdicts += check_against_baseline(
            result, baseline_data, max_regression=max_regression, statistics=latency_stats or None,
            force=force, label=label, contention=result.contention.to_json() if result.contention else None)
    return result


def check_mode(mode: Any, streams: Any, *, iters: int | None, baseline_bundle: Any, remote: bool) -> None:
    """The mode and its options, before any work: a bad combination is exit 2 naming the flag."""
    if mode not in MODES:
        raise BadInputError(f"unknown mode {mode!r}", path="--mode", hint="latency or throughput")
    if mode == "latency":
        if streams is not None:
            raise BadInputError("--streams needs --mode throughput", path="--streams")
        return
    check_streams(streams)
    if iters is not None:
        raise BadInputError("throughput mode runs for --duration seconds, not --iters", path="--iters",
                            hint=f"--duration S (default {DEFAULT_THROUGHPUT_SECONDS:g})")
    if baseline_bundle is not None:
        raise BadInputError("--baseline-bundle times latency side by side; not with --mode throughput",
                            path="--baseline-bundle", hint="gate throughput with a budget, e.g. throughput>=120/s")
    if remote:
        raise BadInputError("--mode throughput is not supported with --device/--cluster yet", path="--mode",
                            hint="run `python -m edgekit.runtime bench BUNDLE/ --mode throughput` on the device")


def measure_throughput(
    runner: Runner, feed: Mapping[str, np.ndarray], *, streams: int | None, seconds: float, batch: int,
    timer: Timer = time.perf_counter_ns,
) -> tuple[float, ThroughputFigures, list[float]]:
    """Cold first run (validated, timed alone), then the runner's throughput run.

    Returns (cold_ms, figures, per-request latencies in ms). Items per call are the feed's batch.
    """
    cold = _time_once(lambda: runner.run(feed), timer)
    run = runner.throughput(feed, streams=streams, seconds=seconds, items_per_call=batch)
    if not run.latencies_ms or run.seconds <= 0:
        raise BadInputError(f"no request finished in {seconds:g} s", path="--duration",
                            hint="give a longer --duration (one request must fit)")
    figures = ThroughputFigures(run.items_per_s, run.calls * run.items_per_call, run.calls, run.seconds,
                                run.streams, run.method, run.method == GENERIC_THROUGHPUT, run.threads_per_stream,
                                dict(run.details))
    return cold, figures, list(run.latencies_ms)


def _bundle_dir(bundle: str | Path | Artifact, *, argument: str) -> Path:
    """A bundle folder (an Artifact gives its path); anything else is BadInputError naming `argument`."""
    if hasattr(bundle, "path") and not isinstance(bundle, (str, Path)):
        bundle = bundle.path  # an Artifact (e.g. `compile(...).bundle`)
    if not isinstance(bundle, (str, Path)):
        raise BadInputError(f"a bundle must be a path, got {type(bundle).__name__}", path=argument)
    bundle_path = Path(bundle)
    if not bundle_path.is_dir():
        raise BadInputError("not a bundle directory" if bundle_path.exists() else "no such bundle", path=bundle_path,
                            hint="compile a model first (edgekit.compile / edgekit compile), or run "
                                 "`edgekit bench MODEL.onnx`, which compiles it into a temporary bundle")
    return bundle_path


def _ab_config(ab: ABConfig | None, max_regression: str | float | None) -> ABConfig:
    """The A/B settings with `max_regression` ("10%" or a fraction) folded in; a conflicting pair is refused."""
    if ab is not None and not isinstance(ab, ABConfig):
        raise BadInputError(f"ab must be an ABConfig, got {type(ab).__name__}", path="ab")
    if max_regression is None:
        return ab or ABConfig()
    fraction = parse_regression(max_regression)
    return replace(ab, max_regression=fraction) if ab is not None else ABConfig(max_regression=fraction)


def _bench_ab(
    new_path: Path, old_path: Path, config: BenchConfig, ab: ABConfig, *, timer: Timer,
    loader: Callable[..., Runner], shapes: Sequence[TensorSpec] = (),
) -> BenchResult:
    """NEW and OLD loaded together, same feed, timed side by side until the ratio's interval decides."""
    from edgekit.artifact import tool_versions
    from edgekit.bundle import verify_bundle

    new_art = verify_bundle(new_path)
    verify_bundle(old_path)  # integrity of both before anything is timed
    summary = _bundle_summary(new_art)
    env = environment_fingerprint(threads=config.threads, bundle=summary, versions=tool_versions())
    result = BenchResult(provenance="measured", bundle=summary, config=config, environment=env)
    start = timer()
    with loader(new_path, threads=config.threads) as new:
        result.load_ms = (timer() - start) / 1e6
        with loader(old_path, threads=config.threads) as old:
            for label, runner in (("NEW", new), ("OLD", old)):
                provenance = str(getattr(runner, "provenance", "measured"))
                if provenance != "measured":
                    raise ToolchainMissingError(
                        f"{label} runs as {provenance} here, not on the device: an A/B latency check needs the device",
                        path=str(new_path if label == "NEW" else old_path),
                        hint="run the A/B gate on the device (or a host of the bundle's target)")
            new_specs = sized_specs(new.input_specs, config.batch, shapes=shapes)
            old_specs = sized_specs(old.input_specs, config.batch, shapes=shapes, argument="--baseline-bundle")
            same_inputs(new_specs, old_specs, new_label=f"NEW {new_path}", old_label=f"OLD {old_path}")
            inputs = random_inputs(new_specs, seed=0, strict=True)
            result.input_shapes = feed_shapes(inputs)
            comparison, timed_new, _ = compare_runners(new, old, inputs, ab, new_label=str(new_path),
                                                       old_label=str(old_path), clock=timer)
    result.comparison, result.contention = comparison, comparison.contention
    result.cold_ms = timed_new.cold_ms
    result.samples_ms = timed_new.samples
    result.stats = LatencyStats.from_samples(result.samples_ms, batch=config.batch)
    cv = getattr(result.stats, config.stability_metric)
    rounds = len(timed_new.rounds)
    result.stability = Stability(cv, config.cv_threshold, cv <= config.cv_threshold, rounds, ab.max_rounds,
                                 len(result.samples_ms), "" if cv <= config.cv_threshold else
                                 f"noisy run: {config.stability_metric} {cv:.1%} > {config.cv_threshold:.0%} "
                                 "within the rounds (the paired ratios absorb what hits both bundles)",
                                 config.stability_metric)
    result.notes.append(f"timed side by side with OLD {old_path} ({comparison.interval.rounds} shuffled interleaved "
                        f"rounds, seed {comparison.seed}); figures are NEW's samples from those rounds")
    if result.stability.warning:
        result.warnings.append(result.stability.warning)
    if config.threads != 1:
        result.warnings.append(
            f"A/B with threads {config.threads or 'backend default'}: two multi-thread sessions in one process "
            "interfere (their pools spin after each run); on a shared host pass --threads 1 (measured: one false "
            "alarm in 10 with a CPU hog at the default 2 threads, none in 50 at 1 thread)")
    result.peak_rss_mb, result.memory_method = peak_rss_mb()
    return result


def _bench_bundle(
    bundle_path: Path, config: BenchConfig, *, timer: Timer, loader: Callable[..., Runner],
    shapes: Sequence[TensorSpec] = (), streams: int | None = 0,
) -> BenchResult:
    """Load, then time: latency (`streams` 0) or throughput (`streams` None: the backend's choice, or N)."""
    from edgekit.artifact import tool_versions
    from edgekit.bundle import verify_bundle

    artifact = verify_bundle(bundle_path)
    summary = _bundle_summary(artifact)
    env = environment_fingerprint(threads=config.threads, bundle=summary, versions=tool_versions())
    result = BenchResult(provenance="measured", bundle=summary, config=config, environment=env)
    device, reason = _device_here(artifact)
    if device is None:
        device = summary["run_provenance"] in (None, "measured")
    estimate = _stored_estimate(artifact)

    def from_estimate(why: str) -> BenchResult:
        result.provenance = "estimated"
        result.estimate = dict(estimate or {})
        result.notes.append(f"no timing loop: {why}; the figure is the bundle's estimate (provenance estimated)")
        result.peak_rss_mb, result.memory_method = None, "not measured (estimate)"
        return result

    if not device and estimate is not None:
        return from_estimate(f"the {summary['target']} device is not available here ({reason or 'no device'})")
    start = timer()
    try:
        runner = loader(bundle_path, threads=config.threads)
    except ToolchainMissingError as exc:
        if estimate is not None:
            return from_estimate(f"the bundle cannot run here ({exc.message})")
        raise
    load_ms = (timer() - start) / 1e6
    with runner:
        provenance = str(getattr(runner, "provenance", "measured"))
        if provenance != "measured":
            if estimate is not None:
                return from_estimate(f"the runner here is {provenance}, not the device")
            if not config.allow_emulated:
                raise ToolchainMissingError(
                    f"the {summary['target']} device is not available here and the bundle has no estimate",
                    path=str(bundle_path),
                    hint="bench on the device (python -m edgekit.runtime bench BUNDLE/), or pass --emulated "
                         f"to time host emulation ({EMULATION_NOTE})",
                )
            result.provenance = provenance
            result.warnings.append(f"{provenance} run: {EMULATION_NOTE}")
        result.load_ms = load_ms
        result.load_path = getattr(runner, "load_path", None)
        inputs = prepare_inputs(runner, config.batch, shapes=shapes)
        result.input_shapes = feed_shapes(inputs)
        probe = ContentionProbe().start()
        if streams == 0:
            result.cold_ms, samples, result.stability = measure_runner(runner, config, timer=timer, inputs=inputs)
        else:
            seconds = config.duration or DEFAULT_THROUGHPUT_SECONDS
            result.cold_ms, result.throughput, samples = measure_throughput(
                runner, inputs, streams=streams, seconds=seconds, batch=config.batch, timer=timer)
        result.contention = probe.stop()
    result.samples_ms = samples
    result.stats = LatencyStats.from_samples(samples, batch=config.batch)
    if result.throughput is not None:  # per-request latencies overlap: items/s is the run's, not 1000/mean
        result.stats = replace(result.stats, throughput=result.throughput.items_per_s)
        result.notes.append(f"throughput mode: {result.throughput.method}; latency percentiles are per request "
                            "with the others in flight")
        if result.throughput.generic:
            result.warnings.append("throughput by the generic threaded fallback, not the backend's own async "
                                   "machinery: a lower bound for this backend")
    if result.stability is not None and result.stability.warning:
        result.warnings.append(result.stability.warning)
    result.peak_rss_mb, result.memory_method = peak_rss_mb()
    return result


def _bench_remote(
    bundle_path: Path, config: BenchConfig, shapes: Sequence[TensorSpec], *, trust: bool, device: str | Device | None,
    cluster: str | None, device_kind: str | None, lease_timeout: float | None, run_timeout: float | None,
) -> BenchResult:
    """The device's own figures (edgekit.devices), labelled with the device; budgets are judged by the caller."""
    sizes = tuple(f"{spec.name}:{','.join(map(str, spec.shape))}" for spec in shapes)  # the runtime's --input-shape
    options = RemoteBenchOptions(warmup=config.warmup, iters=config.iters, duration=config.duration,
                                 threads=config.threads, batch=config.batch, input_shapes=sizes,
                                 cv_threshold=config.cv_threshold, stability_metric=config.stability_metric,
                                 max_extend_rounds=config.max_extend_rounds, allow_emulated=config.allow_emulated,
                                 trust=trust)
    run = run_remote(bundle_path, options, device=device, cluster=cluster, kind=device_kind,
                     lease_timeout=lease_timeout, run_timeout=run_timeout)
    result = BenchResult.from_json(run.payload)
    result.device = {**run.device, "contention": run.payload.get("contention")}  # how busy the device was
    result.bundle["device_path"], result.bundle["path"] = result.bundle.get("path"), str(bundle_path)
    # a device figure is never compared with a host figure (environment.RELEVANT_FIELDS has "device")
    result.environment["device"] = f"{run.device.get('transport')}:{run.device.get('target')}"
    return result


__all__ = [  # timing and environment live in the core layer now; their names stay importable from here
    "DEFAULT_ITERS", "DEFAULT_MAX_SECONDS", "EMULATION_NOTE", "INT8_FLAGS", "RELEVANT_FIELDS", "SCHEMA", "STATISTICS",
    "THREAD_ENV", "BenchConfig", "BenchResult", "InterleavedTiming", "LatencyStats", "Stability", "ThroughputFigures",
    "Timer", "bench", "check_mode", "cpu_info", "environment_fingerprint", "feed_shapes", "fingerprint_differences",
    "interleaved", "measure_runner", "measure_throughput", "paired_ratios", "peak_rss_mb", "prepare_inputs",
    "sized_specs", "statistic_value", "time_runs",
]
