"""The quantize stage: loadable QDQ, honest accuracy, sensitivity, accuracy-aware fallback, refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgekit.artifact import Manifest, manifest_path_for
from edgekit.errors import BadInputError, CheckFailedError
from edgekit.onnxio import opset_version, quantization_info, run_reference
from edgekit.stages import quantize as qmod
from edgekit.stages._quant_eval import SpeedReport
from edgekit.stages.quantize import fewest_kept_float, quantize, quantize_onnx
from tests._quant_helpers import (
    OUTLIER_NODES,
    FixedOutputSession,
    outlier_assets,
    random_samples,
    small_conv_model,
    unet_like_model,
    write_npz,
)

FAST = {"speed": False, "sensitivity": False}


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return outlier_assets(tmp_path_factory.mktemp("outlier"))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    model = small_conv_model(root / "small.onnx", opset=12)
    calib = write_npz(root / "calib", random_samples((1, 3, 8, 8), 20, seed=0))
    return {"model": model, "calib": calib, "root": root}


def _ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_naive_int8_hurts_and_max_drop_keeps_the_right_nodes_float(outlier, tmp_path):
    out = tmp_path / "q.onnx"
    result = quantize(outlier["model"], out, outlier["calib"], eval=outlier["eval"], max_drop=1.0, speed=False)
    assert result.full_int8_report.accuracy_drop > 20  # naive INT8 is badly hurt
    assert set(result.excluded) == set(OUTLIER_NODES)
    assert result.report.accuracy_drop <= 1.0
    assert set(OUTLIER_NODES) == {s.node for s in result.sensitivity[:2]}
    assert result.steps[-1].met and not result.steps[0].met
    quantized = {n for n, _ in result.quantized}
    assert "head" in quantized and not quantized & set(OUTLIER_NODES)
    manifest = Manifest.read(manifest_path_for(out))
    assert manifest.history[-1].stage == "quantize"
    assert set(manifest.info["quantization"]["kept_float"]) == set(OUTLIER_NODES)
    assert manifest.info["precision"] == "mixed-int8"


def test_min_sqnr_budget_also_restores(outlier, tmp_path):
    result = quantize(outlier["model"], tmp_path / "q.onnx", outlier["calib"], eval=outlier["eval"], min_sqnr=25.0,
                      speed=False)
    assert result.full_int8_report.min_sqnr_db < 25.0 <= result.report.min_sqnr_db
    assert set(result.excluded) == set(OUTLIER_NODES)


def test_impossible_budget_fails_and_writes_nothing(outlier, tmp_path):
    out = tmp_path / "q.onnx"
    with pytest.raises(CheckFailedError, match="no INT8 setting meets") as info:
        quantize(outlier["model"], out, outlier["calib"], eval=outlier["eval"], min_sqnr=200.0, speed=False)
    assert info.value.exit_code == 1
    assert info.value.result.budget.startswith("output SQNR")  # the measured result travels with the error
    assert not out.exists() and not manifest_path_for(out).exists()


def test_max_drop_without_labels_is_bad_input(small, tmp_path):
    with pytest.raises(BadInputError, match="labels"):
        quantize(small["model"], tmp_path / "q.onnx", small["calib"], max_drop=1.0, **FAST)


def test_per_channel_upgrades_an_old_opset_and_the_result_loads(small, tmp_path):
    out = tmp_path / "q.onnx"
    result = quantize(small["model"], out, small["calib"], per_channel=True, **FAST)
    assert any("opset upgraded 12 -> 13" in n for n in result.notes)
    model = onnx.load(str(out))
    assert opset_version(model) >= 13 and quantization_info(model).format == "QDQ"
    feeds = random_samples((1, 3, 8, 8), 1, seed=5)[0]
    assert run_reference(out, feeds)["y"].shape == (1, 5)
    # held-out calibration samples were used for the report
    assert result.report.samples == 4 and any("held out" in w for w in result.warnings)


def test_per_tensor_and_symmetric_activations(small, tmp_path):
    out = tmp_path / "q.onnx"
    quantize(small["model"], out, small["calib"], per_channel=False, symmetric_activations=True, **FAST)
    model = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    q_nodes = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert q_nodes
    for node in q_nodes:  # activations: int8 with zero point 0
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and np.all(zp == 0)
    for node in model.graph.node:  # weights: one scale per tensor
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert inits[node.input[1]].size == 1


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_give_loadable_models(small, tmp_path, method):
    result = quantize(small["model"], tmp_path / "q.onnx", small["calib"], method=method, **FAST)
    assert result.calibration["method"] == method and result.report.min_cosine > 0.9


def test_exclude_by_op_type_and_unknown_exclude(small, tmp_path):
    result = quantize(small["model"], tmp_path / "q.onnx", small["calib"], exclude=("Gemm",), **FAST)
    assert result.user_excluded == ["fc"] and "fc" not in {n for n, _ in result.quantized}
    with pytest.raises(BadInputError, match="matches no node"):
        quantize(small["model"], tmp_path / "q2.onnx", small["calib"], exclude=("NoSuchThing",), **FAST)


def test_already_quantized_input_is_refused(small, tmp_path):
    first = tmp_path / "q.onnx"
    quantize(small["model"], first, small["calib"], **FAST)
    with pytest.raises(BadInputError, match="already quantized") as info:
        quantize(first, tmp_path / "again.onnx", small["calib"], **FAST)
    assert info.value.exit_code == 2 and "QDQ" in info.value.one_line()


def test_shape_mismatch_stops_before_any_output(small, tmp_path):
    bad = write_npz(tmp_path / "bad", random_samples((1, 3, 8, 8), 3) + random_samples((1, 3, 9, 8), 1))
    out = tmp_path / "q.onnx"
    with pytest.raises(BadInputError, match=r"0003\.npz.*expected shape \(1, 3, 8, 8\), found \(1, 3, 9, 8\)"):
        quantize(small["model"], out, bad, **FAST)
    assert not out.exists()


def test_synthetic_calibration_is_flagged_not_valid(small, tmp_path):
    result = quantize(small["model"], tmp_path / "q.onnx", "synthetic", calib_samples=8, eval_samples=4, **FAST)
    assert not result.report.valid_for_accuracy and result.calibration["synthetic"]
    assert any("SYNTHETIC" in w for w in result.warnings)


def test_require_speedup_fails_when_int8_is_slower(small, tmp_path, monkeypatch):
    def slower(models, sample, **kw):
        return SpeedReport({"fp32": 1.0, "int8": 2.0, **({"int8_full": 2.0} if "int8_full" in models else {})}, 10, 1)

    monkeypatch.setattr(qmod, "measure_speed", slower)
    out = tmp_path / "q.onnx"
    with pytest.raises(CheckFailedError, match="SLOWER"):
        quantize(small["model"], out, small["calib"], require_speedup=True, sensitivity=False)
    assert not out.exists()
    result = quantize(small["model"], out, small["calib"], sensitivity=False)  # without the flag: a verdict only
    assert result.speed.speedup == 0.5 and "SLOWER" in result.speed.verdict


def test_speed_is_measured_interleaved(small, tmp_path):
    result = quantize(small["model"], tmp_path / "q.onnx", small["calib"], sensitivity=False, speed_seconds=0.05)
    assert set(result.speed.medians_ms) == {"fp32", "int8"} and result.speed.provenance == "measured"
    assert all(v > 0 for v in result.speed.medians_ms.values()) and result.speed.runs >= 15


def test_quantize_onnx_api_for_other_stages(small):
    model = quantize_onnx(small["model"], small["calib"], per_channel=False, symmetric_activations=True)
    assert quantization_info(model).format == "QDQ"


def test_sensitivity_cap_preranks_by_layer_sqnr_loss(outlier, tmp_path):
    with pytest.raises(CheckFailedError, match="no longer works"):  # naive INT8 of this model outputs zeros
        quantize(outlier["model"], tmp_path / "q.onnx", outlier["calib"], eval=outlier["eval"],
                 sensitivity_nodes=1, speed=False)
    result = quantize(outlier["model"], tmp_path / "q.onnx", outlier["calib"], eval=outlier["eval"],
                      sensitivity_nodes=1, speed=False, max_drop=1.0)
    alone = [s for s in result.sensitivity if s.method == "alone"]
    local = [s for s in result.sensitivity if s.method == "local"]
    assert len(alone) == 1 and alone[0].node in OUTLIER_NODES and local
    assert all(s.local_loss_db is not None for s in result.sensitivity)
    assert any("quantized alone" in n for n in result.notes)
    assert "flatten" not in {s.node for s in result.sensitivity}  # data movement is not ranked


def test_pre_process_failure_falls_back_with_a_note(small, tmp_path, monkeypatch):
    import onnxruntime.quantization.shape_inference as shape_inference

    def broken(*args, **kwargs):
        raise RuntimeError("symbolic shape inference exploded")

    monkeypatch.setattr(shape_inference, "quant_pre_process", broken)
    out = tmp_path / "q.onnx"
    result = quantize(small["model"], out, small["calib"], **FAST)
    assert any("quant_pre_process failed" in n for n in result.notes)
    assert quantization_info(onnx.load(str(out))).format == "QDQ"


# ---------------------------------------------------------------- per-layer pass on renamed QDQ tensors (U-Net)

UNET_COMPUTE = {"enc1", "enc2", "up_t", "up_conv", "dec", "head"}


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    root = tmp_path_factory.mktemp("unet")
    model = unet_like_model(root / "unet.onnx")
    return {"model": model, "samples": random_samples((1, 2, 16, 16), 8, seed=2), "root": root}


@pytest.mark.parametrize("symmetric", [False, True], ids=["relu-folded", "relu-kept"])
def test_local_sqnr_loss_follows_qdq_renames(unet, tmp_path, symmetric):
    """Regression: the per-layer pass exposed FP32 names that ORT's QDQ writer had renamed (a Relu folded into
    its Conv) and onnxruntime refused the model ("Graph output (c1) does not exist in the graph")."""
    from edgekit.stages._quant_core import DATA_MOVEMENT_OPS, QdqSettings, calibrate, prepare_model, quantize_qdq
    from edgekit.stages._quant_core import quantized_nodes as qnodes
    from edgekit.stages._quant_eval import local_sqnr_loss, match_tensors

    prepared = prepare_model(onnx.load(str(unet["model"])), tmp_path, per_channel=True)
    ranges = calibrate(prepared, unet["samples"], tmp_path, symmetric=symmetric)
    data = quantize_qdq(prepared, ranges, QdqSettings(symmetric_activations=symmetric), workdir=tmp_path)
    compute = [c for c in qnodes(data) if c[1] not in DATA_MOVEMENT_OPS]
    assert {n for n, _ in compute} == UNET_COMPUTE
    int8 = onnx.ModelProto.FromString(data)
    folded = "c1" not in {o for n in int8.graph.node for o in n.output}
    assert folded != symmetric  # ORT folds the Relu only with asymmetric (uint8) activations

    pairs = match_tensors(prepared.model, int8, compute)
    assert set(pairs) == UNET_COMPUTE
    (enc1_in, enc1_out), head_out = pairs["enc1"], pairs["head"][1]
    assert enc1_in[0] == "x" and enc1_in[1] != "x"  # the quantized input the Conv reads, vs the FP32 input
    assert enc1_out[0] == ("r1" if folded else "c1")  # compared after the Relu when QDQ folded it
    assert head_out == ("mask", "mask")  # graph output: the DequantizeLinear writes the original name

    loss = local_sqnr_loss(prepared.model, data, compute, unet["samples"][:4], threads=1)
    assert set(loss) == UNET_COMPUTE
    # each node adds a few dB of rounding error; comparing a float Conv output with the FP32 Relu output
    # (or a capped exact input) gave +-20..120 dB here
    assert all(-3.0 < v < 15.0 for v in loss.values()), loss

    # the head by hand: SQNR of what it reads (FP32 r4 vs the dequantized r4) minus SQNR of the output
    from edgekit.onnxio import ort_session

    def session(model: onnx.ModelProto, extra: str):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.graph.output.append(onnx.ValueInfoProto(name=extra))
        return ort_session(model.SerializeToString(), threads=1)

    (fp_in, q_in) = pairs["head"][0]
    fp_sess, q_sess = session(prepared.model, fp_in), session(int8, q_in)
    energies = np.zeros(4)  # signal in, noise in, signal out, noise out
    for sample in unet["samples"][:4]:
        (ref_out, ref_in), (got_out, got_in) = fp_sess.run(["mask", fp_in], sample), q_sess.run(["mask", q_in], sample)
        energies += [np.sum(ref_in.astype(np.float64) ** 2), np.sum((ref_in - got_in).astype(np.float64) ** 2),
                     np.sum(ref_out.astype(np.float64) ** 2), np.sum((ref_out - got_out).astype(np.float64) ** 2)]
    by_hand = 10 * np.log10(energies[0] / energies[1]) - 10 * np.log10(energies[2] / energies[3])
    assert loss["head"] == pytest.approx(by_hand, abs=0.05)


def test_sensitivity_with_the_per_layer_pass_runs_on_a_unet(unet, tmp_path):
    result = quantize(unet["model"], tmp_path / "q.onnx", "synthetic", calib_samples=8, eval_samples=8,
                      sensitivity_nodes=2, speed=False)
    assert {s.node for s in result.sensitivity} == UNET_COMPUTE
    assert [s.method for s in result.sensitivity].count("alone") == 2
    assert all(s.local_loss_db is not None for s in result.sensitivity)


@pytest.mark.parametrize("n", [1, 5, 37, 200])
def test_fewest_kept_float_finds_the_threshold_in_log_rounds(n):
    for threshold in sorted(t for t in {1, 2, 4, 5, n // 2 + 1, n - 1, n} if 1 <= t <= n):
        calls: list[int] = []

        def trial(k: int, t: int = threshold, seen: list[int] = calls) -> bool:
            seen.append(k)
            return k >= t

        assert fewest_kept_float(n, trial) == threshold
        assert len(calls) == len(set(calls))  # never the same k twice
        assert len(calls) <= 4 + 2 * max(1, n).bit_length()
    assert fewest_kept_float(n, lambda k: False) is None


def test_fewest_kept_float_stops_where_no_int8_is_left():
    calls: list[int] = []

    def trial(k: int) -> bool | None:
        calls.append(k)
        return None if k > 10 else k >= 10  # k > 10 would leave nothing in INT8

    assert fewest_kept_float(100, trial) == 10
    assert max(calls) <= 16
    assert fewest_kept_float(100, lambda k: None if k > 10 else False) is None


def test_rank_nodes_puts_non_finite_outputs_first():

    from edgekit.stages._quant_eval import EvalSet, rank_nodes

    ref = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    outputs = {"good": ref + 0.01, "nan": np.full_like(ref, np.nan), "bad": ref + 1.0}

    evalset = EvalSet([{"x": np.zeros((1, 4), np.float32)}], None, "fake", True, [{"y": ref}])
    with np.errstate(invalid="ignore"):
        ranked = rank_nodes([(n, "Conv") for n in outputs], str.encode,
                            lambda data: FixedOutputSession(outputs[data.decode()]), evalset)
    assert [r.node for r in ranked] == ["nan", "bad", "good"]
