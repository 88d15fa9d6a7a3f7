"""Budgets a CI can gate on: latency expressions, baselines, accuracy thresholds, JSON and JUnit.

A budget is plain text (`p90<=25ms`) so it fits a command line, a recipe and a manifest alike.
Every verdict carries the measured value, the margin to the limit and the provenance of the
figure (measured / emulated / estimated), so an NPU estimate can gate a build but never passes
for a measurement. `gate` re-checks the budgets a bundle stores in `info["budgets"]`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, StrictFloat, field_validator, model_validator
from pydantic.dataclasses import dataclass as schema_dataclass

from edgekit.artifact import to_jsonable
from edgekit.checks.metrics import MetricOptions, canonical_metric_name, parse_metric_options
from edgekit.environment import fingerprint_differences
from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.schema import CONFIG, Table, value_error
from edgekit.timing import statistic_value

LATENCY_STATISTICS = ("p50", "p90", "p95", "p99", "mean", "max", "min")  # also: median, std, any pN with 0 < N < 100
_UNITS_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1000.0}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|infinity|inf)"
_BUDGET_RE = re.compile(
    rf"^\s*(?P<stat>[A-Za-z][A-Za-z0-9._]*)\s*(?P<op><=|<)\s*(?P<value>{_NUMBER})\s*(?P<unit>[A-Za-zµμ]+)\s*$", re.I
)
_PERCENTILE_RE = re.compile(r"^p(?P<q>\d+(?:\.\d+)?)$")
_THROUGHPUT_RE = re.compile(
    rf"^\s*throughput\s*(?P<op>>=|>|<=|<)\s*(?P<value>{_NUMBER})\s*(?P<unit>(?:items)?\s*/\s*s)?\s*$", re.I
)
THROUGHPUT_UNIT = "items/s"
MAX_THROUGHPUT = 1e9  # items per second: a larger floor is a typo, not a budget
_THROUGHPUT_HINT = "write throughput>=N/s (items per second, a floor), e.g. throughput>=120/s; measured by " \
                   "--mode throughput"
_LATENCY_HINT = "write STAT<=VALUEUNIT, e.g. p90<=25ms, mean<800us; STAT min/mean/max/median/std/pN with 0<N<100, " \
                "unit ns/us/µs/ms/s"
MIN_LIMIT_MS = 1e-6  # one nanosecond: the finest unit of the grammar
MAX_LIMIT_MS = 86_400_000.0  # one day: a larger latency budget is a typo, not a budget
ACCURACY_KEYS = {"min_cosine": ">=", "min_sqnr_db": ">=", "max_drop": "<="}
ACCURACY_RANGES = {"min_cosine": (0.0, 1.0), "min_sqnr_db": (0.0, 400.0), "max_drop": (0.0, 100.0)}
_ACCURACY_ALIASES = {"cosine": "min_cosine", "min_cosine": "min_cosine", "sqnr": "min_sqnr_db",
                     "sqnr_db": "min_sqnr_db", "min_sqnr": "min_sqnr_db", "min_sqnr_db": "min_sqnr_db",
                     "drop": "max_drop", "max_drop": "max_drop"}
_ACCURACY_UNITS = {"min_sqnr_db": ("db",), "max_drop": ("points", "pts", "pt"), "min_cosine": ()}
_ACCURACY_RE = re.compile(
    rf"^\s*(?P<key>[A-Za-z_]+)\s*(?P<op>>=|<=|>|<|=)\s*(?P<value>{_NUMBER})\s*(?P<unit>[A-Za-z]*)\s*$", re.I
)
_ACCURACY_HINT = ("e.g. sqnr>=20dB, cosine>=0.999, drop<=1 (top-1 points, needs labels), or a metric's drop: "
                  "'map50 drop<=1', 'dice drop<=0.5' (agreement with FP32 without labels)")
_METRIC_PREFIX_RE = re.compile(
    r"^\s*(?P<metric>py:[^\s]+|[A-Za-z][A-Za-z0-9@.:_-]*)\s+(?P<rest>drop.*|max_drop.*)$", re.I)
_METRIC_DROP_RE = re.compile(rf"^\s*(?:(?P<metric>py:.+|[A-Za-z][A-Za-z0-9@._-]*)\s*:)?\s*(?P<value>{_NUMBER})\s*"
                             r"(?P<unit>points|pts|pt)?\s*$", re.I)
BENCH_SCHEMA_FILE = Path(__file__).with_name("bench_schema.json")
DEFAULT_MAX_REGRESSION = 0.10
MAX_REGRESSION = 10.0  # 1000 %: beyond that a regression gate checks nothing


@dataclass(frozen=True)
class Budget:
    """`statistic op limit`; `text` is what the user wrote (without spaces).

    The limit is in `unit`: milliseconds for latency statistics (`limit_ms`), items/s for the one
    floor, `throughput>=N/s` (statistic `throughput`, op `>=` or `>`).
    """

    statistic: str
    op: str
    limit_ms: float
    text: str
    unit: str = "ms"

    def holds(self, value_ms: float) -> bool:
        return {"<=": value_ms <= self.limit_ms, "<": value_ms < self.limit_ms, ">=": value_ms >= self.limit_ms,
                ">": value_ms > self.limit_ms}[self.op]


def _statistic(stat: str, text: str, argument: str) -> str:
    """The canonical statistic name: min, mean, max, std, or pN (median is p50); p0/p100 are min/max."""
    stat = stat.lower()
    if stat in ("min", "mean", "max", "std"):
        return stat
    if stat == "median":
        return "p50"
    match = _PERCENTILE_RE.match(stat)
    if not match:
        raise BadInputError(f"unknown statistic {stat!r} in budget {text!r}", path=argument,
                            hint="one of min, mean, max, median, std or pN with 0<N<100, e.g. p90, p99.9")
    q = float(match["q"])
    if q <= 0 or q >= 100:
        raise BadInputError(f"percentile {stat!r} in budget {text!r} is outside 0 < N < 100", path=argument,
                            hint="write min instead of p0 and max instead of p100")
    return f"p{int(q)}" if q.is_integer() else f"p{match['q'].rstrip('0')}"


def parse_budget(text: str | Budget, *, argument: str = "--budget") -> Budget:
    """Parse one latency budget `STAT<=VALUEUNIT` (the one grammar of the CLI, recipes and manifests).

    STAT: min, mean, max, std, median (= p50) or pN with 0 < N < 100 (p99.9 ok); op `<=` or `<`;
    VALUE: a finite number (`25`, `.5`, `2e-1`); unit ns, us, µs, ms or s. The limit must lie between
    one nanosecond and one day. `throughput>=N/s` (or `>`, unit `/s` or `items/s`) is a floor in items
    per second, 0 < N <= 1e9. Errors are BadInputError naming `argument` (a flag or a recipe key path).
    """
    if isinstance(text, Budget):
        return text
    if not isinstance(text, str):
        raise BadInputError(f"a latency budget must be a string like 'p90<=25ms', got {type(text).__name__}",
                            path=argument, hint=_LATENCY_HINT)
    if text.strip().lower().startswith("throughput"):
        return _parse_throughput(text, argument)
    match = _BUDGET_RE.match(text)
    if not match:
        raise BadInputError(f"cannot parse budget {text!r}", path=argument, hint=_LATENCY_HINT)
    stat = _statistic(match["stat"], text, argument)
    unit = match["unit"].lower().replace("μ", "µ")
    if unit not in _UNITS_MS:
        raise BadInputError(f"unknown unit {match['unit']!r} in budget {text!r}", path=argument,
                            hint="units: ns, us (or µs), ms, s")
    value = float(match["value"])
    if not math.isfinite(value):
        raise BadInputError(f"budget {text!r} needs a finite limit", path=argument, hint=_LATENCY_HINT)
    limit = value * _UNITS_MS[unit]
    if not MIN_LIMIT_MS * (1 - 1e-9) <= limit <= MAX_LIMIT_MS:
        what = "must be positive" if limit <= 0 else "is below one nanosecond" if limit < MIN_LIMIT_MS \
            else "is over one day"
        raise BadInputError(f"budget {text!r} {what}", path=argument,
                            hint="a latency limit lies between 1ns and 1 day, e.g. p90<=25ms")
    return Budget(stat, match["op"], limit, "".join(text.split()))


def _parse_throughput(text: str, argument: str) -> Budget:
    """`throughput>=N/s`: a floor in items/s (finite, above 0, at most MAX_THROUGHPUT)."""
    match = _THROUGHPUT_RE.match(text)
    if not match or not match["unit"]:
        raise BadInputError(f"cannot parse budget {text!r}", path=argument, hint=_THROUGHPUT_HINT)
    if match["op"] in ("<=", "<"):
        raise BadInputError(f"budget {text!r}: a throughput budget is a floor", path=argument, hint=_THROUGHPUT_HINT)
    value = float(match["value"])
    if not math.isfinite(value):
        raise BadInputError(f"budget {text!r} needs a finite limit", path=argument, hint=_THROUGHPUT_HINT)
    if not 0 < value <= MAX_THROUGHPUT:
        what = "must be positive" if value <= 0 else f"is over {MAX_THROUGHPUT:.0e} items/s"
        raise BadInputError(f"budget {text!r} {what}", path=argument, hint=_THROUGHPUT_HINT)
    return Budget("throughput", match["op"], value, "".join(text.split()), THROUGHPUT_UNIT)


def parse_budgets(texts: Sequence[str | Budget] | str | None, *, argument: str = "--budget") -> list[Budget]:
    """Several budgets (None or one string also accepted); an error names `argument`."""
    if texts is None:
        return []
    if isinstance(texts, str):
        texts = [texts]
    return [parse_budget(t, argument=argument) for t in texts]


def check_accuracy_threshold(key: str, value: Any, *, argument: str) -> float:
    """One accuracy threshold (`min_cosine`, `min_sqnr_db`, `max_drop`) as a finite float in its range."""
    if key not in ACCURACY_KEYS:
        raise BadInputError(f"unknown accuracy budget {key!r}", path=argument,
                            hint=f"known: {', '.join(ACCURACY_KEYS)}")
    low, high = ACCURACY_RANGES[key]
    unit = {"min_sqnr_db": " dB", "max_drop": " accuracy points"}.get(key, "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInputError(f"{key} must be a number, got {value!r}", path=argument,
                            hint=f"a number from {low:g} to {high:g}{unit}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise BadInputError(f"{key} must be a finite number from {low:g} to {high:g}{unit}, got {value!r}",
                            path=argument)
    return number


def _threshold(key: str) -> Callable[[float], float]:
    def check(value: float) -> float:
        return value_error(check_accuracy_threshold, key, value, argument="")

    return check


Points = Annotated[StrictFloat, AfterValidator(_threshold("max_drop"))]  # accuracy points, 0..100
Cosine = Annotated[StrictFloat, AfterValidator(_threshold("min_cosine"))]  # 0..1
Decibels = Annotated[StrictFloat, AfterValidator(_threshold("min_sqnr_db"))]  # SQNR, 0..400 dB


@schema_dataclass(frozen=True, config=CONFIG)
class AccuracyBudget(Table):
    """Accuracy budget vs the FP32 ONNX model (a recipe's `[budgets.accuracy]`, `--accuracy-budget`)."""

    max_drop: Points | None = None  # drop of `metric` in points (1.0 = 1 point); top-1 with labels when no metric
    min_cosine: Cosine | None = None
    min_sqnr_db: Decibels | None = None
    metric: str | None = None  # top1, dice, map50, text-f1, ...: accuracy with labels, agreement with FP32 without
    metric_options: tuple[str, ...] = ()  # decoder options KEY=VALUE (`layout=yolov8`, `conf=0.25`)

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        """`accuracy = "dice drop<=0.5"` (one grammar with --accuracy-budget) is short for the table."""
        if isinstance(data, (str, list, tuple)):
            return value_error(parse_accuracy_fields, data, argument="accuracy")
        return data

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str | None) -> str | None:
        return None if value is None else value_error(canonical_metric_name, value, argument="metric")

    @field_validator("metric_options")
    @classmethod
    def _options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        value_error(parse_metric_options, list(value), argument="metric_options")
        return tuple(value)

    def metric_settings(self) -> MetricOptions:
        return parse_metric_options(list(self.metric_options), argument="metric_options")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in {
            "max_drop": self.max_drop, "min_cosine": self.min_cosine, "min_sqnr_db": self.min_sqnr_db,
            "metric": self.metric if self.max_drop is not None else None,
            "metric_options": list(self.metric_options) if self.metric and self.metric_options else None,
        }.items() if v is not None}

    @property
    def empty(self) -> bool:
        return not self.to_json()


