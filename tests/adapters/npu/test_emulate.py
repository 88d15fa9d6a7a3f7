"""Host emulation of the NPU numerics: fp16 round-trip and vendor-style INT8 (provenance emulated)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgekit.adapters.npu.emulate import emulate, fp16_roundtrip_model, scheme_for
from edgekit.onnxio import input_specs, random_inputs, run_reference
from tests._npu_helpers import detector


def test_fp16_roundtrip_rounds_weights_and_activations(tmp_path):
    src = detector(tmp_path / "d.onnx")
    model = fp16_roundtrip_model(onnx.load(str(src)))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            np.testing.assert_array_equal(array, array.astype(np.float16).astype(np.float32))
    casts = [n for n in model.graph.node if n.op_type == "Cast" and n.name.endswith("__to_fp16")]
    assert len(casts) >= 8  # one per float activation
    assert [o.name for o in model.graph.output] == ["detections"]
    out = tmp_path / "fp16.onnx"
    onnx.save(model, str(out))
    feeds = random_inputs(input_specs(model), seed=3)
    ref, got = run_reference(src, feeds)["detections"], run_reference(out, feeds)["detections"]
    assert not np.array_equal(ref, got)  # the rounding really happens
    np.testing.assert_allclose(got, ref, rtol=5e-3, atol=5e-3)


def test_vendor_int8_schemes_differ_where_the_vendors_do(tmp_path):
    src = detector(tmp_path / "d.onnx")
    amct = scheme_for("atc", "int8")
    mm_tensor = scheme_for("magicmind", "int8", weight_granularity="per_tensor")
    assert not amct.symmetric_activations and amct.per_channel_weights
    assert mm_tensor.symmetric_activations and not mm_tensor.per_channel_weights
    zero_points = {}
    for name, scheme in (("amct", amct), ("mm", mm_tensor)):
        info = emulate(src, tmp_path / f"{name}.onnx", scheme)
        assert info["synthetic_calibration"] is True  # no calibration given: flagged
        model = onnx.load(str(tmp_path / f"{name}.onnx"))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        act_zp = [inits[n.input[2]] for n in model.graph.node
                  if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits]
        zero_points[name] = act_zp
    assert any(zp.dtype == np.uint8 or np.any(zp != 0) for zp in zero_points["amct"])  # asymmetric
    assert all(np.all(zp == 0) for zp in zero_points["mm"])  # symmetric


def test_int8_emulation_uses_the_given_calibration_and_says_so(tmp_path):
    """The QDQ steps come from core edgekit.qdq (not the quantize stage): samples counted, not synthetic."""
    src = detector(tmp_path / "d.onnx")
    specs = input_specs(onnx.load(str(src)))
    calib = [random_inputs(specs, seed=i) for i in range(3)]
    info = emulate(src, tmp_path / "e.onnx", scheme_for("atc", "int8"), calibration=calib)
    assert info["quantizer"].startswith("edgekit.qdq") and info["calibration_samples"] == 3
    assert info["synthetic_calibration"] is False
    ops = {n.op_type for n in onnx.load(str(tmp_path / "e.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    feeds = random_inputs(specs, seed=7)
    ref, got = run_reference(src, feeds)["detections"], run_reference(tmp_path / "e.onnx", feeds)["detections"]
    assert float(np.dot(ref.ravel(), got.ravel()) / (np.linalg.norm(ref) * np.linalg.norm(got))) > 0.9
