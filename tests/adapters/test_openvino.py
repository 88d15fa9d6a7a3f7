"""OpenVINO adapter: IR in the bundle, fp32 really f32 (not OpenVINO's silent bf16), bf16 and int8 paths."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgekit
from edgekit.adapters.base import CompileOptions
from edgekit.adapters.openvino import CONFIG_FILE, OpenVinoAdapter, cpu_precisions
from edgekit.errors import BadInputError, UnsupportedError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.targets import get_profile
from tests._adapters_helpers import qdq_model, tiny_conv_model

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'edgekit[openvino]')")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_conv_model(tmp_path_factory.mktemp("ov") / "tiny.onnx", channels=8, size=16)


def _feeds(n: int = 4) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def test_fp32_is_pinned_to_f32_and_agrees_with_onnxruntime(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="fp32", threads=1)
    bundle = result.bundle
    info = bundle.manifest.info
    assert info["precision_used"] == "fp32"
    assert info["inference_precision_hint"] == "f32"
    assert "bf16" not in info["runtime_precisions"]  # no kernel silently in bf16
    assert {"model.xml", "model.bin", CONFIG_FILE} <= set(bundle.manifest.files)
    config = json.loads((bundle.path / CONFIG_FILE).read_text())
    assert config["properties"]["INFERENCE_PRECISION_HINT"] == "f32"
    runner = edgekit.load(bundle.path, threads=1)
    for feeds in _feeds():
        got = runner.run(feeds)
        np.testing.assert_allclose(got["logits"], run_reference(model, feeds)["logits"], rtol=1e-4, atol=1e-5)


def test_outputs_are_copies_not_reused_buffers(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="openvino", threads=1)
    runner = edgekit.load(result.bundle.path)
    a, b = _feeds(2)
    first = runner.run(a)["logits"]
    kept = first.copy()
    runner.run(b)
    np.testing.assert_array_equal(first, kept)


def test_bf16_computes_in_bf16_when_the_cpu_has_it(model, tmp_path):
    if "bf16" not in cpu_precisions():
        with pytest.raises(UnsupportedError):
            OpenVinoAdapter().compile(model, get_profile("cpu"), CompileOptions(precision="bf16"), tmp_path)
        return
    result = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="bf16", threads=1)
    info = result.bundle.manifest.info
    assert info["precision_used"] == "bf16"
    assert info["runtime_precisions"].get("bf16", 0) > 0
    assert info["verification"]["passed"]
    assert info["verification"]["precision"] == "bf16"  # judged with the bf16 tolerance


def test_fp16_is_refused_not_relabelled_when_the_cpu_lacks_it(model, tmp_path):
    if "fp16" in cpu_precisions():
        pytest.skip("this CPU computes fp16 natively")
    with pytest.raises(UnsupportedError, match="fp16"):
        OpenVinoAdapter().compile(model, get_profile("cpu"), CompileOptions(precision="fp16"), tmp_path)


def test_int8_from_float_model_uses_nncf_with_calibration(model, tmp_path):
    pytest.importorskip("nncf", reason="nncf is not installed")
    result = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="int8", calib="synthetic",
                             threads=1)
    info = result.bundle.manifest.info
    assert info["precision_used"] == "int8"
    assert info["int8"].startswith("NNCF")
    assert {"u8", "i8"} & set(info["runtime_precisions"])  # integer kernels really run
    assert info["verification"]["passed"]


def test_int8_from_float_model_without_calibration_is_refused(model, tmp_path):
    with pytest.raises(BadInputError, match="calibration"):
        OpenVinoAdapter().compile(model, get_profile("cpu"), CompileOptions(precision="int8"), tmp_path)


def test_qdq_model_runs_as_int8_directly(model, tmp_path):
    qdq = qdq_model(model, tmp_path / "tiny.qdq.onnx")
    result = edgekit.compile(qdq, output=tmp_path / "b", backend="openvino", precision="int8", threads=1)
    info = result.bundle.manifest.info
    assert info["precision_used"] == "int8"
    assert info["int8"].startswith("QDQ")
    assert {"u8", "i8"} & set(info["runtime_precisions"])
    runner = edgekit.load(result.bundle.path, threads=1)
    feeds = _feeds(1)[0]
    got, ref = runner.run(feeds)["logits"], run_reference(qdq, feeds)["logits"]
    assert float(np.dot(got.ravel(), ref.ravel()) / (np.linalg.norm(got) * np.linalg.norm(ref))) > 0.99


@pytest.mark.parametrize("options, match", [
    ({"perf_hint": "latency"}, "unknown option 'perf_hint'"),
    ({"performance_hint": "fastest"}, "unknown performance_hint"),
    ({"subset_size": "10"}, "has type str"),
])
def test_bad_adapter_options_are_refused(model, tmp_path, options, match):
    with pytest.raises(BadInputError, match=match):
        OpenVinoAdapter().compile(model, get_profile("cpu"), CompileOptions(adapter_options=options), tmp_path)


def test_capabilities_follow_the_cpu_flags():
    caps = OpenVinoAdapter().capabilities(get_profile("cpu"))
    assert caps.toolchain.available and caps.device.available
    assert caps.precisions == cpu_precisions()
    assert "fp32" in caps.precisions
    gpu = OpenVinoAdapter().capabilities(get_profile("cuda"))
    assert not gpu.device.available and "CPU targets only" in gpu.device.reason


def test_input_shapes_fix_a_dynamic_batch(tmp_path):
    dyn = tiny_conv_model(tmp_path / "dyn.onnx", dynamic_batch=True)
    result = edgekit.compile(dyn, output=tmp_path / "b", backend="openvino", input_shapes=["input:2,3,8,8"], threads=1)
    runner = edgekit.load(result.bundle.path)
    feeds = random_inputs(runner.input_specs, dims={"batch": 2})
    assert runner.run(feeds)["logits"].shape == (2, 10)


def _scalar_input_model(path):
    """[1,4] audio chunk times a 0-d int64 sample rate (silero-vad's `sr` input is such a scalar)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "srf"], ["y"])]
    graph = helper.make_graph(nodes, "scalar_sr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                                   helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, str(path))
    return path


def test_a_scalar_input_stays_scalar(tmp_path):
    model = _scalar_input_model(tmp_path / "sr.onnx")
    result = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="fp32", threads=1)
    assert result.bundle.manifest.info["precision_used"] == "fp32"
    runner = edgekit.load(result.bundle.path, threads=1)
    feeds = {"x": np.ones((1, 4), np.float32), "sr": np.array(16000, np.int64)}
    np.testing.assert_allclose(runner.run(feeds)["y"], np.full((1, 4), 16000.0, np.float32))


def test_an_openvino_error_keeps_its_real_cause_on_one_line():
    from edgekit.adapters.openvino import openvino_message

    raw = RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:224:\n"
                       "Check 'is_dynamic || port.get_shape() == tensor->get_shape()' failed at "
                       "src/plugins/intel_cpu/src/infer_request.cpp:669:\n"
                       "The input tensor size is not equal to the model input type: got [1] expecting [].\n\n")
    text = openvino_message(raw)
    assert "\n" not in text
    assert text.startswith("The input tensor size is not equal to the model input type: got [1] expecting []")
    assert "infer_request.cpp:224" in text  # where, after what


