"""Ascend adapter: exact ATC plan (+AIPP, +AMCT), a fake `atc` on PATH, emulation and the estimate."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.adapters.ascend import AscendAdapter
from edgekit.errors import CheckFailedError, UnsupportedError
from tests._npu_helpers import detector, loop_model

FAKE_ATC = Path(__file__).parents[1] / "fixtures" / "fake_atc"
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@pytest.fixture
def fake_atc(tmp_path, monkeypatch):
    """Put the fake `atc` first on PATH; returns the file its argv is logged to."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(FAKE_ATC, bindir / "atc")
    (bindir / "atc").chmod(0o755)
    log = tmp_path / "atc_calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ATC_LOG", str(log))
    monkeypatch.delenv("FAKE_ATC_MODE", raising=False)
    return log


@pytest.fixture
def no_atc(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)


def _info(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())["info"]


def test_fake_atc_runs_with_the_exact_argv_and_om_is_packed(tmp_path, fake_atc):
    model = detector(tmp_path / "det.onnx")
    result = edgekit.compile(model, output=tmp_path / "b", target="ascend310", backend="ascend-atc",
                             precision="fp16", mean=MEAN, std=STD)
    bundle = result.bundle.path
    (call,) = [json.loads(line) for line in fake_atc.read_text().splitlines()]
    assert call["argv"] == [
        "atc", "--model=source.onnx", "--framework=5", "--output=model", "--soc_version=Ascend310",
        "--input_shape=images:1,3,32,32", "--input_format=NCHW", "--precision_mode=force_fp16",
        "--insert_op_conf=plan/aipp.cfg",
    ]
    assert (bundle / "model.om").read_bytes().startswith(b"FAKE-OM")
    assert "model.om" in result.bundle.manifest.files
    info = _info(bundle)
    assert info["vendor_build"]["ran"] is True and info["vendor_build"]["vendor_model"] == "model.om"
    assert info["run_provenance"] == "emulated"  # no Ascend runtime here: the runner is the emulator
    aipp = dict(line.strip().split(" : ") for line in (bundle / "plan/aipp.cfg").read_text().splitlines()
                if " : " in line)
    for c in range(3):
        assert float(aipp[f"var_reci_chn_{c}"]) == pytest.approx(1 / STD[c], rel=1e-9)
        assert int(aipp[f"mean_chn_{c}"]) + float(aipp[f"min_chn_{c}"]) == pytest.approx(MEAN[c])
    assert aipp["input_format"] == "RGB888_U8" and aipp["src_image_size_w"] == "32"


def test_failing_atc_raises_with_its_stderr_and_writes_nothing(tmp_path, fake_atc, monkeypatch):
    monkeypatch.setenv("FAKE_ATC_MODE", "fail")
    with pytest.raises(CheckFailedError, match="E19999") as err:
        edgekit.compile(detector(tmp_path / "det.onnx"), output=tmp_path / "b", target="ascend310",
                        backend="ascend-atc", precision="fp16")
    assert err.value.exit_code == 1 and "atc --model=source.onnx" in err.value.one_line()
    assert not (tmp_path / "b").exists()


def test_without_atc_the_bundle_has_plan_emulation_and_the_reason(tmp_path, no_atc):
    result = edgekit.compile(detector(tmp_path / "det.onnx"), output=tmp_path / "b", target="ascend310",
                             backend="ascend-atc", precision="fp16")
    bundle = result.bundle.path
    info = _info(bundle)
    assert not (bundle / "model.om").exists()  # never a fake .om
    assert info["vendor_build"]["ran"] is False and "not on PATH" in info["vendor_build"]["reason"]
    assert info["vendor_build"]["commands"][0].startswith("atc --model=source.onnx --framework=5")
    assert (bundle / "plan/atc_command.sh").read_text().count("atc --model") == 1
    assert info["verification"]["provenance"] == "emulated" and info["verification"]["min_cosine"] > 0.999
    assert info["estimate"]["provenance"] == "estimated" and info["estimate"]["latency_ms"] > 0
    assert result.verification["provenance"] == "emulated"
    runner = edgekit.load(bundle)
    assert runner.provenance == "emulated"
    out = runner.run({"images": np.zeros((1, 3, 32, 32), np.float32)})
    assert out["detections"].shape == (1, 12, 32, 32)


