"""Latency histogram + timeline of a bench (matplotlib, Agg backend, imported only when asked).

The timeline shows warm-up effects, throttling and noisy neighbours that percentiles hide; the
title carries the provenance so an emulated or estimated figure is never read as device latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import ToolchainMissingError

if TYPE_CHECKING:
    from edgekit.checks.latency import BenchResult


def plot_bench(result: BenchResult, path: str | Path) -> Path:
    """Write a PNG: histogram with p50/p90/p99 and budget lines, and latency per run over time."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ToolchainMissingError("matplotlib is not installed", path="--plot",
                                    hint="pip install 'edgekit[plot]'") from None
    from edgekit.artifact import atomic_path
    from edgekit.checks.latency import EMULATION_NOTE

    path = Path(path)
    bundle = result.bundle
    precision = bundle.get("precision_used") or bundle.get("precision")
    title = f"{bundle.get('target')} / {bundle.get('adapter')} / {precision}"
    label = result.provenance
    if result.provenance == "emulated":
        label = f"emulated: {EMULATION_NOTE}"
    fig, (hist, line) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        samples = result.samples_ms
        if samples and result.stats is not None:
            # a few preemptions would squash the bulk into one bar: clip the range, say how many were left out
            limits = [v.limit for v in result.verdicts if v.limit is not None and v.kind != "accuracy"]
            upper = max([result.stats.p99 * 1.25, *(x for x in limits if x <= 5 * result.stats.p99)])
            lower = min([result.stats.min, *(x for x in limits if x <= 5 * result.stats.p99)])
            shown = [x for x in samples if x <= upper]
            hist.hist(shown, bins=min(50, max(5, len(shown) // 5)), range=(lower, upper), color="#4878a8")
            if len(shown) < len(samples):
                hist.text(0.98, 0.02, f"{len(samples) - len(shown)} runs > {upper:.3g} ms not shown",
                          ha="right", va="bottom", fontsize=7, transform=hist.transAxes)
            for stat, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
                value = result.stats.get(stat)
                hist.axvline(value, color="black", linestyle=style, label=f"{stat} {value:.3g} ms")
            line.plot(range(1, len(samples) + 1), samples, linewidth=0.8, color="#4878a8")
            line.axhline(result.stats.p50, color="black", linewidth=0.8, label="p50")
            line.set_xlabel("run")
            line.set_ylabel("latency (ms)")
            line.set_title(f"timeline ({len(samples)} runs, CV {result.stats.cv:.1%})")
        else:
            value = result.value("p50")
            if value is not None:
                hist.axvline(value, color="purple", label=f"estimate {value:.3g} ms")
            line.text(0.5, 0.5, "no timed runs: estimated figure only", ha="center", va="center",
                      transform=line.transAxes)
            line.set_axis_off()
        for verdict in result.verdicts:
            if verdict.kind in ("latency", "regression") and verdict.limit is not None and (
                    result.stats is None or verdict.limit <= 5 * result.stats.p99):
                colour = "red" if verdict.status == "fail" else "green"
                hist.axvline(verdict.limit, color=colour, linewidth=1.5, label=f"{verdict.name} ({verdict.status})")
        hist.set_xlabel("latency (ms)")
        hist.set_ylabel("runs")
        hist.set_title("histogram")
        hist.legend(fontsize=7)
        fig.suptitle(f"{title} — {label}")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