def test_a_runtime_failure_reaches_the_user_with_its_cause(tmp_path):
    model = _scalar_input_model(tmp_path / "sr.onnx")
    result = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="fp32", threads=1)
    runner = edgekit.load(result.bundle.path, threads=1)
    # the cause: a [1]-shaped tensor for a scalar input (OpenVINO words it per input path: copy or zero-copy)
    cause = r"got \[1\] expecting \[\]|input \(shape=\[\]\) and the tensor \(shape=\(1\)\)"
    with pytest.raises(RuntimeError, match=cause):
        runner.run({"x": np.ones((1, 4), np.float32), "sr": np.array([16000], np.int64)}, check_inputs=False)


def test_throughput_uses_openvino_async_queue_with_the_throughput_hint(model, tmp_path):
    bundle = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="fp32").bundle
    with edgekit.load(bundle.path) as runner:
        feed = random_inputs(runner.input_specs, seed=0)
        run = runner.throughput(feed, streams=2, seconds=0.3, items_per_call=1)
    assert "AsyncInferQueue" in run.method and "THROUGHPUT hint" in run.method
    assert run.details["num_streams"] == 2 and run.streams == run.details["infer_requests"] >= 2
    assert run.details["inference_precision"] == "f32"  # the bundle's precision, not OpenVINO's default bf16
    assert run.details["compile_ms"] > 0  # the THROUGHPUT compile is reported, not hidden
    assert run.calls == len(run.latencies_ms) > 0 and run.items_per_s > 0
    assert all(x > 0 for x in run.latencies_ms)


def test_throughput_refuses_hostile_streams_before_compiling(model, tmp_path):
    bundle = edgekit.compile(model, output=tmp_path / "b", backend="openvino", precision="fp32").bundle
    with edgekit.load(bundle.path) as runner:
        feed = random_inputs(runner.input_specs, seed=0)
        for bad in (0, -1, 10**9, True, 2.5):
            with pytest.raises(BadInputError, match="streams"):
                runner.throughput(feed, streams=bad, seconds=0.1)