def test_int8_writes_the_amct_plan_and_emulates_amct_style(tmp_path, fake_atc):
    model = detector(tmp_path / "det.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        np.save(calib / f"s{i}.npy", rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    result = edgekit.compile(model, output=tmp_path / "b", target="ascend310", backend="ascend-atc",
                             precision="int8", calib=str(calib))
    bundle, info = result.bundle.path, _info(result.bundle.path)
    assert "activation_offset=True" in (bundle / "plan/amct_calibrate.py").read_text()
    assert len(list((bundle / "plan/calib").glob("*.npy"))) == 4
    atc = info["vendor_build"]["steps"][-1]
    assert atc["argv"][1] == "--model=amct/model_deploy_model.onnx"
    assert not fake_atc.exists()  # ATC waits for AMCT, which is not installed here
    assert "amct_onnx" in info["vendor_build"]["reason"]
    assert info["emulation"]["scheme"]["style"] == "AMCT-style"
    assert info["emulation"]["scheme"]["symmetric_activations"] is False
    assert info["verification"]["provenance"] == "emulated" and info["verification"]["min_cosine"] > 0.9
    assert info["precision_used"] == "int8"
    # the plan runs on the vendor host: no path to this machine's interpreter (QA regression)
    script = (bundle / "plan/atc_command.sh").read_text()
    assert "python3 plan/amct_calibrate.py" in script and sys.executable not in script
    assert sys.executable not in info["vendor_build"]["run_later"]


def test_unsupported_model_is_refused_with_exit_3(tmp_path, no_atc):
    with pytest.raises(UnsupportedError, match="Loop") as err:
        edgekit.compile(loop_model(tmp_path / "loop.onnx"), output=tmp_path / "b", target="ascend310",
                        backend="ascend-atc", precision="fp16")
    assert err.value.exit_code == 3


def test_dynamic_dims_name_the_simplify_command(tmp_path, no_atc):
    with pytest.raises(UnsupportedError, match=r"edgekit simplify .* --input-shape images:1,3,32,32"):
        edgekit.compile(detector(tmp_path / "dyn.onnx", batch="N"), output=tmp_path / "b", target="ascend310",
                        backend="ascend-atc", precision="fp16")
    result = edgekit.compile(detector(tmp_path / "dyn.onnx", batch="N"), output=tmp_path / "b2",
                             target="ascend310", backend="ascend-atc", precision="fp16",
                             input_shapes=["images:2,3,32,32"])
    assert "--input_shape=images:2,3,32,32" in _info(result.bundle.path)["vendor_build"]["commands"][0]


def test_bench_reports_the_estimate_never_a_measurement(tmp_path, no_atc):
    from edgekit.checks.latency import bench

    result = edgekit.compile(detector(tmp_path / "det.onnx"), output=tmp_path / "b", target="ascend310",
                             backend="ascend-atc", precision="fp16")
    report = bench(result.bundle.path, iters=3, warmup=0)
    assert report.provenance == "estimated"
    assert report.estimate and report.estimate["latency_ms"] > 0


def test_capabilities_say_emulated_without_the_device():
    from edgekit.targets import get_profile

    caps = AscendAdapter().capabilities(get_profile("ascend310"))
    assert caps.run_provenance == "emulated" and "int8" in caps.precisions
    assert "acl" in caps.device.reason or "emulation" in caps.device.reason


