"""Partition (subgraphs, fallbacks, MAC share, copies) and the roofline estimate (provenance estimated)."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from edgekit.adapters.base import NodeVerdict, Provenance
from edgekit.adapters.npu.partition import partition
from edgekit.adapters.npu.profile import npu_profile
from edgekit.adapters.npu.roofline import estimate_latency
from edgekit.errors import BadInputError
from edgekit.targets import TargetProfile, get_profile
from tests._npu_helpers import detector, loop_model


def _chain() -> onnx.ModelProto:
    """x -> a -> b -> c -> y (three Relu nodes)."""
    nodes = [helper.make_node("Relu", [i], [o], name=n) for i, o, n in (("x", "t1", "a"), ("t1", "t2", "b"),
                                                                        ("t2", "y", "c"))]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_a_host_node_in_the_middle_splits_the_npu_graph():
    model = _chain()
    verdicts = [NodeVerdict("a", "Relu", "npu"), NodeVerdict("b", "Relu", "unsupported"),
                NodeVerdict("c", "Relu", "npu")]
    part = partition(model, verdicts, [10, 30, 60])
    assert part.placements == ["npu", "cpu", "npu"]
    assert part.npu_subgraphs == 2 and part.cpu_fallbacks == 1 and part.cpu_segments == 1
    assert part.mac_share_npu == pytest.approx(70 / 100)
    assert [(c.tensor, c.direction) for c in part.copies] == [("x", "H2D"), ("t1", "D2H"), ("t2", "H2D"),
                                                              ("y", "D2H")]
    assert all(c.bytes == 256 * 4 for c in part.copies)


def test_all_on_npu_is_one_subgraph_with_two_copies():
    part = partition(_chain(), [NodeVerdict(n, "Relu", "npu") for n in "abc"], [1, 1, 1])
    assert part.npu_subgraphs == 1 and part.cpu_fallbacks == 0 and len(part.copies) == 2
    assert part.mac_share_npu == 1.0


def test_estimate_is_labelled_and_lists_its_assumptions(tmp_path):
    model = onnx.load(str(detector(tmp_path / "d.onnx", size=64)))
    estimate, part = estimate_latency(model, npu_profile(get_profile("ascend310")), precision="fp16")
    assert estimate.provenance == Provenance.ESTIMATED and estimate.latency_ms > 0
    text = " | ".join(estimate.assumptions)
    assert "16 TOPS" in text or "8 TFLOPS" in text
    assert "assumed" in text and "51.2 GB/s" in text  # the bandwidth is marked as an assumption
    assert "2.49 ms" in text  # the sanity anchor is stated, labelled as another model
    assert part.npu_subgraphs == 1
    assert sum(n["time_ms"] for n in estimate.per_node) == pytest.approx(estimate.latency_ms)


def test_estimate_grows_with_work_and_int8_is_not_slower(tmp_path):
    profile = npu_profile(get_profile("ascend310"))
    small, _ = estimate_latency(onnx.load(str(detector(tmp_path / "s.onnx", size=32))), profile)
    big_fp16, _ = estimate_latency(onnx.load(str(detector(tmp_path / "b.onnx", size=128))), profile)
    big_int8, _ = estimate_latency(onnx.load(str(detector(tmp_path / "b.onnx", size=128))), profile,
                                   precision="int8")
    assert big_fp16.latency_ms > small.latency_ms
    assert big_int8.latency_ms <= big_fp16.latency_ms


def test_host_fallback_costs_its_penalty(tmp_path):
    profile = npu_profile(get_profile("ascend310"))
    estimate, part = estimate_latency(onnx.load(str(loop_model(tmp_path / "l.onnx"))), profile)
    assert part.cpu_fallbacks == 1
    host = [n for n in estimate.per_node if n["placement"] == "cpu"]
    assert host and host[0]["time_ms"] >= profile.efficiency.cpu_fallback_ms


def test_profiles_cite_or_mark_every_figure():
    for name in ("ascend310", "ascend310p", "mlu220", "mlu270"):
        profile = npu_profile(get_profile(name))
        for fig in (profile.peak_int8, profile.peak_fp16, profile.bandwidth, profile.host_link):
            assert fig.source or (fig.assumed and fig.basis), f"{name}: {fig}"
    assert npu_profile(get_profile("ascend310")).peak_int8.value == 16
    assert npu_profile(get_profile("ascend310p")).soc_version == "Ascend310P3"
    assert npu_profile(get_profile("mlu220")).soc_version == "mtp_220"
    assert npu_profile(get_profile("mlu270")).peak_int8.value == 128


def test_a_figure_without_source_or_assumed_is_refused():
    raw = {"name": "x", "kind": "npu", "adapters": [], "npu": {
        "soc_version": "X", "peak": {"int8": {"value": 1}, "fp16": {"value": 1, "assumed": True}},
        "bandwidth": {"value": 1, "assumed": True}, "host_link": {"value": 1, "assumed": True}}}
    with pytest.raises(BadInputError, match="neither a source"):
        npu_profile(TargetProfile("x", "", "npu", (), ("int8",), "x.toml", raw))
