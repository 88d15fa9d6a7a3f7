"""`edgekit gate BUNDLE`: re-check the budgets a bundle stores, measured here and now.

Latency budgets are benched (`edgekit.checks.latency.bench`); accuracy budgets are re-run against
the FP32 reference the bundle carries (`edgekit.checks.verify`). What cannot be measured here is
`not-run` (exit 4), never a pass. Recipes are gated by `edgekit.pipeline.gate`, which runs the
recipe and then gates each bundle with this.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.adapters.base import Runner
from edgekit.adapters.loading import load_bundle
from edgekit.artifact import to_jsonable
from edgekit.bundle import check_threads, verify_bundle
from edgekit.checks.budgets import (
    ACCURACY_KEYS,
    BudgetVerdict,
    check_accuracy_threshold,
    overall_status,
    parse_budgets,
)
from edgekit.checks.latency import BenchResult, bench
from edgekit.checks.metrics import Metric, get_metric, parse_metric_options
from edgekit.checks.regression import ABConfig
from edgekit.checks.verify import read_reference, rerun_stored
from edgekit.devices import Device
from edgekit.errors import BadInputError, ToolchainMissingError


@dataclass
class GateResult:
    """The verdicts of `gate`: latency (from a bench) and accuracy (re-run or stored)."""

    bundle: str
    budgets: dict[str, Any]
    verdicts: list[BudgetVerdict] = field(default_factory=list)
    bench: BenchResult | None = None
    accuracy_source: str = ""
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failures that are not a budget (a recipe target failed)
    failure_codes: list[int] = field(default_factory=list)  # their exit codes (1 failed, 3 unsupported, 4 missing)

    @property
    def status(self) -> str:
        """fail · unsupported (a required target cannot be built for) · not-run · pass; not-run never passes."""
        codes = set(self.failure_codes) or ({1} if self.failures else set())
        verdicts = overall_status(self.verdicts)
        if 1 in codes or verdicts == "fail":
            return "fail"
        if 3 in codes:
            return "unsupported"
        if verdicts == "inconclusive":
            return "inconclusive"
        return "not-run" if codes or verdicts != "pass" else "pass"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "unsupported": 3, "inconclusive": 4, "not-run": 4}[self.status]

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({
            "schema": "edgekit.gate/1", "bundle": self.bundle, "stored_budgets": self.budgets,
            "accuracy_source": self.accuracy_source,
            "budgets": [v.to_json() for v in self.verdicts],
            "bench": self.bench.to_json() if self.bench else None,
            "verdict": {"status": self.status, "passed": self.passed, "exit_code": self.exit_code},
            "notes": self.notes,
            "failures": self.failures,
        })


def gate(
    path: str | Path,
    *,
    warmup: int = 10,
    iters: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    allow_emulated: bool = False,
    trust: bool = False,
    timer: Callable[[], int] | None = None,
    loader: Callable[..., Runner] | None = None,
    baseline_bundle: str | Path | None = None,
    max_regression: str | float | None = None,
    ab: ABConfig | None = None,
    device: str | Device | None = None,
    cluster: str | None = None,
    device_kind: str | None = None,
    lease_timeout: float | None = None,
    run_timeout: float | None = None,
) -> GateResult:
    """Re-check the accuracy and latency budgets stored with a bundle, measured here and now.

    Latency budgets (`info["budgets"]["latency"]`) are benched here (or checked on the bundle's
    estimate for an NPU without its device). Accuracy thresholds are re-run against the FP32
    reference the bundle carries (`reference/`: the eval inputs the budget was set on and the FP32
    model's outputs on them, see `edgekit.checks.verify`); a bundle without them, or one whose
    runner cannot run here, gets `not-run` (exit 4), never a pass. Recipes: `edgekit.pipeline.gate`.
    `baseline_bundle`: also gate regressions against OLD timed side by side (`bench(baseline_bundle=...)`:
    pass, fail or inconclusive, exit 4); the bundle then needs no stored budgets.
    `device`/`cluster`: latency is measured on that device (`bench(device=...)`); accuracy is re-run here.
    """
    path = Path(path)
    loader = loader or (lambda bundle, **kw: load_bundle(bundle, trust=trust, **kw))
    artifact = verify_bundle(path)  # integrity first: nothing is measured on a tampered bundle
    info = artifact.manifest.info
    stored = info.get("budgets")
    if baseline_bundle is None and (not isinstance(stored, Mapping)
                                    or not (stored.get("latency") or stored.get("accuracy"))):
        raise BadInputError("bundle stores no budgets (info.budgets)", path=path,
                            hint="build it from a recipe with budgets, or use `edgekit bench BUNDLE --budget ...`")
    stored = stored if isinstance(stored, Mapping) else {}
    manifest_file = f"{path / 'manifest.json'}: info.budgets"
    for key, kind, what in (("latency", list, "a list of budgets"), ("accuracy", Mapping, "a table of thresholds")):
        if stored.get(key) is not None and not isinstance(stored[key], kind):  # a manifest is untrusted data
            raise BadInputError(f"must be {what}, got {type(stored[key]).__name__}", path=f"{manifest_file}.{key}",
                                hint="rebuild the bundle from its recipe")
    latency = parse_budgets(list(stored.get("latency") or []), argument=f"{manifest_file}.latency")
    accuracy = {k: check_accuracy_threshold(k, v, argument=f"{manifest_file}.accuracy.{k}")
                for k, v in dict(stored.get("accuracy") or {}).items()
                if v is not None and k not in ("metric", "metric_options")}
    metric_name = dict(stored.get("accuracy") or {}).get("metric")
    options = dict(stored.get("accuracy") or {}).get("metric_options") or []
    metric = get_metric(str(metric_name), parse_metric_options(
        [str(o) for o in options] if isinstance(options, list) else [str(options)],
        argument=f"{manifest_file}.accuracy.metric_options"), allow_code=trust,
        argument=f"{manifest_file}.accuracy.metric") if metric_name is not None else None
    result = GateResult(str(path), dict(stored))
    if threads is None and info.get("threads") is not None:  # bounded: a manifest's number is untrusted
        threads = check_threads(info["threads"], source=f"{path / 'manifest.json'}: info.threads")
        result.notes.append(f"threads {threads} (from the bundle manifest)")
    timer = timer or time.perf_counter_ns
    if latency or baseline_bundle is not None:
        result.bench = bench(path, warmup=warmup, iters=iters, duration=duration, threads=threads,
                             budgets=latency, allow_emulated=allow_emulated, timer=timer, loader=loader,
                             baseline_bundle=baseline_bundle, max_regression=max_regression, ab=ab,
                             device=device, cluster=cluster, device_kind=device_kind, lease_timeout=lease_timeout,
                             run_timeout=run_timeout)
        for v in result.bench.verdicts:
            if v.kind == "latency":
                v.source = "manifest"
        result.verdicts += result.bench.verdicts
    if accuracy and (device is not None or cluster is not None):
        result.notes.append("latency measured on the device; accuracy re-run on this host")
    if accuracy:
        result.verdicts += _accuracy_verdicts(artifact.path, info, accuracy, result, loader=loader, threads=threads,
                                              metric=metric)
    return result


def _accuracy_verdicts(
    bundle: Path, info: Mapping[str, Any], thresholds: Mapping[str, float], result: GateResult, *,
    loader: Callable[..., Runner], threads: int | None, metric: Metric | None = None,
) -> list[BudgetVerdict]:
    """Accuracy budgets re-run on the bundle's stored eval data against its stored FP32 outputs."""
    values: dict[str, float | None] = {}
    provenance, where = "not-run", ""
    stored = read_reference(bundle, info)
    if stored is None:
        where = "the bundle carries no FP32 reference data (build it with `edgekit run` to gate accuracy)"
    else:
        try:
            runner = loader(bundle, threads=threads)
        except ToolchainMissingError as exc:
            where = f"accuracy not re-run: {exc.message}"
        else:
            with runner:
                figures = rerun_stored(runner, stored, metric)
            provenance = figures.provenance
            drop = figures.metric.drop if metric is not None and figures.metric is not None else figures.drop_points
            values = {"min_cosine": figures.cosine, "min_sqnr_db": figures.sqnr_db, "max_drop": drop}
            if figures.dead:  # a model that no longer works fails whatever the thresholds say
                values = dict.fromkeys(values, None)
                result.verdicts.append(BudgetVerdict("model works", "accuracy", "dead", "==", None, None, "", "fail",
                                                     provenance, "manifest", "; ".join(figures.dead)))
            data = str(stored.info.get("eval") or "stored eval data")
            where = f"re-run vs FP32 outputs on {figures.samples} stored eval sample(s) ({data})"
            if "max_drop" in thresholds and drop is None:
                result.notes.append("max_drop not checkable: the stored eval data has no labels")
    result.accuracy_source = where
    verdicts = []
    for key, limit in thresholds.items():
        value = values.get(key)
        op = ACCURACY_KEYS[key]
        unit = {"min_sqnr_db": "dB", "max_drop": "points"}.get(key, "")
        if value is None:
            status = "not-run"
        else:
            status = "pass" if (value >= limit if op == ">=" else value <= limit) else "fail"
        verdicts.append(BudgetVerdict(f"{key}={limit:g}", "accuracy", key.removeprefix("min_").removeprefix("max_"),
                                      op, float(limit), value, unit, status,
                                      provenance if value is not None else "not-run", "manifest", where))
    return verdicts
