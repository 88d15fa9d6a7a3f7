"""The compile stage: verification gates the bundle, auto picks among passing candidates, load verifies."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgekit
from edgekit.adapters import registry
from edgekit.artifact import Manifest, StageRecord, save_model_artifact, sha256_file
from edgekit.checks.numerics import compare_outputs
from edgekit.errors import BadInputError, CheckFailedError, ToolchainMissingError, UnsupportedError
from edgekit.stages.compile import Thresholds, compare, judge
from edgekit.targets import TargetProfile
from tests._adapters_helpers import qdq_model, tiny_conv_model, wrong_adapter_class

INFO_KEYS = {"target", "adapter", "precision", "precision_used", "source_model", "run_provenance", "verification"}


@pytest.fixture
def model(tmp_path):
    return tiny_conv_model(tmp_path / "tiny.onnx")


@pytest.fixture
def wrong():
    """Register adapter `wrong` (outputs off by +1) and target `testcpu` = [wrong, onnxruntime]."""
    cls = wrong_adapter_class()
    profile = TargetProfile("testcpu", "test", "cpu", ("wrong", "onnxruntime"), ("fp32", "int8"))
    with registry.registered(cls, profile=profile):
        yield cls


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_bundle_manifest_follows_the_contract(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime")
    raw = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert raw["kind"] == "bundle"
    assert set(raw["info"]) >= INFO_KEYS
    files = {p.relative_to(tmp_path / "b").as_posix(): sha256_file(p) for p in (tmp_path / "b").rglob("*")
             if p.name != "manifest.json"}
    assert raw["files"] == files
    record = raw["history"][-1]
    assert record["stage"] == "compile" and record["tool_versions"]["onnxruntime"]
    assert record["inputs"] == {"tiny.onnx": sha256_file(model)}
    assert result.verification["inputs"].startswith("2 seeded random")
    assert _leftovers(tmp_path) == []


def test_history_of_the_input_model_is_kept(model, tmp_path):
    art = save_model_artifact(model.read_bytes(), tmp_path / "m.onnx",
                              Manifest(kind="onnx", history=[StageRecord(stage="export")]))
    result = edgekit.compile(art, output=tmp_path / "b", backend="null")
    assert [r.stage for r in result.bundle.manifest.history] == ["export", "compile"]


def test_mismatch_fails_and_writes_nothing(model, tmp_path, wrong):
    with pytest.raises(CheckFailedError, match="disagrees with the ONNX reference"):
        edgekit.compile(model, output=tmp_path / "b", target="testcpu", backend="wrong")
    assert not (tmp_path / "b").exists()
    assert _leftovers(tmp_path) == []


def test_existing_bundle_survives_a_failed_compile(model, tmp_path, wrong):
    edgekit.compile(model, output=tmp_path / "b", target="testcpu", backend="onnxruntime")
    before = (tmp_path / "b" / "manifest.json").read_text()
    with pytest.raises(CheckFailedError):
        edgekit.compile(model, output=tmp_path / "b", target="testcpu", backend="wrong")
    assert (tmp_path / "b" / "manifest.json").read_text() == before


def test_auto_rejects_a_wrong_candidate_and_says_why(model, tmp_path, wrong):
    result = edgekit.compile(model, output=tmp_path / "b", target="testcpu", backend="auto", auto_rounds=1)
    assert result.adapter == "onnxruntime"
    by = {c.adapter: c for c in result.candidates}
    assert by["wrong"].status == "rejected" and by["wrong"].reason.startswith("numerics")
    assert by["onnxruntime"].status == "chosen" and by["onnxruntime"].median_ms > 0
    auto = result.bundle.manifest.info["auto"]
    assert auto["chosen"] == "onnxruntime" and {c["adapter"] for c in auto["candidates"]} == {"wrong", "onnxruntime"}


def test_auto_with_no_passing_candidate_fails(model, tmp_path, wrong):
    profile = TargetProfile("testcpu", "test", "cpu", ("wrong",), ("fp32",))
    with registry.registered(profile=profile), pytest.raises(CheckFailedError, match="no backend passed"):
        edgekit.compile(model, output=tmp_path / "b", target="testcpu")


def test_auto_lists_unavailable_adapters_with_reasons(model, tmp_path):
    profile = TargetProfile("testcpu", "t", "cpu", ("onnxruntime", "not-an-adapter"), ("fp32",))
    with registry.registered(profile=profile):
        result = edgekit.compile(model, output=tmp_path / "b", target="testcpu", auto_rounds=1)
    missing = next(c for c in result.candidates if c.adapter == "not-an-adapter")
    assert missing.status == "unavailable" and "not installed" in missing.reason


@pytest.mark.parametrize("backend, precision, error, match", [
    ("tflite", "fp32", BadInputError, "unknown backend 'tflite'"),
    ("onnxruntime", "fp64", BadInputError, "unknown precision"),
    ("onnxruntime", "bf16", UnsupportedError, "bf16 not offered"),
])
def test_bad_requests_are_one_line_errors(model, tmp_path, backend, precision, error, match):
    with pytest.raises(error, match=match):
        edgekit.compile(model, output=tmp_path / "b", backend=backend, precision=precision)


def test_unknown_target_lists_available(model, tmp_path):
    with pytest.raises(BadInputError, match=r"available: .*cpu"):
        edgekit.compile(model, output=tmp_path / "b", target="tpu9000")


def test_int8_float_model_without_calibration_is_refused(model, tmp_path):
    with pytest.raises(BadInputError, match="calibration"):
        edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime", precision="int8")


def test_int8_with_synthetic_calibration_is_flagged(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime", precision="int8",
                             calib="synthetic")
    info = result.bundle.manifest.info
    assert info["calibration"]["synthetic"] is True and "not valid" in info["calibration"]["note"]
    assert info["quantized_by"] == "edgekit quantize (QDQ)"
    assert result.verification["passed"]


def test_qdq_model_compiles_as_what_it_is(model, tmp_path):
    qdq = qdq_model(model, tmp_path / "q.onnx")
    result = edgekit.compile(qdq, output=tmp_path / "auto", backend="auto")  # no --precision: a QDQ model is int8
    assert result.bundle.manifest.info["precision"] == "int8"
    assert edgekit.compile(qdq, output=tmp_path / "i8", backend="onnxruntime", precision="int8").adapter
    with pytest.raises(BadInputError, match="fp32 asked for a model that is already quantized"):
        edgekit.compile(qdq, output=tmp_path / "b", backend="onnxruntime", precision="fp32")
    assert not (tmp_path / "b").exists()


def test_input_shapes_fix_dynamic_dims(tmp_path):
    model = tiny_conv_model(tmp_path / "dyn.onnx", dynamic_batch=True)
    result = edgekit.compile(model, output=tmp_path / "b", backend="onnxruntime", input_shapes=["input:2,3,8,8"])
    assert result.bundle.manifest.inputs[0].shape == (2, 3, 8, 8)
    runner = edgekit.load(tmp_path / "b")
    assert runner.run({"input": np.zeros((2, 3, 8, 8), np.float32)})["logits"].shape == (2, 10)
    with pytest.raises(BadInputError, match="no input 'image'"):
        edgekit.compile(model, output=tmp_path / "c", backend="onnxruntime", input_shapes=["image:2,3,8,8"])


def test_load_refuses_non_bundles_and_foreign_adapters(model, tmp_path):
    with pytest.raises(BadInputError):
        edgekit.load(tmp_path)
    edgekit.compile(model, output=tmp_path / "b", backend="null")
    manifest = Manifest.read(tmp_path / "b" / "manifest.json")
    manifest.info["adapter"] = "quantum-npu"
    (tmp_path / "b" / "manifest.json").write_text(manifest.dumps())
    with pytest.raises(ToolchainMissingError, match="quantum-npu"):
        edgekit.load(tmp_path / "b")


def test_compare_reports_each_backend(model, wrong):
    result = compare(model, ["onnxruntime", "null", "wrong"], target="testcpu")
    rows = {r.backend: r for r in result.backends}
    assert rows["onnxruntime"].status == "ok" and rows["null"].status == "ok"
    assert rows["wrong"].status == "mismatch" and rows["wrong"].max_abs == pytest.approx(1.0, rel=1e-5)
    assert rows["onnxruntime"].outputs[0]["name"] == "logits"
    assert not result.passed


def test_compare_marks_unavailable_backends(model):
    result = compare(model, ["onnxruntime"], target="cuda")
    row = result.backends[0]
    if row.status != "unavailable":
        pytest.skip("this host has a CUDA onnxruntime")
    assert "CUDAExecutionProvider" in row.reason


def test_judge_rules():
    ref = {"y": np.linspace(-3, 3, 1000, dtype=np.float32).reshape(10, 100)}
    noisy = {"y": ref["y"] + np.random.default_rng(0).normal(0, 0.05, ref["y"].shape).astype(np.float32)}
    cmp = compare_outputs(ref, noisy, atol=1e-4, rtol=1e-3)
    assert not judge(cmp, "fp32")[0]
    assert judge(cmp, "int8")[0]  # cosine ~0.9996
    strict = Thresholds(int8_cosine=0.99999)
    ok, why = judge(cmp, "int8", strict)
    assert not ok and "int8 rule" in why


def test_adapter_options_can_target_one_adapter():
    from edgekit.stages.compile import options_for

    opts = {"tune": False, "tvm.trials": 8, "openvino.hint": "latency"}
    assert options_for("tvm", opts) == {"tune": False, "trials": 8}
    assert options_for("onnxruntime", opts) == {"tune": False}


def test_a_backend_crashing_at_run_time_is_a_failed_candidate(model, tmp_path):
    crash = wrong_adapter_class(name="crash", crash=True)
    profile = TargetProfile("testcpu", "t", "cpu", ("crash", "onnxruntime"), ("fp32",))
    with registry.registered(crash, profile=profile):
        result = edgekit.compile(model, output=tmp_path / "b", target="testcpu", auto_rounds=1)
        failed = next(c for c in result.candidates if c.adapter == "crash")
        assert failed.status == "failed" and "failed to run: RuntimeError: device fell over" in failed.reason
        with pytest.raises(UnsupportedError, match="device fell over"):
            edgekit.compile(model, output=tmp_path / "c", target="testcpu", backend="crash")


# --- auto keeps the real cause's exit code (QA) -------------------------------------------------------------


def test_auto_precision_no_backend_of_the_target_offers_is_unsupported(model, tmp_path):
    with pytest.raises(UnsupportedError, match="fp32 is not offered on rk3588") as err:
        edgekit.compile(model, output=tmp_path / "b", target="rk3588", precision="fp32")
    assert err.value.exit_code == 3 and "offered: " in err.value.one_line() and "int8" in err.value.one_line()
    assert not (tmp_path / "b").exists()


def test_auto_single_candidate_reraises_its_own_bad_option_error(model, tmp_path):
    profile = TargetProfile("ortonly", "test", "cpu", ("onnxruntime",), ("fp32",))
    with registry.registered(profile=profile), pytest.raises(BadInputError, match="unknown option 'bogus'") as err:
        edgekit.compile(model, output=tmp_path / "b", target="ortonly", adapter_options={"bogus": 1})
    assert err.value.exit_code == 2 and "other candidates" not in err.value.one_line()


def test_auto_failing_vendor_tool_keeps_exit_1(tmp_path, monkeypatch):
    import os
    import shutil
    from pathlib import Path

    from tests._npu_helpers import detector

    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "fake_atc", bindir / "atc")
    (bindir / "atc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ATC_LOG", str(tmp_path / "atc.jsonl"))
    monkeypatch.setenv("FAKE_ATC_MODE", "fail")
    with pytest.raises(CheckFailedError, match="E19999") as err:
        edgekit.compile(detector(tmp_path / "det.onnx"), output=tmp_path / "b", target="ascend310",
                        backend="auto", precision="fp16")
    assert err.value.exit_code == 1 and not (tmp_path / "b").exists()


def test_auto_most_informative_error_wins_and_names_the_others(model, tmp_path):
    """Two failing candidates: a bad option (2) beats a crash (3); the crash is still named in the hint."""
    cls = wrong_adapter_class(name="crashy", crash=True)
    profile = TargetProfile("testcpu2", "test", "cpu", ("crashy", "onnxruntime"), ("fp32",))
    with registry.registered(cls, profile=profile), \
            pytest.raises(BadInputError, match="unknown option 'onnxruntime_only'") as err:
        edgekit.compile(model, output=tmp_path / "b", target="testcpu2",
                        adapter_options={"onnxruntime.onnxruntime_only": 1})
    assert "other candidates: crashy" in err.value.one_line()


def test_unwritable_output_folder_is_bad_input(model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BadInputError, match="cannot write here"):
        edgekit.compile(model, output=blocker / "b", target="cpu", backend="onnxruntime")


def test_auto_skips_untuned_tvm_and_says_so(model, tmp_path):
    pytest.importorskip("tvm")
    result = edgekit.compile(model, output=tmp_path / "b", target="cpu", backend="auto")
    [tvm] = [c for c in result.candidates if c.adapter == "tvm"]
    assert tvm.status == "skipped" and "no tuning database" in tvm.reason and "--backend tvm" in tvm.reason
    assert result.adapter != "tvm"
