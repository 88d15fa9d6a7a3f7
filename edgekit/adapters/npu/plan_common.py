"""Plan helpers shared by the vendor adapters: calibration samples and per-channel preprocessing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInputError

CALIB_DIR = "plan/calib"
MAX_CALIB_SAMPLES = 32


def save_calibration(calibration: Any, out_dir: Path, limit: int = MAX_CALIB_SAMPLES) -> dict[str, Any]:
    """Write up to `limit` calibration samples as .npy under plan/calib, for the vendor calibration step."""
    if calibration is None:
        return {"samples": 0, "note": "no calibration data given"}
    target = out_dir / CALIB_DIR
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for i, sample in enumerate(calibration):
        if i >= limit:
            break
        for name, array in sample.items():
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            np.save(target / f"{i:04d}_{safe}.npy", np.asarray(array))
        count += 1
    return {"samples": count, "dir": CALIB_DIR, "description": getattr(calibration, "description", ""),
            "synthetic": bool(getattr(calibration, "synthetic", False))}


def per_channel(values: tuple[float, ...] | None, channels: int, what: str) -> list[float] | None:
    """mean/std broadcast to the channel count (one value for all channels, or one per channel)."""
    if values is None:
        return None
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in values) or (what == "std" and any(v <= 0 for v in values)):
        raise BadInputError(f"{what} values must be finite{' and > 0' * (what == 'std')}, got {values}",
                            path=f"--{what}")  # checked before broadcasting: a single 0 was a ZeroDivisionError
    if len(values) == 1:
        return [values[0]] * channels
    if len(values) != channels:
        raise BadInputError(f"{what} has {len(values)} values but the input has {channels} channels",
                            path=f"--{what}")
    return list(values)
