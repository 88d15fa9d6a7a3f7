"""Parsers for ais_bench and mm_run output, on recorded-format samples in tests/fixtures/npu."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.adapters.npu.vendor_output import parse_ais_bench, parse_mm_run
from edgekit.errors import BadInputError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "npu"


def test_ais_bench_summary():
    (result,) = parse_ais_bench((FIXTURES / "ais_bench_resnet50.txt").read_text())
    assert result.npu_compute.min_ms == pytest.approx(2.4560000896453857)
    assert result.npu_compute.median_ms == pytest.approx(2.4700000286102295)
    assert result.npu_compute.percentiles == {"99": pytest.approx(2.5083399391174317)}
    assert result.h2d is not None and result.h2d.mean_ms == pytest.approx(0.0934886932373047)
    assert result.d2h is not None and result.throughput == pytest.approx(404.5028573025093)


def test_ais_bench_one_summary_per_device():
    results = parse_ais_bench((FIXTURES / "ais_bench_two_devices.txt").read_text())
    assert [round(r.npu_compute.mean_ms, 4) for r in results] == [3.5538, 3.616]
    assert results[0].h2d is None


def test_mm_run_summary_first_shape_group():
    result = parse_mm_run((FIXTURES / "mm_run_resnet50.txt").read_text())
    assert result.iterations == 1000 and result.wall_time_s == pytest.approx(2.93814)
    assert result.throughput_qps == pytest.approx(340.351)
    assert result.compute.mean_ms == pytest.approx(2.49018)  # device clock preferred
    assert result.compute_host is not None and result.compute_host.median_ms == pytest.approx(2.549)
    assert result.total_host is not None and result.total_host.percentiles["99"] == pytest.approx(2.874)


@pytest.mark.parametrize("parser", [parse_ais_bench, parse_mm_run])
def test_unrelated_output_is_refused(parser):
    with pytest.raises(BadInputError):
        parser("ATC run success, welcome to the next use.\n")
