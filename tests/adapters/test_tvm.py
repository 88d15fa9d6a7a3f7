"""TVM adapter: Relax build for the detected host CPU, agreement with onnxruntime, tuning database reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgekit
from edgekit.adapters.base import CompileOptions
from edgekit.adapters.tvm import LIBRARY, TARGET_FILE, TvmAdapter, host_cpu
from edgekit.errors import BadInputError, UnsupportedError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.targets import get_profile
from tests._adapters_helpers import tiny_conv_model

pytest.importorskip("tvm", reason="apache-tvm is not installed (pip install 'edgekit[tvm]')")


def conv_relu_model(path: Path) -> Path:
    """One fused TIR task (conv2d+bias+relu): the cheapest model that still gives MetaSchedule real work."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["conv"], ["out"])],
        "conv_relu", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 16, 16])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_conv_model(tmp_path_factory.mktemp("tvm") / "tiny.onnx", channels=8, size=16)


def test_untuned_build_agrees_with_onnxruntime_and_says_untuned(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="tvm", threads=1,
                             adapter_options={"tuning_db": str(tmp_path / "empty-db")})
    bundle = result.bundle
    info = bundle.manifest.info
    assert info["tuned"] is False and info["tasks_tuned"] == 0
    assert "untuned" in info["note"]
    assert info["tvm_target"]["kind"] == "llvm"
    assert info["tvm_target"]["mcpu"] == host_cpu() != "generic"  # the real CPU, not "native"'s fallback
    assert {LIBRARY, TARGET_FILE} <= set(bundle.manifest.files)
    assert json.loads((bundle.path / TARGET_FILE).read_text())["kind"] == "cpu"
    runner = edgekit.load(bundle.path, threads=1)
    for seed in range(3):
        feeds = random_inputs(runner.input_specs, seed=seed)
        np.testing.assert_allclose(runner.run(feeds)["logits"], run_reference(model, feeds)["logits"],
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_tuning_writes_a_database_that_the_next_compile_reuses(tmp_path):
    model = conv_relu_model(tmp_path / "conv.onnx")
    db = tmp_path / "db"
    options = {"tune": True, "trials": 4, "tuning_db": str(db)}
    first = edgekit.compile(model, output=tmp_path / "b1", backend="tvm", threads=1, adapter_options=options)
    info = first.bundle.manifest.info
    assert info["tuned"] is True
    assert info["tuning"]["tasks_tuned_now"] >= 1 and info["tuning"]["trials_run"] >= 1
    assert info["tasks_tuned"] == info["tasks"]
    records = db / "database_tuning_record.json"
    assert records.stat().st_size > 0
    before = records.read_text()

    second = edgekit.compile(model, output=tmp_path / "b2", backend="tvm", threads=1, adapter_options=options)
    reuse = second.bundle.manifest.info
    assert reuse["tuned"] is True
    assert reuse["tuning"]["tasks_tuned_now"] == 0 and reuse["tuning"]["trials_run"] == 0
    assert reuse["tuning"]["seconds"] < info["tuning"]["seconds"]
    assert records.read_text() == before  # nothing new was measured

    # a larger budget tops up the difference only
    more = edgekit.compile(model, output=tmp_path / "b4", backend="tvm", threads=1,
                           adapter_options={**options, "trials": 8})
    top_up = more.bundle.manifest.info["tuning"]
    assert top_up["tasks_tuned_now"] >= 1 and 1 <= top_up["trials_run"] <= 4 * top_up["tasks"]
    assert json.loads((db / "edgekit_trials.json").read_text())  # the ledger of trials spent per task

    # an untuned compile pointed at the same database applies its records too
    third = edgekit.compile(model, output=tmp_path / "b3", backend="tvm", threads=1,
                            adapter_options={"tuning_db": str(db)})
    assert third.bundle.manifest.info["tuned"] is True
    runner = edgekit.load(third.bundle.path, threads=1)
    feeds = random_inputs(runner.input_specs, seed=5)
    np.testing.assert_allclose(runner.run(feeds)["out"], run_reference(model, feeds)["out"], rtol=1e-4, atol=1e-5)


def test_dynamic_batch_needs_a_fixed_shape(tmp_path):
    dyn = tiny_conv_model(tmp_path / "dyn.onnx", dynamic_batch=True)
    with pytest.raises(UnsupportedError, match="dynamic dims"):
        TvmAdapter().compile(dyn, get_profile("cpu"), CompileOptions(), tmp_path)
    result = edgekit.compile(dyn, output=tmp_path / "b", backend="tvm", threads=1, input_shapes=["input:2,3,8,8"],
                             adapter_options={"tuning_db": str(tmp_path / "db")})
    runner = edgekit.load(result.bundle.path)
    assert runner.run(random_inputs(runner.input_specs, dims={"batch": 2}))["logits"].shape == (2, 10)


@pytest.mark.parametrize("options, match", [
    ({"trails": 8}, "unknown option 'trails'"),
    ({"trials": "8"}, "has type str"),
    ({"trials": -1}, "trials must be"),
])
def test_bad_adapter_options_are_refused(model, tmp_path, options, match):
    with pytest.raises(BadInputError, match=match):
        TvmAdapter().compile(model, get_profile("cpu"), CompileOptions(adapter_options=options), tmp_path)


def test_only_fp32(model, tmp_path):
    with pytest.raises(UnsupportedError, match="fp32 only"):
        TvmAdapter().compile(model, get_profile("cpu"), CompileOptions(precision="int8"), tmp_path)


def test_capabilities_state_untuned_default_and_cuda_honestly():
    import tvm

    cpu = TvmAdapter().capabilities(get_profile("cpu"))
    assert cpu.toolchain.available and cpu.device.available
    assert any("untuned" in note for note in cpu.notes)
    gpu = TvmAdapter().capabilities(get_profile("cuda"))
    has_cuda = tvm.runtime.enabled("cuda") and tvm.cuda(0).exist
    assert gpu.device.available == has_cuda
    if not has_cuda:
        assert gpu.device.reason  # says why (no CUDA in this build, or no GPU)


def test_check_flags_ops_without_a_relax_converter(model, tmp_path):
    proto = onnx.load(str(model))
    proto.graph.node.append(helper.make_node("Frobnicate", ["logits"], ["extra"], name="frob", domain="com.example"))
    proto.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1, 10]))
    proto.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(proto, str(tmp_path / "odd.onnx"))
    report = TvmAdapter().check(tmp_path / "odd.onnx", get_profile("cpu"))
    assert [v.node for v in report.unsupported] == ["frob"]
    assert not report.ok
    assert TvmAdapter().check(model, get_profile("cpu")).ok
    with pytest.raises(UnsupportedError, match="no converter for Frobnicate"):
        TvmAdapter().compile(tmp_path / "odd.onnx", get_profile("cpu"), CompileOptions(), tmp_path)


def test_default_database_is_per_target_under_the_user_cache(monkeypatch, tmp_path):
    from edgekit.adapters._tvm_tuning import default_db_dir
    from edgekit.adapters.tvm import make_target

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    one, two = default_db_dir(make_target("cpu", 1)), default_db_dir(make_target("cpu", 2))
    assert one.parent == tmp_path / "edgekit" / "tvm-db"
    assert one != two and one == default_db_dir(make_target("cpu", 1))
