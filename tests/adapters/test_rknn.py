"""The RKNN adapter: profiles, rules and estimates always; the real RKNN-Toolkit2 when its env can be installed.

Tests marked `toolchain` use the managed rknn environment in the repo's ignored `.edgekit-test-toolchains/`
(tests/conftest.py points $EDGEKIT_TOOLCHAINS_DIR there; never $HOME), installing it once when missing
(about 1-2 minutes; later runs reuse it). Without network access to the package index they skip with the
installer's reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgekit
from edgekit.adapters.base import CompileOptions, Provenance
from edgekit.adapters.registry import get_adapter
from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError
from edgekit.onnxio import run_reference
from edgekit.targets import get_profile

RK_TARGETS = ("rk3588", "rk3566", "rk3568", "rv1106")
EDGEKIT_ONNX = onnx.__version__  # edgekit's own onnx, before any toolchain install


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def small_cnn(path: Path, *, seed: int = 0) -> Path:
    """Conv-BN(folded)-Relu, strided Conv-Relu, GAP, Gemm: [1,3,32,32] -> [1,10] (built in code)."""
    rng = np.random.default_rng(seed)
    inits = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "b1": np.zeros(8, np.float32),
        "w2": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.15,
        "b2": rng.standard_normal(16).astype(np.float32) * 0.05,
        "fc": rng.standard_normal((10, 16)).astype(np.float32) * 0.3, "fcb": np.zeros(10, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def calib_dir(path: Path, shape: tuple[int, ...], n: int, *, seed: int = 0, scale: float = 1.0,
              offset: float = 0.0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.save(path / f"{i:03d}.npy", (rng.standard_normal(shape) * scale + offset).astype(np.float32))
    return path


# --- without the toolchain ------------------------------------------------------------------------------
@pytest.fixture
def no_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEKIT_TOOLCHAINS_DIR", str(tmp_path / "empty-toolchains"))
    return tmp_path


@pytest.mark.parametrize("name", RK_TARGETS)
def test_profiles_have_sourced_peaks_and_rknn_rules(name: str) -> None:
    from edgekit.adapters.npu.profile import npu_profile

    profile = get_profile(name)
    assert profile.adapters == ("rknn",) and "int8" in profile.precisions
    npu = npu_profile(profile)
    assert npu.soc_version == name and npu.rules == "rockchip-rknn"
    assert not npu.peak_int8.assumed and "Rockchip" in npu.peak_int8.source
    assert npu.bandwidth.assumed and npu.bandwidth.basis
    expected = {"rk3588": 6.0, "rk3566": 0.8, "rk3568": 1.0, "rv1106": 0.5}[name]
    assert npu.peak_int8.value == expected


def test_missing_env_says_how_to_install(no_env: Path) -> None:
    adapter = get_adapter("rknn")
    caps = adapter.capabilities(get_profile("rk3588"))
    assert not caps.toolchain.available
    assert "edgekit toolchain install rknn" in caps.toolchain.reason
    assert caps.precisions == ("fp16", "int8")
    model = small_cnn(no_env / "m.onnx")
    with pytest.raises(ToolchainMissingError) as info:
        edgekit.compile(model, target="rk3588", backend="rknn", precision="fp16", output=no_env / "b")
    assert info.value.exit_code == 4 and "edgekit toolchain install rknn" in info.value.one_line()
    with pytest.raises(ToolchainMissingError, match="toolchain install rknn"):
        adapter.compile(model, get_profile("rk3588"), CompileOptions(precision="fp16"), no_env / "out")


def test_cli_compile_without_env_exits_4(no_env: Path) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    model = small_cnn(no_env / "m.onnx")
    result = CliRunner().invoke(app, ["compile", str(model), "--target", "rk3588", "--precision", "int8",
                                      "--calib", "synthetic", "-o", str(no_env / "b")])
    assert result.exit_code == 4, result.output
    assert "edgekit toolchain install rknn" in " ".join(result.output.split())


def test_precision_and_options_are_validated(no_env: Path) -> None:
    adapter = get_adapter("rknn")
    model = small_cnn(no_env / "m.onnx")
    with pytest.raises(UnsupportedError, match="not fp32"):
        adapter.compile(model, get_profile("rk3588"), CompileOptions(precision="fp32"), no_env / "o")
    with pytest.raises(UnsupportedError, match="rv1106 builds int8"):
        adapter.compile(model, get_profile("rv1106"), CompileOptions(precision="fp16"), no_env / "o")
    with pytest.raises(BadInputError, match="unknown option 'acuracy_analysis'"):
        adapter.compile(model, get_profile("rk3588"),
                        CompileOptions(precision="int8", adapter_options={"acuracy_analysis": True}), no_env / "o")


def test_check_applies_the_rockchip_op_table(no_env: Path) -> None:
    model = small_cnn(no_env / "m.onnx")
    proto = onnx.load(str(model))
    proto.graph.node.append(helper.make_node("Erf", ["logits"], ["erf"], name="erf"))
    proto.graph.node.append(helper.make_node("Celu", ["erf"], ["celu"], name="celu"))
    proto.graph.output[0].name = "celu"
    onnx.save(proto, str(model))
    report = get_adapter("rknn").check(model, get_profile("rk3588"))
    verdicts = {v.node: v for v in report.verdicts}
    assert verdicts["conv1"].verdict == "npu" and "kernel [1, 31]" in verdicts["conv1"].reason
    assert verdicts["erf"].verdict == "unsupported" and "RKNNToolKit2_OP_Support" in verdicts["erf"].source
    assert not report.ok


def test_estimate_is_labelled_and_says_simulator_time_is_not_npu_time(no_env: Path) -> None:
    model = small_cnn(no_env / "m.onnx")
    adapter = get_adapter("rknn")
    fast = adapter.estimate(model, get_profile("rk3588"))
    slow = adapter.estimate(model, get_profile("rv1106"))
    assert fast is not None and slow is not None
    assert fast.provenance == Provenance.ESTIMATED
    assert any("simulator time is not NPU time" in a for a in fast.assumptions)
    assert any("6 TOPS" in a for a in fast.assumptions)
    assert 0 < fast.latency_ms < slow.latency_ms  # 6 TOPS vs 0.5 TOPS on the same model


def test_mean_std_are_fused_and_undone_for_edgekit_inputs() -> None:
    from edgekit.adapters.rknn import _norm, _to_raw
    from edgekit.specs import TensorSpec

    specs = [TensorSpec("input", (1, 3, 2, 2))]
    means, stds = _norm(specs, (10.0, 20.0, 30.0), (2.0, 4.0, 8.0))
    assert means == [[10.0, 20.0, 30.0]] and stds == [[2.0, 4.0, 8.0]]
    x = np.ones((1, 3, 2, 2), np.float32)
    raw = _to_raw(x, means[0], stds[0])
    np.testing.assert_allclose(raw[0, :, 0, 0], [12.0, 24.0, 38.0])
    np.testing.assert_allclose((raw - np.reshape(means[0], (1, 3, 1, 1))) / np.reshape(stds[0], (1, 3, 1, 1)), x)
    with pytest.raises(BadInputError, match="one value per channel"):
        _norm(specs, (1.0, 2.0), None)
    assert _norm(specs, None, None) == (None, None)


# --- with the real toolkit ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def rknn_env():
    """The managed rknn environment: reused when present, else installed once (skip when impossible)."""
    from edgekit.toolchains import env

    state = env.find_env("rknn")
    if state is None or not state.current:
        try:
            state, _ = env.install("rknn", force=state is not None)
        except ToolchainMissingError as exc:
            pytest.skip(f"rknn toolchain environment could not be installed here: {exc.one_line()}")
    return state


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rknn")


@pytest.mark.toolchain
def test_edgekit_env_keeps_its_own_onnx(rknn_env) -> None:
    import google.protobuf

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("+")[0].split(".")[:3] if p.isdigit())

    from importlib import metadata

    # Read from disk after the install: edgekit's env still has the onnx/protobuf it was started with.
    assert metadata.version("onnx") == EDGEKIT_ONNX == onnx.__version__
    assert metadata.version("protobuf") == google.protobuf.__version__
    assert version(onnx.__version__) > (1, 18, 0)
    assert rknn_env.packages["onnx"] == "1.18.0" and rknn_env.packages["rknn-toolkit2"] == "2.5.0"
    assert rknn_env.packages["protobuf"] == "4.25.4" and rknn_env.packages["torch"].startswith("2.13.0")
    assert google.protobuf.__version__ != rknn_env.packages["protobuf"]


@pytest.mark.toolchain
@pytest.mark.slow  # 25-31 s on 2 cores (a real toolkit build + simulator)
def test_small_cnn_int8_build_simulate_matches_ort(rknn_env, work: Path) -> None:
    model = small_cnn(work / "small.onnx")
    calib = calib_dir(work / "calib", (1, 3, 32, 32), 16)
    result = edgekit.compile(model, target="rk3588", backend="rknn", precision="int8", calib=str(calib),
                             output=work / "int8", adapter_options={"accuracy_analysis": True})
    bundle = result.bundle.path
    info = edgekit.Artifact.open(bundle).manifest.info  # as written to disk
    assert (bundle / "model.rknn").stat().st_size > 1000
    assert info["adapter"] == "rknn" and info["precision_used"] == "int8"
    assert info["run_provenance"] == "emulated" and info["verification"]["passed"]
    assert info["rknn"]["calibration_samples"] == 16 and info["rknn"]["toolkit"] == "2.5.0"
    assert len(list((bundle / "rknn" / "calib").glob("*.npy"))) == 16
    assert info["estimate"]["provenance"] == "estimated"
    analysis = info["rknn"]["accuracy_analysis"]
    assert analysis["layers"] > 0 and (bundle / analysis["file"]).is_file()
    assert all(0.0 <= row["entire_cos"] <= 1.0 + 1e-6 for row in analysis["rows"])
    # A fresh load (simulator rebuilt from the bundle), on held-out calibration-like inputs.
    rng = np.random.default_rng(123)
    with edgekit.load(bundle) as runner:
        assert runner.provenance == Provenance.EMULATED
        for _ in range(3):
            x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
            got = runner.run({"input": x})["logits"]
            ref = run_reference(model, {"input": x})["logits"]
            assert got.shape == ref.shape
            assert _cosine(got, ref) >= 0.999


@pytest.mark.toolchain
@pytest.mark.slow  # 25-31 s on 2 cores (a real toolkit build + simulator)
def test_fp16_build_and_fused_mean_std(rknn_env, work: Path) -> None:
    model = small_cnn(work / "small16.onnx", seed=3)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    result = edgekit.compile(model, target="rk3566", backend="rknn", precision="fp16", output=work / "fp16",
                             mean=mean, std=std)
    info = result.bundle.manifest.info
    assert info["precision_used"] == "fp16" and info["verification"]["passed"]
    build = json.loads((result.bundle.path / "rknn" / "build.json").read_text())
    assert build["mean_values"] == [list(mean)] and build["quantize"] is False
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with edgekit.load(result.bundle.path) as runner:
        got = runner.run({"input": x})["logits"]
    assert _cosine(got, run_reference(model, {"input": x})["logits"]) >= 0.999


@pytest.mark.toolchain
def test_vendor_error_comes_back_with_the_toolkit_message(rknn_env, work: Path) -> None:
    from edgekit.toolchains.env import RKNN
    from edgekit.toolchains.worker_client import VendorError, WorkerClient

    with WorkerClient(rknn_env.python, RKNN.worker_path) as client:
        assert client.hello["versions"]["rknn-toolkit2"] == "2.5.0"
        with pytest.raises(VendorError) as info:
            client.call("build", {"model": str(work / "missing.onnx"), "target_platform": "rk3588"}, timeout=300)
        assert "load_onnx" in str(info.value) and "not exists" in info.value.vendor_message


@pytest.mark.toolchain
@pytest.mark.slow
def test_zoo_resnet18_int8_simulator_matches_ort(rknn_env, work: Path) -> None:
    torch = pytest.importorskip("torch")
    from edgekit.zoo import create

    net = create("resnet18").eval()
    model = work / "resnet18.onnx"
    torch.onnx.export(net, torch.randn(1, 3, 224, 224), str(model), dynamo=False, input_names=["input"],
                      output_names=["logits"], opset_version=13)
    calib = calib_dir(work / "calib224", (1, 3, 224, 224), 8)
    result = edgekit.compile(model, target="rk3588", backend="rknn", precision="int8", calib=str(calib),
                             output=work / "resnet18-int8", verify_samples=2)
    info = edgekit.Artifact.open(result.bundle.path).manifest.info
    assert info["verification"]["passed"] and info["verification"]["min_cosine"] >= 0.999
    assert info["estimate"]["latency_ms"] > 0


@pytest.mark.toolchain
def test_qdq_model_from_edgekit_quantize_uses_its_own_scales(rknn_env, work: Path) -> None:
    from tests._adapters_helpers import qdq_model

    model = small_cnn(work / "small_f.onnx", seed=7)
    qdq = qdq_model(model, work / "small_qdq.onnx")
    result = edgekit.compare(qdq, ["rknn"], target="rk3588", precision="int8", samples=2)
    assert [b.status for b in result.backends] == ["ok"] and result.passed
    built = edgekit.compile(qdq, target="rk3588", backend="rknn", precision="int8", output=work / "qdq-bundle")
    info = edgekit.Artifact.open(built.bundle.path).manifest.info
    assert info["rknn"]["quantized_by"].startswith("QDQ scales") and info["rknn"]["calibration_samples"] == 0
    assert info["verification"]["passed"] and info["verification"]["min_cosine"] >= 0.999


@pytest.mark.toolchain
@pytest.mark.slow
def test_lenet5_digits_accuracy_on_real_data(rknn_env, work: Path) -> None:
    """The RKNN build in the simulator, judged by the one accuracy re-run (checks/verify), keeps FP32 accuracy."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from edgekit.checks.verify import evaluate_runner
    from edgekit.zoo import digits

    model = digits.export_onnx(digits.trained_lenet5(), work / "lenet5.onnx")
    calib, _ = digits.write_calibration_and_eval(work / "digits", calib_samples=50, fmt="npy")
    result = edgekit.compile(model, target="rk3588", backend="rknn", precision="int8", calib=str(calib),
                             output=work / "lenet5-int8")
    images, labels = digits.load_digits_dataset("test")
    samples = [{digits.INPUT_NAME: x[None]} for x in images]
    references = [run_reference(model, sample) for sample in samples]
    with edgekit.load(result.bundle.path) as runner:
        figures = evaluate_runner(runner, samples, references, [int(y) for y in labels])
    assert figures.provenance == "emulated" and figures.samples == len(labels)
    assert figures.reference_accuracy is not None and figures.reference_accuracy > 0.9
    assert figures.drop_points is not None and figures.drop_points <= 2.0  # INT8 on the simulator keeps FP32's
    assert figures.cosine is not None and figures.cosine >= 0.98