def parse_accuracy_budget(texts: str | Sequence[str], *, argument: str = "--accuracy-budget") -> AccuracyBudget:
    """`sqnr>=20dB`, `cosine>=0.999`, `drop<=1` (points), `map50 drop<=1`, comma-separated or a list."""
    return AccuracyBudget(**parse_accuracy_fields(texts, argument=argument))


def parse_accuracy_fields(texts: str | Sequence[str], *, argument: str = "--accuracy-budget") -> dict[str, Any]:
    """The grammar with its metric: `map50 drop<=1, sqnr>=20dB` -> {"metric": "map50", "max_drop": 1.0, ...}.

    A drop may name its metric in front (`dice drop<=0.5`); without one it is top-1 (labels needed).
    """
    if isinstance(texts, str):
        texts = [texts]
    metric: str | None = None
    plain: list[str] = []
    for chunk in texts:
        if not isinstance(chunk, str):
            raise BadInputError(f"an accuracy budget must be a string, got {type(chunk).__name__}", path=argument,
                                hint=_ACCURACY_HINT)
        for text in (t for t in chunk.split(",") if t.strip()):
            match = _METRIC_PREFIX_RE.match(text)
            if match:
                if metric is not None:
                    raise BadInputError("one metric per accuracy budget", path=argument, hint=_ACCURACY_HINT)
                metric = canonical_metric_name(match["metric"], argument=argument)
                text = match["rest"]
            plain.append(text)
    values: dict[str, Any] = dict(parse_accuracy_thresholds(plain, argument=argument))
    if metric is not None:
        values["metric"] = metric
    return values


