"""Per-node INT8 gain (ORT profiler) and the speed-aware fallback order; no assertion on how fast anything is."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.onnxio import load_onnx
from edgekit.qdq import QdqSettings, calibrate, prepare_model, quantize_qdq, quantized_nodes
from edgekit.stages import quantize as qmod
from edgekit.stages._quant_eval import NodeSensitivity
from edgekit.stages.node_speed import NodeGain, NodeGains, _Attribution, node_gains, speed_aware_order
from edgekit.stages.quantize import quantize
from tests._quant_helpers import OUTLIER_NODES, outlier_assets, random_samples


def _two_conv(path):
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "two_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def two_conv(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_conv")
    path = _two_conv(root / "m.onnx")
    prepared = prepare_model(load_onnx(path), root, per_channel=True, source=path)
    samples = random_samples((1, 3, 16, 16), 4)
    ranges = calibrate(prepared, samples, root)
    int8 = quantize_qdq(prepared, ranges, QdqSettings("minmax", True, False, "auto", "int8"), workdir=root)
    return prepared.model.SerializeToString(), int8, samples[0]


def test_node_gains_maps_each_quantized_node_of_a_two_conv_model(two_conv):
    fp32, int8, feed = two_conv
    quantized = quantized_nodes(int8)
    assert {"conv1", "conv2"} <= {n for n, _ in quantized}
    gains = node_gains(fp32, int8, feed, quantized, threads=1, runs=2)
    assert gains.unmapped == []
    for g in gains.nodes:
        assert g.fp32_ms is not None and g.int8_ms is not None and g.fp32_ms >= 0 and g.int8_ms >= 0
        assert g.gain_ms == pytest.approx(g.fp32_ms - g.int8_ms, abs=1e-4)
    assert (gains.provenance, gains.runs, gains.threads, gains.shapes) == ("measured", 2, 1, "x:1x3x16x16")
    assert "onnxruntime CPU profiler" in gains.label and "2 run(s)" in gains.label
    data = gains.to_json()
    assert {"provenance", "tool", "runs", "threads", "shapes", "unmapped", "nodes"} <= set(data)
    assert gains.fp32_total_ms > 0 and gains.int8_total_ms > 0


def test_attribution_follows_ort_renames(two_conv):
    """The names ORT gives optimised nodes (found by experiment) map back to the QDQ node doing the work."""
    _, int8, _ = two_conv
    att = _Attribution(onnx.ModelProto.FromString(int8), ["conv1", "conv2"])
    assert att.shares("conv1_token_7", []) == {"conv1": 1.0}  # QLinearConv
    assert att.shares("r1_nchwc", ["reorder_token_1"]) == {"conv1": 1.0}  # FP32 NCHWc Conv(+Relu) named by output
    assert att.shares("ReorderOutput_token_3", ["r1"]) == {"conv1": 1.0}  # charged by the tensor it writes
    assert att.shares("conv2/ConvActivationFusion/", []) == {"conv2": 1.0}
    assert att.shares("x_QuantizeLinear", []) == {"conv1": 1.0}  # a Q feeds the INT8 node reading it
    assert att.shares("y_DequantizeLinear", []) == {"conv2": 1.0}  # a DQ serves the INT8 node writing it
    assert att.shares("Transpose", ["Transpose_out0"]) == {}  # layout: unattributed


def _sens(node: str, sqnr: float | None, **kw) -> NodeSensitivity:
    return NodeSensitivity(node, "Conv", sqnr, None, **kw)


def test_high_harm_and_no_gain_is_kept_float_before_same_harm_with_a_large_gain():
    ranked = [_sens("gains_a_lot", 10.0), _sens("gains_nothing", 10.0), _sens("mild", 30.0)]
    order = speed_aware_order(ranked, {"gains_a_lot": 5.0, "gains_nothing": 0.0, "mild": 0.01})
    assert order[0] == "gains_nothing"
    assert order.index("gains_nothing") < order.index("gains_a_lot")
    # harm per ms: mild (1e-3 / 0.01 ms = 0.1) beats gains_a_lot (0.1 / 5 ms = 0.02)
    assert order == ["gains_nothing", "mild", "gains_a_lot"]


def test_unmapped_and_unmeasured_nodes_keep_their_sensitivity_slot():
    ranked = [_sens("a", 5.0), _sens("unmapped", 8.0), _sens("b", 9.0), _sens("unmeasured", None), _sens("c", 20.0)]
    order = speed_aware_order(ranked, {"a": 10.0, "unmapped": None, "b": 0.5, "unmeasured": 0.0, "c": -1.0})
    assert order[1] == "unmapped" and order[3] == "unmeasured"
    assert order[0] == "c"  # INT8 slower: free to keep float
    assert speed_aware_order(ranked, {}) == [s.node for s in ranked]  # nothing mapped: sensitivity order


def test_per_layer_only_nodes_join_the_alone_scale_through_nodes_that_have_both():
    # "alone" measured alone (SQNR 10 dB = noise 0.1) and per layer (10 dB lost = factor 9): scale 0.1 / 9
    ranked = [_sens("alone", 10.0, local_loss_db=10.0), _sens("local_big", None, method="local", local_loss_db=10.0),
              _sens("local_small", None, method="local", local_loss_db=0.1)]
    # local_big: same harm as alone, 10x less gain -> first; local_small: harm 0.1/9*0.023 per 1 ms -> last
    order = speed_aware_order(ranked, {"alone": 10.0, "local_big": 1.0, "local_small": 1.0})
    assert order == ["local_big", "alone", "local_small"]
    # without a node that has both figures the two kinds cannot be compared: each keeps to its own slots
    ranked[0] = _sens("alone", 10.0)
    order = speed_aware_order(ranked, {"alone": 10.0, "local_big": 1.0, "local_small": 0.0})
    assert order == ["alone", "local_small", "local_big"]


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return outlier_assets(tmp_path_factory.mktemp("outlier_speed"))


def test_quantize_meets_the_budget_with_and_without_speed_aware_order(outlier, tmp_path, monkeypatch):
    kw = {"eval": outlier["eval"], "min_sqnr": 25.0, "speed": False}
    plain = quantize(outlier["model"], tmp_path / "plain.onnx", outlier["calib"], speed_aware=False, **kw)
    assert plain.node_speed is None and set(plain.excluded) == set(OUTLIER_NODES)
    assert any(n.startswith("fallback order: sensitivity") for n in plain.notes)

    measured = quantize(outlier["model"], tmp_path / "measured.onnx", outlier["calib"], **kw)
    assert measured.report.min_sqnr_db >= 25.0
    assert measured.node_speed is not None and measured.node_speed.provenance == "measured"
    assert measured.to_json()["node_speed"]["runs"] == measured.node_speed.runs
    assert any(s.int8_gain_ms is not None for s in measured.sensitivity)
    # microsecond kernels are jitter: this tiny model keeps the sensitivity order, and says why
    assert any("profiler jitter" in n for n in measured.notes) and set(measured.excluded) == set(OUTLIER_NODES)

    def given(fp32, int8, feed, quantized, *, threads):
        gain = {"head": 0.0, "gap": 0.5, "conv_outlier": 3.0, "conv_mix": 3.0}
        nodes = [NodeGain(n, op, 1.0, 1.0 - gain.get(n, 0.0), gain.get(n)) for n, op in quantized]
        return NodeGains(nodes, 5, threads, "x:1x4x8x8", 10.0, 4.0, 0.0, 0.0)

    monkeypatch.setattr(qmod, "node_gains", given)
    aware = quantize(outlier["model"], tmp_path / "aware.onnx", outlier["calib"], **kw)
    assert aware.report.min_sqnr_db >= 25.0  # the budget stays the hard constraint
    # conv_mix kills the output (dead: first whatever it gains); head gains nothing, so it goes float before
    # conv_outlier, which harms more but gains 3 ms
    assert aware.excluded == ["conv_mix", "head", "conv_outlier"]
    assert any(n.startswith("fallback order: speed-aware") for n in aware.notes)
    assert {s.node: s.int8_gain_ms for s in aware.sensitivity}["head"] == 0.0


def test_a_profiler_failure_falls_back_to_the_sensitivity_order(outlier, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(qmod, "node_gains", broken)
    result = quantize(outlier["model"], tmp_path / "q.onnx", outlier["calib"], eval=outlier["eval"], min_sqnr=25.0,
                      speed=False)
    assert set(result.excluded) == set(OUTLIER_NODES) and result.node_speed is None
    assert any("profiling for the speed-aware order failed: No space left" in n for n in result.notes)
