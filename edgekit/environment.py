"""The machine a figure was taken on: CPU, threads, governor, versions, and the process's peak memory.

Two latency figures are only compared when their fingerprints agree on what matters
(`fingerprint_differences`); caches of measured figures key on `host_fingerprint`. Core layer: no
adapters, no checks, no torch.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgekit import __version__

# /proc/cpuinfo flags that decide how fast INT8 (and BF16) kernels can be on this CPU.
INT8_FLAGS = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
    "amx_bf16", "avxvnniint8",
    # ARM (`Features` line)
    "asimd", "asimddp", "asimdhp", "dotprod", "i8mm", "bf16", "sve", "sve2", "sme",
)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_info(cpuinfo_text: str | None = None) -> dict[str, Any]:
    """CPU model and the INT8/BF16-relevant flags (from /proc/cpuinfo where there is one)."""
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    text = cpuinfo_text if cpuinfo_text is not None else (_read("/proc/cpuinfo") or "")
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return {"model": model, "int8_flags": sorted(f for f in flags if f in INT8_FLAGS)}


def environment_fingerprint(
    *, threads: int | None = None, bundle: Mapping[str, Any] | None = None, versions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """What a latency figure depends on besides the model: CPU, threads, governor, OS, versions.

    `versions`: the installed tool versions (`edgekit.artifact.tool_versions()`), passed in because the
    artifact module is this one's sibling in the core layer.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    physical = None
    with contextlib.suppress(Exception):
        import psutil

        physical = psutil.cpu_count(logical=False)
    cpu = cpu_info()
    bundle = dict(bundle or {})
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {
        "cpu_model": cpu["model"],
        "cpu_flags": cpu["int8_flags"],
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical,
        "usable_cpus": usable,
        "threads": threads,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "load_average": load,  # 1/5/15-min load when the bench started: a busy host explains noise
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "os": platform.platform(),
        "python": platform.python_version(),
        "edgekit": __version__,
        "tool_versions": dict(versions or {}),
        "bundle_tool_versions": bundle.get("tool_versions", {}),
        "target": bundle.get("target"),
        "adapter": bundle.get("adapter"),
        "precision": bundle.get("precision_used") or bundle.get("precision"),
        "bundle_sha256": bundle.get("sha256"),
    }


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TVM_NUM_THREADS", "KMP_AFFINITY",
              "OMP_PROC_BIND", "GOMP_CPU_AFFINITY")

# Fields that make two latency figures incomparable when they differ (a new bundle sha is the point).
# "device": set on figures from a remote device (edgekit.devices), absent on the host's own: never compared.
RELEVANT_FIELDS = ("cpu_model", "cpu_flags", "machine", "threads", "usable_cpus", "target", "adapter", "governor",
                   "device")


def fingerprint_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Relevant fields that differ between two fingerprints (an unreadable governor is not a difference)."""
    diffs = {}
    for key in RELEVANT_FIELDS:
        va, vb = a.get(key), b.get(key)
        if key == "governor" and (va is None or vb is None):
            continue
        if va != vb:
            diffs[key] = (va, vb)
    return diffs


def peak_rss_mb() -> tuple[float | None, str]:
    """Peak resident memory of this process (includes Python and the backend), with the method."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return peak * scale / 2**20, "getrusage ru_maxrss (process peak)"
    except (ImportError, OSError):
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20, "psutil rss at end (not a peak)"
    except Exception:
        return None, "not measurable here"


def host_fingerprint() -> str:
    """A short stable key for "this machine" (CPU model and flags, logical CPUs): measured figures cached
    under it are not reused on another host. Unlike `environment_fingerprint`, nothing in it changes run to run.
    """
    cpu = cpu_info()
    flags = "+".join(cpu["int8_flags"]) or "noflags"
    return f"{platform.machine()}-{cpu['model']}-{os.cpu_count() or 0}cpu-{flags}".replace(" ", "_")