def parse_metric_drop(text: str | float, *, argument: str = "--max-drop") -> tuple[str | None, float]:
    """`--max-drop`: `1` (top-1 points, labels needed) or `METRIC:POINTS` (`map50:1`, `dice:0.5pts`)."""
    if isinstance(text, bool):
        raise BadInputError(f"cannot parse {text!r}", path=argument, hint="e.g. 1 or map50:1")
    if isinstance(text, (int, float)):
        return None, check_accuracy_threshold("max_drop", float(text), argument=argument)
    match = _METRIC_DROP_RE.match(str(text))
    if not match:
        raise BadInputError(f"cannot parse {text!r}", path=argument,
                            hint="points of top-1 (e.g. 1) or METRIC:POINTS (e.g. map50:1, dice:0.5)")
    metric = canonical_metric_name(match["metric"], argument=argument) if match["metric"] else None
    return metric, check_accuracy_threshold("max_drop", float(match["value"]), argument=argument)


def parse_accuracy_thresholds(texts: str | Sequence[str], *, argument: str = "--accuracy-budget") -> dict[str, float]:
    """The accuracy-budget grammar: `sqnr>=20dB, cosine>=0.999` -> {"min_sqnr_db": 20.0, "min_cosine": 0.999}.

    Forms: sqnr/sqnr_db/min_sqnr/min_sqnr_db `>=` dB, cosine/min_cosine `>=`, drop/max_drop `<=` accuracy
    points (pts); comma-separated or a list. Each value is checked by `check_accuracy_threshold`; a key
    given twice or an empty budget is refused (BadInputError naming `argument`).
    """
    if isinstance(texts, str):
        texts = [texts]
    values: dict[str, float] = {}
    for chunk in texts:
        if not isinstance(chunk, str):
            raise BadInputError(f"an accuracy budget must be a string, got {type(chunk).__name__}", path=argument,
                                hint=_ACCURACY_HINT)
        for text in (t for t in chunk.split(",") if t.strip()):
            match = _ACCURACY_RE.match(text)
            key = _ACCURACY_ALIASES.get(match["key"].lower()) if match else None
            if not match or key is None:
                raise BadInputError(f"cannot parse accuracy budget {text.strip()!r}", path=argument,
                                    hint=_ACCURACY_HINT)
            op = ACCURACY_KEYS[key]
            if match["op"] != op:
                word = match["key"].lower()
                raise BadInputError(f"{word} budgets are written {word}{op}VALUE, got {text.strip()!r}", path=argument,
                                    hint=_ACCURACY_HINT)
            unit = match["unit"].lower()
            if unit and unit not in _ACCURACY_UNITS[key]:
                raise BadInputError(f"unit {match['unit']!r} does not fit {key} in {text.strip()!r}", path=argument,
                                    hint=_ACCURACY_HINT)
            if key in values:
                raise BadInputError(f"{key} given twice in the accuracy budget", path=argument, hint=_ACCURACY_HINT)
            values[key] = check_accuracy_threshold(key, float(match["value"]), argument=argument)
    if not values:
        raise BadInputError("empty accuracy budget", path=argument, hint=_ACCURACY_HINT)
    return values


