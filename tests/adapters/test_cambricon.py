"""MagicMind adapter: builder config (archs, precision, granularity, var = std²), build script, emulation."""

from __future__ import annotations

import json

import pytest

import edgekit
from edgekit.adapters import cambricon
from edgekit.adapters.base import CompileOptions
from edgekit.adapters.cambricon import builder_config
from edgekit.adapters.npu.profile import npu_profile
from edgekit.errors import BadInputError, CheckFailedError
from edgekit.specs import TensorSpec
from edgekit.targets import get_profile
from tests._npu_helpers import detector, segmenter

SPEC = [TensorSpec("images", (1, 3, 32, 32))]
MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def test_builder_config_fuses_mean_and_var_as_std_squared():
    config = builder_config(npu_profile(get_profile("mlu220")), CompileOptions(precision="fp16", mean=MEAN, std=STD),
                            SPEC)
    assert config["archs"] == ["mtp_220"]
    assert config["precision_config"] == {"precision_mode": "force_float16"}
    bn = config["insert_bn_before_firstnode"]["0"]
    assert bn["mean"] == list(MEAN)
    assert bn["var"] == pytest.approx([s * s for s in STD])
    assert config["graph_shape_mutable"] is False


def test_int8_config_is_symmetric_with_the_requested_granularity():
    profile = npu_profile(get_profile("mlu270"))
    default = builder_config(profile, CompileOptions(precision="int8"), SPEC)["precision_config"]
    assert default == {"precision_mode": "qint8_mixed_float16", "activation_quant_algo": "symmetric",
                       "weight_quant_granularity": "per_axis"}
    per_tensor = builder_config(profile, CompileOptions(
        precision="int8", adapter_options={"weight_quant_granularity": "per_tensor"}), SPEC)
    assert per_tensor["archs"] == ["mtp_270"]
    assert per_tensor["precision_config"]["weight_quant_granularity"] == "per_tensor"
    with pytest.raises(BadInputError, match="per_tensor or per_axis"):
        builder_config(profile, CompileOptions(precision="int8", adapter_options={"weight_quant_granularity": "x"}),
                       SPEC)


def test_compile_writes_plan_and_emulation_without_magicmind(tmp_path):
    result = edgekit.compile(segmenter(tmp_path / "seg.onnx"), output=tmp_path / "b", target="mlu220",
                             backend="magicmind", precision="fp16", mean=(0.5,), std=(0.25,))
    bundle = result.bundle.path
    info = json.loads((bundle / "manifest.json").read_text())["info"]
    config = json.loads((bundle / "plan/builder_config.json").read_text())
    assert config["insert_bn_before_firstnode"]["0"] == {"mean": [0.5], "var": [0.0625]}
    script = (bundle / "plan/magicmind_build.py").read_text()
    assert "mm.ModelKind.kOnnx" in script and "'image': [1, 1, 32, 32]" in script
    assert not (bundle / "model.mm").exists()
    assert info["vendor_build"]["ran"] is False and "not importable" in info["vendor_build"]["reason"]
    assert info["verification"]["provenance"] == "emulated"
    assert info["estimate"]["provenance"] == "estimated"
    assert info["partition"]["assumed_on_npu"] == 2  # ConvTranspose, Resize: `unknown`, placed by assumption


def test_int8_per_tensor_emulation_is_magicmind_style(tmp_path):
    result = edgekit.compile(detector(tmp_path / "det.onnx"), output=tmp_path / "b", target="mlu270",
                             backend="magicmind", precision="int8", calib="synthetic",
                             adapter_options={"weight_quant_granularity": "per_tensor"})
    info = result.bundle.manifest.info
    scheme = info["emulation"]["scheme"]
    assert scheme["style"] == "MagicMind-style" and scheme["symmetric_activations"] is True
    assert scheme["per_channel_weights"] is False
    assert info["verification"]["provenance"] == "emulated"
    assert len(list((result.bundle.path / "plan/calib").glob("*.npy"))) > 0


def test_a_failing_build_script_surfaces_its_stderr(tmp_path, monkeypatch):
    # pretend MagicMind is installed: the plan's script then runs and fails on the missing module
    monkeypatch.setattr(cambricon, "module_available", lambda name: True)
    with pytest.raises(CheckFailedError, match="magicmind") as err:
        edgekit.compile(detector(tmp_path / "det.onnx"), output=tmp_path / "b", target="mlu220",
                        backend="magicmind", precision="fp16")
    assert "ModuleNotFoundError" in err.value.message and err.value.exit_code == 1
    assert not (tmp_path / "b").exists()
