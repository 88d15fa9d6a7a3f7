"""Budgets a CI can gate on: latency expressions, baselines, accuracy thresholds, JSON and JUnit.

A budget is plain text (`p90<=25ms`) so it fits a command line, a recipe and a manifest alike.
Every verdict carries the measured value, the margin to the limit and the provenance of the
figure (measured / emulated / estimated), so an NPU estimate can gate a build but never passes
for a measurement. `gate` re-checks the budgets a bundle stores in `info["budgets"]`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInputError, ToolchainMissingError

if TYPE_CHECKING:
    from edgekit.adapters.base import Runner
    from edgekit.checks.latency import BenchResult

LATENCY_STATISTICS = ("p50", "p90", "p95", "p99", "mean", "max", "min")  # also: median, std, any pNN
_STAT_RE = re.compile(r"^(p\d{1,2}(\.\d+)?|mean|median|min|max|std)$")
_UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1000.0}
_BUDGET_RE = re.compile(
    r"^\s*(?P<stat>[a-z0-9.]+)\s*(?P<op><=|<)\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|us|µs|s)\s*$"
)
ACCURACY_KEYS = {"min_cosine": ">=", "min_sqnr_db": ">=", "max_drop": "<="}
BENCH_SCHEMA_FILE = Path(__file__).with_name("bench_schema.json")
DEFAULT_MAX_REGRESSION = 0.10


@dataclass(frozen=True)
class Budget:
    """`statistic op limit`, the limit in milliseconds; `text` is what the user wrote."""

    statistic: str
    op: str
    limit_ms: float
    text: str

    def holds(self, value_ms: float) -> bool:
        return value_ms <= self.limit_ms if self.op == "<=" else value_ms < self.limit_ms


def parse_budget(text: str | Budget) -> Budget:
    """Parse `p90<=25ms` (statistics p50/p90/p95/p99/mean/max/min, units ms/us/s, ops <= and <)."""
    if isinstance(text, Budget):
        return text
    match = _BUDGET_RE.match(str(text))
    if not match:
        raise BadInputError(f"cannot parse budget {text!r}", path="--budget",
                            hint="write STAT<=VALUEUNIT, e.g. p90<=25ms, mean<800us (STAT: "
                                 f"{'/'.join(LATENCY_STATISTICS)}; units ms/us/s)")
    stat = match["stat"]
    if not _STAT_RE.match(stat) or stat in ("p0",):
        raise BadInputError(f"unknown statistic {stat!r} in budget {text!r}", path="--budget",
                            hint=f"one of {', '.join(LATENCY_STATISTICS)}, median, std or any pNN")
    stat = "p50" if stat == "median" else stat
    limit = float(match["value"]) * _UNITS_MS[match["unit"]]
    if limit <= 0:
        raise BadInputError(f"budget {text!r} must be positive", path="--budget")
    return Budget(stat, match["op"], limit, " ".join(str(text).split()).replace(" ", ""))


def parse_budgets(texts: Sequence[str | Budget] | str | None) -> list[Budget]:
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    return [parse_budget(t) for t in texts]


def parse_regression(value: str | float | None) -> float:
    """`10%` -> 0.10; a float from Python is already a fraction."""
    if value is None:
        return DEFAULT_MAX_REGRESSION
    if isinstance(value, (int, float)):
        fraction = float(value)
    else:
        text = str(value).strip()
        if not text.endswith("%"):
            raise BadInputError(f"cannot parse {value!r}", path="--max-regression", hint="write a percentage, e.g. 10%")
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            raise BadInputError(f"cannot parse {value!r}", path="--max-regression",
                                hint="write a percentage, e.g. 10%") from None
    if fraction < 0:
        raise BadInputError("must not be negative", path="--max-regression")
    return fraction


@dataclass
class BudgetVerdict:
    """One check: what was required, what was found, the margin and where the figure came from.

    `margin` is the headroom in the budget's unit (positive = room to spare, negative = over).
    `status` is pass, fail or not-run (could not be checked here; `note` says why).
    """

    name: str
    kind: str  # latency | regression | accuracy
    statistic: str
    op: str
    limit: float | None
    measured: float | None
    unit: str
    status: str
    provenance: str
    source: str  # where the limit came from: --budget, baseline FILE, manifest
    note: str = ""

    @property
    def margin(self) -> float | None:
        if self.limit is None or self.measured is None:
            return None
        return self.measured - self.limit if self.op == ">=" else self.limit - self.measured

    @property
    def margin_pct(self) -> float | None:
        margin = self.margin
        if margin is None or not self.limit:
            return None
        return 100.0 * margin / abs(self.limit)

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({
            "name": self.name, "kind": self.kind, "statistic": self.statistic, "op": self.op,
            "limit": self.limit, "measured": self.measured, "unit": self.unit, "margin": self.margin,
            "margin_pct": self.margin_pct, "status": self.status, "provenance": self.provenance,
            "source": self.source, "note": self.note,
        })


def _verdict_note(provenance: str) -> str:
    if provenance == "estimated":
        return "estimated by a cost model, not measured on the device"
    if provenance == "emulated":
        return "host emulation time, not device latency"
    return ""


def overall_status(verdicts: Sequence[BudgetVerdict]) -> str:
    """fail if any budget failed, else not-run if any could not be checked here, else pass."""
    statuses = {v.status for v in verdicts}
    if "fail" in statuses:
        return "fail"
    return "not-run" if "not-run" in statuses else "pass"


def evaluate_budgets(
    result: BenchResult, budgets: Sequence[Budget], *, source: str = "--budget"
) -> list[BudgetVerdict]:
    """Each latency budget against the bench result. Emulated time never passes a device budget."""
    verdicts = []
    for budget in budgets:
        measured = result.value(budget.statistic)
        provenance = result.provenance
        if measured is None or provenance == "emulated":
            status = "not-run"
            note = "no device latency here (" + (_verdict_note(provenance) or "nothing measured") + ")"
        else:
            status = "pass" if budget.holds(measured) else "fail"
            note = _verdict_note(provenance)
            if provenance == "estimated" and budget.statistic not in ("mean", "p50"):
                note += f"; the single estimated figure stands in for {budget.statistic}"
        verdicts.append(BudgetVerdict(budget.text, "latency", budget.statistic, budget.op, budget.limit_ms,
                                      measured, "ms", status, provenance, source, note))
    return verdicts


# ---------------------------------------------------------------------------------------------
# Baselines


def load_result_json(source: str | Path | Mapping[str, Any], *, argument: str = "--baseline") -> dict[str, Any]:
    """A bench JSON (schema edgekit.bench/1) from a file or a dict."""
    if isinstance(source, Mapping):
        data = dict(source)
        where: str = argument
    else:
        where = str(source)
        try:
            data = json.loads(Path(source).read_text())
        except FileNotFoundError:
            raise BadInputError("no such file", path=where) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"not valid JSON ({exc})", path=where) from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("edgekit.bench/"):
        raise BadInputError("not an edgekit bench result", path=where,
                            hint="record one with `edgekit bench ... --json baseline.json`")
    if schema != "edgekit.bench/1":
        raise BadInputError(f"bench schema {schema!r} is not supported by this edgekit", path=where,
                            hint="upgrade edgekit or re-record the baseline")
    return data


def _baseline_value(data: Mapping[str, Any], statistic: str) -> float | None:
    from edgekit.checks.latency import statistic_value

    stats = data.get("latency_ms")
    if isinstance(stats, Mapping) and stats.get(statistic) is not None:
        return float(stats[statistic])
    samples = data.get("samples_ms") or []
    if samples:
        return statistic_value(samples, statistic)
    estimate = data.get("estimate")
    if isinstance(estimate, Mapping) and estimate.get("latency_ms") is not None and statistic != "std":
        return float(estimate["latency_ms"])
    return None


def check_against_baseline(
    result: BenchResult,
    baseline: str | Path | Mapping[str, Any],
    *,
    max_regression: str | float | None = None,
    statistics: Sequence[str] | None = None,
    force: bool = False,
    label: str | None = None,
) -> list[BudgetVerdict]:
    """Compare the same statistic(s) with a recorded result; refuse incomparable environments.

    A regression is `current > baseline * (1 + max_regression)`. Fingerprints that differ in a
    relevant field (CPU, flags, threads, target, adapter, ...) or a different provenance make the
    comparison meaningless: BadInputError (exit 2) unless `force`, and then the verdict says so.
    """
    from edgekit.checks.latency import fingerprint_differences

    data = load_result_json(baseline)
    fraction = parse_regression(max_regression)
    where = label or ("baseline" if isinstance(baseline, Mapping) else f"baseline {baseline}")
    diffs = fingerprint_differences(data.get("environment", {}), result.environment)
    if data.get("config", {}).get("batch", 1) != result.config.batch:
        diffs["batch"] = (data.get("config", {}).get("batch", 1), result.config.batch)
    if data.get("provenance") != result.provenance:
        diffs["provenance"] = (data.get("provenance"), result.provenance)
    notes = ""
    if diffs:
        text = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in ((k, *v) for k, v in diffs.items()))
        if not force:
            raise BadInputError(f"baseline was recorded in a different environment ({text})",
                                path=where.removeprefix("baseline ") if where != "baseline" else "--baseline",
                                hint="re-record the baseline here, or pass --force to compare anyway")
        notes = f"forced despite a different environment ({text})"
    verdicts = []
    for statistic in dict.fromkeys(statistics or ("p50",)):
        before = _baseline_value(data, statistic)
        now = result.value(statistic)
        name = f"{statistic}<=baseline+{fraction:.0%}"
        provenance = result.provenance
        if before is None or now is None or provenance == "emulated":
            verdicts.append(BudgetVerdict(name, "regression", statistic, "<=", None, now, "ms", "not-run",
                                          provenance, where, "nothing comparable in the baseline or here"))
            continue
        limit = before * (1 + fraction)
        change = (now - before) / before * 100 if before else 0.0
        note = f"baseline {before:.4g} ms, change {change:+.1f}%"
        note = "; ".join(x for x in (note, _verdict_note(provenance), notes) if x)
        verdicts.append(BudgetVerdict(name, "regression", statistic, "<=", limit, now, "ms",
                                      "pass" if now <= limit else "fail", provenance, where, note))
    return verdicts


# ---------------------------------------------------------------------------------------------
# JSON schema and JUnit


def bench_schema() -> dict[str, Any]:
    """The versioned JSON schema of a bench result (`edgekit.bench/1`), shipped in the package."""
    return json.loads(BENCH_SCHEMA_FILE.read_text())


def validate_bench_json(data: Mapping[str, Any]) -> None:
    """Validate against the shipped schema (needs `jsonschema`); raises BadInputError on a mismatch."""
    try:
        import jsonschema
    except ImportError:
        raise ToolchainMissingError("jsonschema is not installed", hint="pip install jsonschema") from None
    try:
        jsonschema.validate(dict(data), bench_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise BadInputError(f"bench JSON does not match {data.get('schema')}: {exc.message} at {where}") from None


def junit_xml(
    verdicts: Sequence[BudgetVerdict],
    *,
    suite: str = "edgekit.bench",
    classname: str = "edgekit",
    properties: Mapping[str, Any] | None = None,
    system_out: str = "",
    timestamp: str | None = None,
) -> str:
    """JUnit XML: one testcase per budget; a failed budget has a <failure>, a not-run one <skipped>."""
    import xml.etree.ElementTree as ET

    failures = sum(v.status == "fail" for v in verdicts)
    skipped = sum(v.status == "not-run" for v in verdicts)
    counts = {"tests": str(len(verdicts)), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    root = ET.Element("testsuites", {"name": "edgekit", **counts, "time": "0"})
    attrs = {"name": suite, **counts, "time": "0"}
    if timestamp:
        attrs["timestamp"] = timestamp
    ts = ET.SubElement(root, "testsuite", attrs)
    if properties:
        props = ET.SubElement(ts, "properties")
        for key, value in properties.items():
            ET.SubElement(props, "property", {"name": str(key), "value": str(value)})
    for v in verdicts:
        case = ET.SubElement(ts, "testcase", {"classname": classname, "name": f"{v.kind} {v.name}", "time": "0"})
        unit = f" {v.unit}" if v.unit else ""
        summary = (f"{v.statistic} = {_fmt(v.measured)}{unit} ({v.provenance}), limit {v.op} {_fmt(v.limit)}{unit}, "
                   f"margin {_fmt(v.margin)}{unit}; source {v.source}")
        if v.note:
            summary += f"; {v.note}"
        if v.status == "fail":
            failure = ET.SubElement(case, "failure", {"message": summary, "type": f"{v.kind.capitalize()}BudgetFailed"})
            failure.text = summary
        elif v.status == "not-run":
            ET.SubElement(case, "skipped", {"message": summary})
        ET.SubElement(case, "system-out").text = summary
    if system_out:
        ET.SubElement(ts, "system-out").text = system_out
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, verdicts: Sequence[BudgetVerdict], **kw: Any) -> Path:
    from edgekit.artifact import write_text_atomic

    return write_text_atomic(path, junit_xml(verdicts, **kw))


def bench_junit(result: BenchResult, path: str | Path) -> Path:
    """JUnit for a bench result, with the environment as suite properties."""
    env = result.environment
    props = {"provenance": result.provenance, "target": env.get("target"), "adapter": env.get("adapter"),
             "cpu_model": env.get("cpu_model"), "threads": env.get("threads"),
             "bundle_sha256": env.get("bundle_sha256"), "edgekit": env.get("edgekit")}
    classname = f"edgekit.bench.{env.get('target') or 'model'}.{env.get('adapter') or 'bundle'}"
    return write_junit(path, result.verdicts, suite="edgekit.bench", classname=classname, properties=props,
                       system_out="\n".join(result.warnings + result.notes), timestamp=result.created_at)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


# ---------------------------------------------------------------------------------------------
# Gate: re-check a bundle's stored budgets


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

    @property
    def status(self) -> str:
        return "fail" if self.failures else overall_status(self.verdicts)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": 1, "not-run": 4}[self.status]

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({
            "schema": "edgekit.gate/1", "bundle": self.bundle, "stored_budgets": self.budgets,
            "accuracy_source": self.accuracy_source,
            "budgets": [v.to_json() for v in self.verdicts],
            "bench": self.bench.to_json() if self.bench else None,
            "verdict": {"status": self.status, "passed": self.passed, "exit_code": self.exit_code},
            "notes": self.notes,
            "failures": self.failures,
        })


def _find_metric(obj: Any, names: Sequence[str], where: str = "") -> tuple[float, str] | None:
    """First numeric value under any of `names` in a nested dict (depth-first), with its path."""
    if isinstance(obj, Mapping):
        for name in names:
            value = obj.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value), f"{where}{name}"
            if isinstance(value, str) and value in ("inf", "-inf"):
                return float(value), f"{where}{name}"
        for key, value in obj.items():
            found = _find_metric(value, names, f"{where}{key}.")
            if found:
                return found
    return None


def _accuracy_rerun(
    bundle: Path, manifest_info: Mapping[str, Any], runner: Runner, samples: int, seed: int
) -> tuple[float, float, str]:
    """Run the bundle and its source.onnx on the same seeded inputs: worst cosine and SQNR."""
    from edgekit.checks.numerics import cosine_similarity, sqnr_db
    from edgekit.onnxio import ort_session, random_inputs

    source = bundle / str(manifest_info.get("source_model", "source.onnx"))
    if not source.is_file():
        raise BadInputError("bundle has no source model to compare with", path=source)
    reference = ort_session(source)
    names = [o.name for o in reference.get_outputs()]
    worst_cos, worst_sqnr = 1.0, float("inf")
    for i in range(samples):
        feeds = random_inputs(runner.input_specs, seed=seed + i)
        ref = dict(zip(names, reference.run(names, feeds), strict=True))
        got = runner.run(feeds)
        for name, ref_out in ref.items():
            if name not in got:
                continue
            worst_cos = min(worst_cos, cosine_similarity(ref_out, got[name]))
            worst_sqnr = min(worst_sqnr, sqnr_db(ref_out, got[name]))
    return worst_cos, worst_sqnr, f"re-run: bundle vs {source.name} on {samples} seeded random inputs (seed {seed})"


def gate(
    path: str | Path,
    *,
    warmup: int = 10,
    iters: int | None = None,
    duration: float | None = None,
    threads: int | None = None,
    samples: int = 4,
    seed: int = 0,
    allow_emulated: bool = False,
    output: str | Path | None = None,
    trust_code: bool = False,
    timer: Callable[[], int] | None = None,
    loader: Callable[..., Runner] | None = None,
) -> GateResult:
    """Re-check the accuracy and latency budgets stored with a bundle (or a recipe, via the pipeline).

    Latency budgets (`info["budgets"]["latency"]`) are benched here (or checked on the bundle's
    estimate for an NPU without its device). Accuracy thresholds (`min_cosine`, `min_sqnr_db`)
    are re-run against the bundle's source.onnx when the bundle runs here, else read from the
    metrics stored at compile time; `max_drop` needs labelled data, so it uses the stored drop.
    A recipe (.toml) is run through the cached pipeline (`output`, `trust_code` as for `edgekit run`):
    with nothing changed, only the budgets are re-checked.
    """
    import importlib
    import importlib.util
    import time

    from edgekit.artifact import verify_bundle
    from edgekit.checks.latency import bench, default_loader

    path = Path(path)
    if path.suffix.lower() == ".toml":
        if importlib.util.find_spec("edgekit.pipeline") is None:
            raise ToolchainMissingError("gating a recipe needs the recipe pipeline (edgekit.pipeline), "
                                        "which this edgekit does not have", path=path,
                                        hint="run the recipe, then gate the bundle it wrote: edgekit gate BUNDLE/")
        return _gate_recipe(path, output=output, trust_code=trust_code, warmup=warmup, iters=iters,
                            duration=duration, threads=threads)
    artifact = verify_bundle(path)
    info = artifact.manifest.info
    stored = info.get("budgets")
    if not isinstance(stored, Mapping) or not (stored.get("latency") or stored.get("accuracy")):
        raise BadInputError("bundle stores no budgets (info.budgets)", path=path,
                            hint="compile it from a recipe with budgets, or use `edgekit bench BUNDLE --budget ...`")
    latency = parse_budgets(list(stored.get("latency") or []))
    accuracy = {k: v for k, v in dict(stored.get("accuracy") or {}).items() if v is not None}
    unknown = sorted(set(accuracy) - set(ACCURACY_KEYS))
    if unknown:
        raise BadInputError(f"unknown accuracy budget(s) {unknown}", path=path / "manifest.json",
                            hint=f"known: {', '.join(ACCURACY_KEYS)}")
    result = GateResult(str(path), dict(stored))
    if threads is None and isinstance(info.get("threads"), int):
        threads = int(info["threads"])  # re-check under the conditions the bundle was built and judged with
        result.notes.append(f"threads {threads} (from the bundle manifest)")
    timer = timer or time.perf_counter_ns
    loader = loader or default_loader
    if latency:
        result.bench = bench(path, warmup=warmup, iters=iters, duration=duration, threads=threads,
                             budgets=latency, allow_emulated=allow_emulated, timer=timer, loader=loader)
        for v in result.bench.verdicts:
            v.source = "manifest"
        result.verdicts += result.bench.verdicts
    if accuracy:
        result.verdicts += _accuracy_verdicts(artifact.path, info, artifact.manifest.metrics, accuracy, result,
                                              loader=loader, threads=threads, samples=samples, seed=seed)
    return result


def _gate_recipe(path: Path, *, output: str | Path | None, trust_code: bool, **bench_kw: Any) -> GateResult:
    """A recipe is gated by the pipeline: run it (cached), then `gate` each bundle it wrote."""
    import importlib

    pipeline = importlib.import_module("edgekit.pipeline")
    if not callable(getattr(pipeline, "gate", None)):
        raise ToolchainMissingError("this edgekit's pipeline cannot gate recipes (no edgekit.pipeline.gate)",
                                    path=path, hint="run the recipe, then gate its bundle: edgekit gate OUT/TARGET/")
    return pipeline.gate(path, output=output, trust_code=trust_code, **bench_kw)


def _accuracy_verdicts(
    bundle: Path, info: Mapping[str, Any], metrics: Mapping[str, Any], thresholds: Mapping[str, Any],
    result: GateResult, *, loader: Callable[..., Runner], threads: int | None, samples: int, seed: int,
) -> list[BudgetVerdict]:
    measured: dict[str, tuple[float | None, str, str]] = {}  # key -> (value, provenance, where)
    rerun = None
    wants_numeric = {"min_cosine", "min_sqnr_db"} & set(thresholds)
    if wants_numeric:
        try:
            runner = loader(bundle, threads=threads)
        except ToolchainMissingError as exc:
            result.notes.append(f"accuracy not re-run: {exc.message}")
        else:
            with runner:
                provenance = str(getattr(runner, "provenance", "measured"))
                cos, sqnr, how = _accuracy_rerun(bundle, info, runner, samples, seed)
            rerun = how
            measured["min_cosine"] = (cos, provenance, how)
            measured["min_sqnr_db"] = (sqnr, provenance, how)
    stored_prov = str(info.get("run_provenance") or "measured")
    if "min_cosine" in wants_numeric and "min_cosine" not in measured:
        found = _find_metric(info.get("verification"), ("min_cosine", "cosine")) or \
            _find_metric(metrics, ("min_cosine", "cosine"))
        measured["min_cosine"] = (found[0], stored_prov, f"stored metric {found[1]}") if found else \
            (None, "not-run", "no stored cosine")
    if "min_sqnr_db" in wants_numeric and "min_sqnr_db" not in measured:
        found = _find_metric(info.get("verification"), ("min_sqnr_db", "sqnr_db", "sqnr")) or \
            _find_metric(metrics, ("min_sqnr_db", "sqnr_db", "sqnr"))
        measured["min_sqnr_db"] = (found[0], stored_prov, f"stored metric {found[1]}") if found else \
            (None, "not-run", "no stored SQNR")
    if "max_drop" in thresholds:
        found = _find_metric(metrics, ("accuracy_drop", "max_drop", "drop")) or \
            _find_metric(info.get("verification"), ("accuracy_drop", "drop"))
        measured["max_drop"] = (found[0], "measured", f"stored metric {found[1]} (needs labelled data)") if found \
            else (None, "not-run", "no stored accuracy drop (needs labelled eval data: quantize with --eval)")
    result.accuracy_source = rerun or "stored metrics (the bundle's runner is not runnable here)"
    verdicts = []
    for key, limit in thresholds.items():
        value, provenance, where = measured[key]
        op = ACCURACY_KEYS[key]
        unit = "dB" if key == "min_sqnr_db" else ""
        if value is None:
            status = "not-run"
        else:
            status = "pass" if (value >= float(limit) if op == ">=" else value <= float(limit)) else "fail"
        verdicts.append(BudgetVerdict(f"{key}={limit}", "accuracy", key.removeprefix("min_").removeprefix("max_"),
                                      op, float(limit), value, unit, status, provenance, "manifest", where))
    return verdicts


def verdict_rows(verdicts: Sequence[BudgetVerdict]) -> list[tuple[str, ...]]:
    """Plain rows (budget, measured, limit, margin, provenance, status, note) for tables in any front end."""
    rows = []
    for v in verdicts:
        margin = v.margin
        pct = v.margin_pct
        margin_text = "—" if margin is None else f"{margin:+.4g} {v.unit}".strip()
        if pct is not None:
            margin_text += f" ({pct:+.1f}%)"
        rows.append((f"{v.kind} {v.name}", f"{_fmt(v.measured)} {v.unit}".strip(), f"{v.op} {_fmt(v.limit)} {v.unit}"
                     .strip(), margin_text, v.provenance, v.status, "; ".join(x for x in (v.source, v.note) if x)))
    return rows