def parse_regression(value: str | float | None, *, argument: str = "--max-regression") -> float:
    """`10%` -> 0.10; a number from Python is already a fraction. NaN, inf, negative and > 1000 % are refused."""
    if value is None:
        return DEFAULT_MAX_REGRESSION
    hint = "write a percentage, e.g. 10%"
    if isinstance(value, bool):
        raise BadInputError(f"cannot parse {value!r}", path=argument, hint=hint)
    if isinstance(value, (int, float)):
        fraction = float(value)
    else:
        text = str(value).strip()
        if not text.endswith("%"):
            raise BadInputError(f"cannot parse {value!r}", path=argument, hint=hint)
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            raise BadInputError(f"cannot parse {value!r}", path=argument, hint=hint) from None
    if not math.isfinite(fraction):
        raise BadInputError(f"{value!r} is not a finite percentage", path=argument, hint=hint)
    if fraction < 0:
        raise BadInputError(f"{value!r} must not be negative", path=argument, hint=hint)
    if fraction > MAX_REGRESSION:
        raise BadInputError(f"{value!r} is over {MAX_REGRESSION:.0%}", path=argument, hint=hint)
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
        return self.measured - self.limit if self.op in (">=", ">") else self.limit - self.measured

    @property
    def margin_pct(self) -> float | None:
        margin = self.margin
        if margin is None or not self.limit:
            return None
        return 100.0 * margin / abs(self.limit)

    def to_json(self) -> dict[str, Any]:

        return to_jsonable({
            "name": self.name, "kind": self.kind, "statistic": self.statistic, "op": self.op,
            "limit": self.limit, "measured": self.measured, "unit": self.unit, "margin": self.margin,
            "margin_pct": self.margin_pct, "status": self.status, "provenance": self.provenance,
            "source": self.source, "note": self.note,
        })


