"""benchmarks/quantize_memory.py: the peak-RSS sampler sees a child's allocation (the YOLO run itself is manual)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "quantize_memory.py"


def test_peak_rss_of_a_child_process_is_measured():
    spec = importlib.util.spec_from_file_location("_edgekit_bench_quantize_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = "import time, numpy as np; a = np.ones(300 * 2**20 // 8); time.sleep(0.5); print('ok')"
    measured = module.run_measured([sys.executable, "-c", code], interval=0.02)
    assert measured["exit_code"] == 0 and "ok" in measured["output_tail"]
    assert measured["peak_rss_bytes"] > 250 * 2**20
