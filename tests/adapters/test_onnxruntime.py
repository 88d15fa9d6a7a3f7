"""ONNX Runtime adapter: optimized model saved in the bundle, options validated, int8 = QDQ, GPU honest."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import edgekit
from edgekit.adapters.base import CompileOptions
from edgekit.adapters.onnxruntime import OnnxRuntimeAdapter, to_float16
from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.targets import get_profile
from tests._adapters_helpers import qdq_model, tiny_conv_model


@pytest.fixture
def model(tmp_path):
    return tiny_conv_model(tmp_path / "tiny.onnx", channels=8, size=16)


def test_bundle_holds_the_optimized_graph(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime")
    info = result.bundle.manifest.info
    assert info["model_file"] == "model.opt.onnx"
    assert info["provider"] == "CPUExecutionProvider"
    assert info["saved_optimization"] == "extended"  # portable: no CPU-specific layout transforms
    optimized = onnx.load(str(result.bundle.path / "model.opt.onnx"))
    assert len(optimized.graph.node) < len(onnx.load(str(model)).graph.node)  # Conv+Relu fused at least
    assert "model.opt.onnx" in result.bundle.manifest.files


def test_optimization_disabled_runs_source(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime",
                             adapter_options={"optimization": "disable"})
    assert result.bundle.manifest.info["model_file"] == "source.onnx"
    runner = edgekit.load(result.bundle.path, threads=1)
    feeds = random_inputs(runner.input_specs, seed=1)
    np.testing.assert_allclose(runner.run(feeds)["logits"], run_reference(model, feeds)["logits"], rtol=1e-4)


@pytest.mark.parametrize("options, match", [
    ({"optimisation": "all"}, "unknown option 'optimisation'"),
    ({"optimization": "max"}, "unknown optimization level"),
    ({"provider": "rocm"}, "unknown onnxruntime provider"),
    ({"save_optimized": "yes"}, "has type str"),
])
def test_bad_adapter_options_are_refused(model, tmp_path, options, match):
    with pytest.raises(BadInputError, match=match):
        OnnxRuntimeAdapter().compile(model, get_profile("cpu"), CompileOptions(adapter_options=options), tmp_path)


def test_int8_needs_a_qdq_model(model, tmp_path):
    with pytest.raises(BadInputError, match="needs a quantized"):
        OnnxRuntimeAdapter().compile(model, get_profile("cpu"), CompileOptions(precision="int8"), tmp_path)


def test_int8_qdq_model_compiles_and_is_judged_against_float(model, tmp_path):
    qdq = qdq_model(model, tmp_path / "tiny.qdq.onnx")
    result = edgekit.compile(qdq, output=tmp_path / "b", backend="onnxruntime", precision="int8")
    v = result.verification
    assert v["passed"] and "int8 rule" in v["reason"]
    assert result.precision_used == "int8"
    assert result.bundle.manifest.info["precision"] == "int8"


def test_float16_conversion_keeps_fp32_io_and_is_close(model, tmp_path):
    converted = to_float16(onnx.load(str(model)))
    path = tmp_path / "fp16.onnx"
    onnx.save(converted, str(path))
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    inits = {i.name: i.data_type for i in converted.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in inits.values()
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    ref = run_reference(model, feeds)["logits"]
    got = run_reference(path, feeds)["logits"]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=5e-2, rtol=5e-2)


def test_cuda_target_is_unavailable_with_a_reason_without_a_gpu(model, tmp_path):
    from edgekit.adapters.onnxruntime import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this onnxruntime has CUDA; covered by the conformance suite on the cuda target")
    avail = OnnxRuntimeAdapter().availability(get_profile("cuda"))
    assert not avail.available and "CUDAExecutionProvider" in avail.reason
    with pytest.raises(ToolchainMissingError, match="CUDAExecutionProvider"):
        edgekit.compile(model, output=tmp_path / "b", target="cuda", backend="onnxruntime")
    assert not (tmp_path / "b").exists()


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_gpu_path_converts_fp16_and_refuses_a_silent_cpu_fallback(model, tmp_path, monkeypatch):
    """Without a GPU: pretend ORT has CUDA; compile must write the fp16 model, load must notice the CPU fallback."""
    import edgekit.adapters.onnxruntime as ort_adapter
    from edgekit.adapters.base import Availability, CompiledModel

    if "CUDAExecutionProvider" in ort_adapter.available_providers():
        pytest.skip("a real CUDA onnxruntime is present")
    monkeypatch.setattr(ort_adapter, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort_adapter, "gpu_device", lambda: Availability.yes("GPU 0: pretend"))
    adapter, cuda = OnnxRuntimeAdapter(), get_profile("cuda")
    caps = adapter.capabilities(cuda)
    assert caps.toolchain.available and "fp16" in caps.precisions
    compiled = adapter.compile(model, cuda, CompileOptions(precision="fp16"), tmp_path)
    assert compiled.info["provider"] == "CUDAExecutionProvider" and compiled.files == ["model.fp16.onnx"]
    assert "model.opt.onnx" not in compiled.files  # CPU-optimized graphs are not saved for GPU providers
    bundle = CompiledModel(tmp_path, "onnxruntime", "cuda", "fp16", compiled.files, compiled.info)
    (tmp_path / "source.onnx").write_bytes(model.read_bytes())
    with pytest.raises(ToolchainMissingError, match="fell back to CPUExecutionProvider"):
        adapter.load(bundle)


def test_throughput_runs_parallel_sessions_from_threads(model, tmp_path):
    bundle = edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime").bundle
    with edgekit.load(bundle.path, threads=2) as runner:
        feed = random_inputs(runner.input_specs, seed=0)
        run = runner.throughput(feed, streams=3, seconds=0.2, items_per_call=1)
    assert (run.details["sessions"], run.details["intra_op_threads"]) == (3, 1)  # 2 threads shared, >= 1 each
    assert run.details["sessions_ms"] > 0
    assert run.streams == 3 and "3 session(s)" in run.method
    assert run.calls == len(run.latencies_ms) > 0 and run.items_per_s == pytest.approx(run.calls / run.seconds)
