"""Parsers for the vendor benchmark tools' text output (what `bench` reads when a device is present).

ais_bench (Ascend) prints a "Performance Summary" with lines like
    [INFO] NPU_compute_time (ms): min = 2.45, max = 2.46, mean = 2.45, median = 2.45, percentile(99%) = 2.46
and MagicMind's mm_run prints "=================== Performance Summary" with per-stage blocks
    MLU Compute (Launch jobs) Summary:
    Latency(host clock, ms):    min: 0.057  max: 0.237  mean: 0.08457  median: 0.08  percentile: (90%) 0.103 ...
Both parsers return plain data; a number is only ever "measured" when it comes from these tools.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from edgekit.errors import BadInputError

_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics in milliseconds as printed by a vendor tool."""

    min_ms: float
    max_ms: float
    mean_ms: float
    median_ms: float
    percentiles: dict[str, float] = field(default_factory=dict)  # "99" -> ms

    def to_json(self) -> dict[str, Any]:
        return {"min_ms": self.min_ms, "max_ms": self.max_ms, "mean_ms": self.mean_ms,
                "median_ms": self.median_ms, "percentiles": dict(self.percentiles)}


@dataclass(frozen=True)
class AisBenchResult:
    npu_compute: LatencyStats
    h2d: LatencyStats | None = None
    d2h: LatencyStats | None = None
    throughput: float | None = None  # inferences / s as printed
    tool: str = "ais_bench"


_AIS_LINE = re.compile(
    rf"(?P<key>H2D_latency|NPU_compute_time|D2H_latency)\s*\(ms\):\s*min\s*=\s*(?P<min>{_NUM}),\s*"
    rf"max\s*=\s*(?P<max>{_NUM}),\s*mean\s*=\s*(?P<mean>{_NUM}),\s*median\s*=\s*(?P<median>{_NUM})"
    rf"(?:,\s*percentile\((?P<pct>{_NUM})%\)\s*=\s*(?P<pval>{_NUM}))?"
)
_AIS_THROUGHPUT = re.compile(rf"\bthroughput\b[^:\n]*:\s*(?P<value>{_NUM})\s*$", re.MULTILINE)


def _pct_key(text: str) -> str:
    value = float(text)
    return str(int(value)) if value.is_integer() else str(value)


def parse_ais_bench(text: str) -> list[AisBenchResult]:
    """Every Performance Summary in ais_bench output (one per device with --device 0,1)."""
    results: list[AisBenchResult] = []
    current: dict[str, LatencyStats] = {}
    throughput: float | None = None

    def flush() -> None:
        nonlocal current, throughput
        if "NPU_compute_time" in current:
            results.append(AisBenchResult(current["NPU_compute_time"], current.get("H2D_latency"),
                                          current.get("D2H_latency"), throughput))
        current, throughput = {}, None

    for line in text.splitlines():
        if "Performance Summary" in line:
            flush()
            continue
        match = _AIS_LINE.search(line)
        if match:
            pct = {_pct_key(match["pct"]): float(match["pval"])} if match["pct"] else {}
            current[match["key"]] = LatencyStats(float(match["min"]), float(match["max"]), float(match["mean"]),
                                                 float(match["median"]), pct)
            continue
        tmatch = _AIS_THROUGHPUT.search(line)
        if tmatch and "NPU_compute_time" in current:
            throughput = float(tmatch["value"])
    flush()
    if not results:
        raise BadInputError("no 'NPU_compute_time (ms): ...' line found in ais_bench output",
                            hint="run ais_bench with --loop N and keep its stdout")
    return results


@dataclass(frozen=True)
class MmRunResult:
    compute_host: LatencyStats | None  # MLU Compute (Launch jobs), host clock
    compute_dev: LatencyStats | None  # MLU Compute, device clock
    total_host: LatencyStats | None  # H2D + Compute + D2H, host clock
    total_dev: LatencyStats | None
    throughput_qps: float | None
    iterations: int | None
    wall_time_s: float | None
    tool: str = "mm_run"

    @property
    def compute(self) -> LatencyStats:
        """Device-clock compute latency when traced, else host clock."""
        stats = self.compute_dev or self.compute_host
        if stats is None:
            raise BadInputError("mm_run output has no MLU Compute latency block")
        return stats


_MM_LAT = re.compile(
    rf"Latency\((?P<clock>host|dev) clock, ms\):\s*min:\s*(?P<min>{_NUM})\s+max:\s*(?P<max>{_NUM})\s+"
    rf"mean:\s*(?P<mean>{_NUM})\s+median:\s*(?P<median>{_NUM})(?:\s+percentile:\s*(?P<pcts>.*))?"
)
_MM_PCT = re.compile(rf"\((?P<p>{_NUM})%\)\s*(?P<v>{_NUM})")


def parse_mm_run(text: str) -> MmRunResult:
    """The first input-shape group of an mm_run Performance Summary."""
    if "Performance Summary" not in text:
        raise BadInputError("no 'Performance Summary' in mm_run output", hint="keep mm_run's full stdout")
    block, stats = "", {}
    groups = 0
    iterations = wall = qps = None
    for line in text.splitlines():
        stripped = line.strip()
        if m := re.match(r"Total iterations:\s*(?P<v>\d+)", stripped):
            iterations = int(m["v"])
        elif m := re.match(rf"Host wall time\(s\):\s*(?P<v>{_NUM})", stripped):
            wall = float(m["v"])
        elif m := re.match(rf"Throughput \(qps\):\s*(?P<v>{_NUM})", stripped):
            qps = float(m["v"])
        elif stripped.startswith("Input shape group"):
            groups += 1
            if groups > 1:
                break
        elif stripped.endswith("Summary:") or stripped.startswith("Total Latency Summary"):
            if stripped.startswith("Total Latency"):
                block = "total"
            else:
                block = "compute" if stripped.startswith("MLU Compute") else "copy"
        elif (m := _MM_LAT.search(stripped)) and block in ("compute", "total"):
            pcts = {_pct_key(p["p"]): float(p["v"]) for p in _MM_PCT.finditer(m["pcts"] or "")}
            stats[(block, m["clock"])] = LatencyStats(float(m["min"]), float(m["max"]), float(m["mean"]),
                                                      float(m["median"]), pcts)
    if not stats:
        raise BadInputError("mm_run output has no 'Latency(host|dev clock, ms)' lines")
    return MmRunResult(stats.get(("compute", "host")), stats.get(("compute", "dev")), stats.get(("total", "host")),
                       stats.get(("total", "dev")), qps, iterations, wall)