class LatencyResult(Protocol):
    """What budgets, baselines and JUnit read of a bench result (`edgekit.checks.latency.BenchResult`).

    A protocol, so the budget grammar sits below the bench that applies it (no import cycle).
    """

    provenance: str
    environment: dict[str, Any]
    verdicts: list[BudgetVerdict]
    warnings: list[str]
    notes: list[str]
    created_at: str
    config: Any  # has .batch
    samples_ms: list[float]

    def value(self, statistic: str) -> float | None: ...


def _verdict_note(provenance: str) -> str:
    if provenance == "estimated":
        return "estimated by a cost model, not measured on the device"
    if provenance == "emulated":
        return "host emulation time, not device latency"
    return ""


def overall_status(verdicts: Sequence[BudgetVerdict]) -> str:
    """fail if any budget failed, else inconclusive (a regression check that could not decide), else
    not-run if any could not be checked here, else pass. Only `pass` is a pass (exit 0); inconclusive and
    not-run are exit 4."""
    statuses = {v.status for v in verdicts}
    if "fail" in statuses:
        return "fail"
    if "inconclusive" in statuses:
        return "inconclusive"
    return "not-run" if statuses - {"pass"} else "pass"


def evaluate_budgets(
    result: LatencyResult, budgets: Sequence[Budget], *, source: str = "--budget"
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
            if budget.statistic == "throughput" and getattr(result, "throughput", None) is None:
                note = "; ".join(x for x in (note, "sequential runs (latency mode): --mode throughput measures "
                                                   "requests in parallel") if x)
        verdicts.append(BudgetVerdict(budget.text, "latency", budget.statistic, budget.op, budget.limit_ms,
                                      measured, budget.unit, status, provenance, source, note))
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
        except IsADirectoryError:
            raise BadInputError("is a folder, expected a bench JSON file", path=where,
                                hint="give the file `edgekit bench ... --json FILE.json` wrote") from None
        except OSError as exc:
            raise BadInputError(f"cannot read ({exc.strerror or exc})", path=where) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"not valid JSON ({exc})", path=where) from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith("edgekit.bench/"):
        raise BadInputError("not an edgekit bench result", path=where,
                            hint="record one with `edgekit bench ... --json baseline.json`")
    if schema != "edgekit.bench/1":
        raise BadInputError(f"bench schema {schema!r} is not supported by this edgekit", path=where,
                            hint="upgrade edgekit or re-record the baseline")
    _check_result_structure(data, where)
    return data


