"""Typed results of a pipeline run: stages, candidates, targets, and the run as a whole.

Every latency figure says what it was measured on (shapes, host, when, fresh or not), and a target
that built nothing or could not be judged has an exit code that is never 0 unless the recipe marked
it optional.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifact import to_jsonable
from edgekit.checks.budgets import BudgetVerdict

# TargetResult.status -> exit code when the target is not optional
STATUS_EXIT = {"passed": 0, "failed": 1, "unsupported": 3, "unavailable": 4, "not-run": 4, "inconclusive": 4}


@dataclass
class StageRun:
    """One stage execution as seen by the user: cache hit or built, how long it took."""

    stage: str
    target: str | None
    hit: bool
    seconds: float
    key: str = ""
    detail: str = ""

    @property
    def label(self) -> str:
        return f"{self.target}/{self.stage}" if self.target else self.stage


@dataclass
class LatencyFigure:
    """Latency statistics plus what they were measured on: a figure without its context is not a figure."""

    stats: dict[str, float]  # min, mean, p50, p90, p95, p99, max (ms)
    provenance: str  # measured | estimated | emulated | not-run
    fresh: bool  # measured in this run (False: read from an earlier run)
    measured_at: str  # ISO 8601, UTC
    host: str
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    iterations: int = 0
    threads: int | None = None
    note: str = ""

    def get(self, statistic: str) -> float | None:
        return self.stats.get(statistic)


@dataclass
class Candidate:
    """One (adapter × precision) build judged on accuracy, and on latency when it could win."""

    adapter: str
    precision: str
    status: str = "failed"  # passed (built, met every check) | rejected (built, failed a check) | failed (no build)
    #                         | skipped (not built: it could not win, e.g. mixed when INT8 already meets the budget)
    precision_used: str | None = None
    run_provenance: str = "not-run"
    accuracy: float | None = None  # task metric (labels) or None
    accuracy_drop: float | None = None  # percentage points vs the FP32 ONNX model
    cosine: float | None = None
    sqnr_db: float | None = None
    accuracy_provenance: str = "not-run"
    accuracy_samples: int = 0
    meets_budget: bool = False
    reason: str = ""
    chosen: bool = False
    latency_ms: float | None = None  # the figure the choice used: side-by-side median, or the estimate
    latency_p99_ms: float | None = None  # tail of the same side-by-side samples
    latency_kind: str = ""  # "side-by-side median" | "estimate" | ""
    latency_provenance: str = "not-run"
    decision: str = ""  # on the chosen candidate: the rule that decided, with the figures it used
    size_mb: float | None = None
    metric: dict[str, Any] | None = None  # MetricFigure JSON: name, unit, fp32, value, drop, mode (accuracy|agreement)
    dead: str = ""  # why the build no longer works (never a pass)
    screened_out: bool = False  # built and accurate, but far behind in the screening: not timed for the choice
    bundle_dir: Path | None = field(default=None, repr=False)  # the cached bundle (not part of the JSON)
    bundle_digest: str = field(default="", repr=False)  # its content hash, as the stage cache verified it

    @property
    def metric_drop(self) -> float | None:
        """The budget's drop: the chosen metric's (accuracy or agreement), else top-1 accuracy points."""
        if self.metric is not None and self.metric.get("drop") is not None:
            return float(self.metric["drop"])
        return self.accuracy_drop

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({k: v for k, v in vars(self).items() if k not in ("bundle_dir", "bundle_digest")})


@dataclass
class TargetResult:
    target: str
    status: str  # passed | failed | unsupported | unavailable | not-run
    reason: str = ""
    optional: bool = False
    bundle: Path | None = None
    adapter: str | None = None
    precision: str | None = None
    precision_used: str | None = None
    run_provenance: str = "not-run"
    latency: dict[str, float] = field(default_factory=dict)  # this run's measurement of the chosen build
    latency_provenance: str = "not-run"
    latency_figure: LatencyFigure | None = None
    accuracy: dict[str, Any] = field(default_factory=dict)
    verdicts: list[BudgetVerdict] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    decision: str = ""

    @property
    def skipped(self) -> bool:
        return self.status in ("unsupported", "unavailable")

    @property
    def exit_code(self) -> int:
        """What this target alone would make CI exit with (0 for an optional target that built nothing)."""
        code = STATUS_EXIT.get(self.status, 1)
        return 0 if self.optional and code in (3, 4) else code

    def to_json(self) -> dict[str, Any]:
        data = to_jsonable({k: v for k, v in vars(self).items() if k not in ("candidates", "verdicts")})
        data["exit_code"] = self.exit_code
        data["candidates"] = [c.to_json() for c in self.candidates]
        data["verdicts"] = [v.to_json() for v in self.verdicts]
        return data


@dataclass
class PipelineResult:
    recipe: str
    recipe_path: Path
    output: Path
    targets: list[TargetResult]
    stages: list[StageRun]
    reference: dict[str, Any]
    report_md: Path | None = None
    report_html: Path | None = None
    seconds: float = 0.0
    environment: dict[str, Any] = field(default_factory=dict)  # where this run measured: CPU, load, versions

    @property
    def exit_code(self) -> int:
        """1 a budget failed · 3 a required target is unsupported · 4 one could not be built or judged · 0."""
        codes = {t.exit_code for t in self.targets}
        for code in (1, 3, 4):
            if code in codes:
                return code
        return 0

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    @property
    def status(self) -> str:
        return {0: "passed", 1: "failed", 3: "unsupported", 4: "not-run"}[self.exit_code]

    def stage_hits(self) -> dict[str, bool]:
        """`target/stage` (or `stage`) -> True when served from the cache (last run of that label wins)."""
        return {s.label: s.hit for s in self.stages}

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({
            "recipe": self.recipe, "recipe_path": self.recipe_path, "output": self.output,
            "passed": self.passed, "status": self.status, "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3), "reference": self.reference,
            "targets": [t.to_json() for t in self.targets], "stages": self.stages,
            "environment": self.environment,
            "report_md": self.report_md, "report_html": self.report_html,
        })


ProgressCallback = Callable[[str, StageRun | None, str], None]  # (event "start"|"done", run, label)