def test_dynamic_batch_through_the_atc_preset(tmp_path, fake_atc):
    result = edgekit.compile(detector(tmp_path / "dyn.onnx", batch="N"), output=tmp_path / "b", target="ascend310",
                             backend="ascend-atc", precision="fp16", adapter_options={"dynamic_batch_size": "1,2,4"})
    (call,) = [json.loads(line) for line in fake_atc.read_text().splitlines()]
    assert "--input_shape=images:-1,3,32,32" in call["argv"] and "--dynamic_batch_size=1,2,4" in call["argv"]
    assert _info(result.bundle.path)["vendor_build"]["ran"] is True
    with pytest.raises(edgekit.BadInputError, match="dynamic_batch_size"):
        edgekit.compile(detector(tmp_path / "dyn.onnx", batch="N"), output=tmp_path / "c", target="ascend310",
                        backend="ascend-atc", precision="fp16", adapter_options={"dynamic_batch_size": "a,b"})


def test_device_runtime_importable_switches_to_measured(monkeypatch):
    """Import-level check of the device path (no Ascend device here to run it)."""
    from edgekit.adapters.npu import adapter_base
    from edgekit.targets import get_profile

    monkeypatch.setattr(adapter_base, "module_available", lambda name: name == "aclruntime")
    caps = AscendAdapter().capabilities(get_profile("ascend310"))
    assert caps.run_provenance == "measured" and "aclruntime" in caps.device.reason


def _cancelling_model(path: Path, *, scale: float, offset: float) -> Path:
    """y = (x·W·scale + offset) - offset: fp16 rounding of the shifted value leaves an absolute error set by
    `offset`, so outputs near 0 miss any elementwise tolerance while large ones stay close."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((64, 256)) * 0.25).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(scale, np.float32), "scale"),
             numpy_helper.from_array(np.array(offset, np.float32), "offset")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Mul", ["m", "scale"], ["s"]),
             helper.make_node("Add", ["s", "offset"], ["shifted"]),
             helper.make_node("Sub", ["shifted", "offset"], ["y"])]
    graph = helper.make_graph(nodes, "cancel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_fp16_beyond_the_elementwise_tolerance_says_which_rule_passed_it(tmp_path, no_atc):
    model = _cancelling_model(tmp_path / "m.onnx", scale=100.0, offset=3000.0)
    result = edgekit.compile(model, output=tmp_path / "b", target="ascend310", precision="fp16")
    v = result.verification
    assert v["passed"] and v["provenance"] == "emulated" and v["max_abs"] > 0.05
    assert v["reason"].startswith("passed on the fp16 rule: cosine ") and ">= 0.999" in v["reason"]
    assert "elementwise tolerance (atol 0.05, rtol 0.05) is not met" in v["reason"]


def test_fp16_outside_every_stated_tolerance_fails_with_exit_1(tmp_path, no_atc):
    model = _cancelling_model(tmp_path / "m.onnx", scale=1.0, offset=2048.0)  # fp16 spacing at 2048 is 2
    with pytest.raises(CheckFailedError) as info:
        edgekit.compile(model, output=tmp_path / "b", target="ascend310", precision="fp16")
    assert info.value.exit_code == 1
    assert "failed the fp16 rule: cosine " in str(info.value)
    assert not (tmp_path / "b").exists()


def test_cli_compile_shows_candidates_only_for_an_explicit_auto_with_a_choice(tmp_path, no_atc):
    from typer.testing import CliRunner

    from edgekit.cli import app

    model = _cancelling_model(tmp_path / "m.onnx", scale=100.0, offset=3000.0)
    for extra in ([], ["--backend", "auto"]):  # ascend310 has one candidate: nothing to choose between
        got = CliRunner().invoke(app, ["compile", str(model), "-t", "ascend310", "-p", "fp16",
                                       "-o", str(tmp_path / f"b{len(extra)}"), *extra])
        assert got.exit_code == 0, got.output
        assert "candidates" not in got.output
        assert "passed on the fp16 rule" in " ".join(got.output.split())