_RESULT_OBJECTS = ("environment", "config", "latency_ms", "estimate", "contention", "stability", "memory", "bundle",
                   "input_shapes", "verdict")


def _check_result_structure(data: Mapping[str, Any], where: str) -> None:
    """The parts of a bench JSON a comparison reads have the types `edgekit bench --json` writes.

    Why: a baseline is a file anyone can edit; the right schema tag over a list where an object
    belongs (or a string where a number belongs) was a traceback, or a comparison with nothing.
    """

    def bad(what: str) -> BadInputError:
        return BadInputError(f"malformed bench result: {what}", path=where,
                             hint="re-record it with `edgekit bench ... --json FILE.json`")

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    for key in _RESULT_OBJECTS:
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            raise bad(f"{key} is not an object")
    if data.get("provenance") is not None and not isinstance(data["provenance"], str):
        raise bad("provenance is not a string")
    for name, value in (data.get("latency_ms") or {}).items():
        if value is not None and not number(value):
            raise bad(f"latency_ms.{name} is {value!r}, not a finite number")
    samples = data.get("samples_ms")
    if samples is not None and not (isinstance(samples, list) and all(number(v) for v in samples)):
        raise bad("samples_ms is not a list of finite numbers")
    estimate = (data.get("estimate") or {}).get("latency_ms")
    if estimate is not None and not number(estimate):
        raise bad(f"estimate.latency_ms is {estimate!r}, not a finite number")
    batch = (data.get("config") or {}).get("batch", 1)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise bad(f"config.batch is {batch!r}, not an integer >= 1")


def _baseline_value(data: Mapping[str, Any], statistic: str) -> float | None:

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
    result: LatencyResult,
    baseline: str | Path | Mapping[str, Any],
    *,
    max_regression: str | float | None = None,
    statistics: Sequence[str] | None = None,
    force: bool = False,
    label: str | None = None,
    contention: Mapping[str, Any] | None = None,
) -> list[BudgetVerdict]:
    """Compare the same statistic(s) with a recorded result; refuse incomparable environments.

    A regression is `current > baseline * (1 + max_regression)`. Fingerprints that differ in a
    relevant field (CPU, flags, threads, target, adapter, ...) or a different provenance make the
    comparison meaningless: BadInputError (exit 2) unless `force`, and then the verdict says so.
    `contention` (this run's `Contention.to_json()`): when it differs from the baseline's
    (`contention_differences`), each verdict is `inconclusive` (exit 4) unless `force` — a figure
    taken next to a busy neighbour says nothing about the model (use `--baseline-bundle`).
    """

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
    busy = contention_differences(data, contention)
    if busy and force:
        notes = "; ".join(x for x in (notes, f"forced despite different contention ({'; '.join(busy)})") if x)
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
        status = "pass" if now <= limit else "fail"
        if busy and not force:
            status = "inconclusive"
            note = (f"{note}; inconclusive: contention differs from the baseline's ({'; '.join(busy)}): a latency "
                    "taken under other load is not comparable (compare side by side with --baseline-bundle, "
                    "re-run on a host as quiet as the baseline's, or --force)")
        verdicts.append(BudgetVerdict(name, "regression", statistic, "<=", limit, now, "ms", status, provenance, where,
                                      note))
    return verdicts


OTHERS_CPU_POINTS = 25.0  # other processes' share of the host CPUs: a larger change is a different host state
LOAD_PER_CPU = 0.5  # the 1-minute load per CPU, when the CPU shares were not recorded (older baselines)
STEAL_POINTS = 5.0
FREQUENCY_CHANGE = 0.10


def contention_differences(baseline: Mapping[str, Any], now: Mapping[str, Any] | None) -> list[str]:
    """How the contention of this run differs from a recorded bench JSON's (empty: comparable, or unknown).

    Compared: other processes' share of the CPUs during the run (else the load average per CPU at the
    start, for baselines without a `contention` record), CPU steal, and the frequency where readable.
    """
    if not isinstance(now, Mapping):
        return []
    base = baseline.get("contention")
    env = baseline.get("environment") if isinstance(baseline.get("environment"), Mapping) else {}
    base = dict(base) if isinstance(base, Mapping) else {
        "load_start": env.get("load_average"), "cpus": env.get("logical_cpus") or env.get("usable_cpus")}
    diffs = []
    a, b = _number_or_none(base.get("others_cpu_pct")), _number_or_none(now.get("others_cpu_pct"))
    if a is not None and b is not None:
        if abs(a - b) >= OTHERS_CPU_POINTS:
            diffs.append(f"other processes used {b:.0f}% of the CPUs now vs {a:.0f}% in the baseline")
    else:
        la, lb = _load_per_cpu(base), _load_per_cpu(now)
        if la is not None and lb is not None and abs(la - lb) >= LOAD_PER_CPU:
            diffs.append(f"load {lb:.2f} per CPU now vs {la:.2f} in the baseline")
    a, b = _number_or_none(base.get("steal_pct")), _number_or_none(now.get("steal_pct"))
    if a is not None and b is not None and abs(a - b) >= STEAL_POINTS:
        diffs.append(f"CPU steal {b:.1f}% now vs {a:.1f}% in the baseline")
    a, b = _number_or_none(base.get("freq_mhz_start")), _number_or_none(now.get("freq_mhz_start"))
    if a and b and abs(b / a - 1) > FREQUENCY_CHANGE:
        diffs.append(f"CPU frequency {b:.0f} MHz now vs {a:.0f} MHz in the baseline")
    return diffs


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _load_per_cpu(record: Mapping[str, Any]) -> float | None:
    load, cpus = record.get("load_start"), _number_or_none(record.get("cpus"))
    if not isinstance(load, Sequence) or not load or not cpus or cpus <= 0:
        return None
    first = _number_or_none(load[0])
    return None if first is None else first / cpus


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
    seconds: float | None = None,
) -> str:
    """JUnit XML: one testcase per budget; a failed budget has a <failure>, a not-run one <skipped>.

    `seconds`: the time the measurement took (suite time, shared out over the cases); properties whose
    value is unknown are left out rather than written as "None".
    """
    import xml.etree.ElementTree as ET

    failures = sum(v.status == "fail" for v in verdicts)
    skipped = sum(v.status in ("not-run", "inconclusive") for v in verdicts)
    counts = {"tests": str(len(verdicts)), "failures": str(failures), "errors": "0", "skipped": str(skipped)}
    total = f"{seconds:.3f}" if seconds is not None else "0"
    each = f"{seconds / len(verdicts):.3f}" if seconds is not None and verdicts else "0"
    root = ET.Element("testsuites", {"name": "edgekit", **counts, "time": total})
    attrs = {"name": suite, **counts, "time": total}
    if timestamp:
        attrs["timestamp"] = timestamp
    ts = ET.SubElement(root, "testsuite", attrs)
    if properties:
        props = ET.SubElement(ts, "properties")
        for key, value in properties.items():
            if value is not None:
                ET.SubElement(props, "property", {"name": str(key), "value": str(value)})
    for v in verdicts:
        case = ET.SubElement(ts, "testcase", {"classname": classname, "name": f"{v.kind} {v.name}", "time": each})
        unit = f" {v.unit}" if v.unit else ""
        summary = (f"{v.statistic} = {_fmt(v.measured)}{unit} ({v.provenance}), limit {v.op} {_fmt(v.limit)}{unit}, "
                   f"margin {_fmt(v.margin)}{unit}; source {v.source}")
        if v.note:
            summary += f"; {v.note}"
        if v.status == "fail":
            failure = ET.SubElement(case, "failure", {"message": summary, "type": f"{v.kind.capitalize()}BudgetFailed"})
            failure.text = summary
        elif v.status in ("not-run", "inconclusive"):  # never a pass; the exit code (4) says so too
            ET.SubElement(case, "skipped", {"message": f"{v.status}: {summary}"})
        ET.SubElement(case, "system-out").text = summary
    if system_out:
        ET.SubElement(ts, "system-out").text = system_out
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | Path, verdicts: Sequence[BudgetVerdict], **kw: Any) -> Path:
    from edgekit.artifact import write_text_atomic

    return write_text_atomic(path, junit_xml(verdicts, **kw))


def bench_junit(result: LatencyResult, path: str | Path) -> Path:
    """JUnit for a bench result, with the environment as suite properties."""
    env = result.environment
    props = {"provenance": result.provenance, "target": env.get("target"), "adapter": env.get("adapter"),
             "cpu_model": env.get("cpu_model"), "threads": env.get("threads"),
             "bundle_sha256": env.get("bundle_sha256"), "edgekit": env.get("edgekit")}
    throughput = getattr(result, "throughput", None)  # --mode throughput: the figure and how it was made
    if throughput is not None:
        props.update({"mode": "throughput", "throughput_items_per_s": f"{throughput.items_per_s:.6g}",
                      "throughput_streams": throughput.streams, "throughput_method": throughput.method})
    classname = f"edgekit.bench.{env.get('target') or 'model'}.{env.get('adapter') or 'bundle'}"
    device = getattr(result, "device", None)  # a remote device's figure (edgekit.devices), never the host's
    if device:
        props.update({"device": device.get("name"), "device_host": device.get("hostname"),
                      "device_transport": device.get("transport"), "device_url": device.get("url")})
        classname = f"edgekit.bench.device.{device.get('name')}.{env.get('adapter') or 'bundle'}"
    seconds = sum(result.samples_ms) / 1000.0 or None  # the timed runs
    return write_junit(path, result.verdicts, suite="edgekit.bench", classname=classname, properties=props,
                       system_out="\n".join(result.warnings + result.notes), timestamp=result.created_at,
                       seconds=seconds)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


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
