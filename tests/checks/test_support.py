"""`edgekit check`: sourced per-op verdicts, partition, dynamic dims with the fix, exit code 3."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgekit.checks.support import check, simplify_command
from edgekit.cli import app
from edgekit.onnxio import input_specs, load_onnx
from tests._npu_helpers import detector, if_model, loop_model, segmenter

runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_detector_on_ascend_is_all_npu_one_subgraph(tmp_path):
    report = check(detector(tmp_path / "det.onnx"), "ascend310")
    assert report.ok and report.adapter == "ascend-atc"
    part = report.details["partition"]
    assert part["npu_subgraphs"] == 1 and part["cpu_fallbacks"] == 0 and part["mac_share_npu"] == 1.0
    rows = {r["op_type"]: r for r in report.details["op_table"]}
    assert rows["Resize"]["verdict"] == "npu" and any("hiascend" in s for s in rows["Resize"]["sources"])


def test_loop_makes_a_cpu_fallback_and_fails_the_check(tmp_path):
    report = check(loop_model(tmp_path / "loop.onnx"), "ascend310")
    assert not report.ok and [v.op_type for v in report.unsupported] == ["Loop"]
    part = report.details["partition"]
    assert part["cpu_fallbacks"] == 1 and part["npu_subgraphs"] == 1
    assert {(c["tensor"], c["direction"]) for c in part["copies"]} == {("x", "H2D"), ("c", "D2H")}


def test_dynamic_dims_come_with_the_exact_simplify_command(tmp_path):
    path = detector(tmp_path / "dyn.onnx", batch="N")
    report = check(path, "ascend310")
    assert report.dynamic_dims == {"images": {0: "N"}}
    assert report.details["dynamic_fix"]["command"] == (
        f"edgekit simplify {path} -o {tmp_path / 'dyn.static.onnx'} --input-shape images:1,3,32,32")
    assert "--dynamic_batch_size" in report.details["dynamic_fix"]["why"]


def test_simplify_command_keeps_unknown_spatial_dims_named(tmp_path):
    from edgekit.specs import TensorSpec

    cmd = simplify_command(tmp_path / "m.onnx", [TensorSpec("x", ("batch", 3, "h", "w"))])
    assert cmd.endswith("--input-shape x:1,3,<h>,<w>")


def test_non_npu_targets_use_their_adapter(tmp_path):
    report = check(segmenter(tmp_path / "seg.onnx"), "cpu")
    assert report.ok and report.adapter == "onnxruntime"
    assert {v.verdict for v in report.verdicts} == {"supported"}


def test_cli_prints_table_partition_and_exits_3_when_unsupported(tmp_path):
    ok = _cli("check", if_model(tmp_path / "if.onnx"), "--target", "ascend310")
    assert ok.exit_code == 0, ok.output
    assert "If" in ok.output and "NPU subgraph" in ok.output and "no unsupported nodes" in ok.output
    bad = _cli("check", loop_model(tmp_path / "loop.onnx"), "--target", "ascend310")
    assert bad.exit_code == 3
    assert "unsupported" in bad.output and "Loop" in bad.output
    dyn = _cli("check", detector(tmp_path / "dyn.onnx", dynamic_scales=True, batch="N"), "--target", "ascend310")
    assert dyn.exit_code == 3 and "edgekit simplify" in dyn.output


def test_cli_json_is_parseable(tmp_path):
    result = _cli("check", detector(tmp_path / "det.onnx"), "--target", "mlu220", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] and data["adapter"] == "magicmind"
    verdicts = {v["op_type"]: v["verdict"] for v in data["verdicts"]}
    assert verdicts["Conv"] == "npu" and verdicts["Resize"] == "unknown" and verdicts["Concat"] == "unknown"
    assert data["details"]["partition"]["assumed_on_npu"] == 3  # Resize, Concat, Sigmoid


def _zoo_export(name: str, shape: str, path):
    pytest.importorskip("torch")
    import edgekit

    edgekit.export(f"zoo:{name}", [shape], path)
    return path


def test_zoo_unet_segmenter_convtranspose_resize_on_ascend(tmp_path):
    path = _zoo_export("unet", "image:1,1,64,64", tmp_path / "unet.onnx")
    report = check(path, "ascend310")
    ops = {r["op_type"]: r["verdict"] for r in report.details["op_table"]}
    assert ops["ConvTranspose"] == "npu" and ops["Resize"] == "npu" and report.ok
    assert report.details["partition"]["npu_subgraphs"] == 1
    assert not input_specs(load_onnx(path))[0].dynamic_dims


@pytest.mark.slow
def test_zoo_yolov5n_detector_on_ascend_and_mlu(tmp_path):
    path = _zoo_export("yolov5n", "images:1,3,64,64", tmp_path / "yolo.onnx")
    ascend = check(path, "ascend310")
    assert ascend.ok and ascend.details["partition"]["mac_share_npu"] == 1.0
    mlu = check(path, "mlu220")
    assert mlu.ok and set(mlu.details["counts"]) == {"npu", "unknown"}


def _torch_named_model(path):
    """A CRNN-like tail with torch-style node names ("/rnn/LSTM"): Conv -> Reshape -> LSTM -> Gemm-ish MatMul.

    On mlu220 (MagicMind, no public op list) only Conv is sourced as supported: Reshape, Transpose,
    LSTM, Squeeze and MatMul are unknown and must be counted as assumptions, not as 100 % on the NPU.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    hidden = 8
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "cw"),
             numpy_helper.from_array(np.array([1, 4, 16], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, 4)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32), "R"),
             numpy_helper.from_array(rng.standard_normal((hidden, 5)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], name="/backbone/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["r"], name="/neck/Reshape"),
             helper.make_node("Transpose", ["r"], ["t"], name="/neck/Transpose", perm=[2, 0, 1]),
             helper.make_node("LSTM", ["t", "W", "R"], ["seq"], name="/rnn/LSTM", hidden_size=hidden),
             helper.make_node("Squeeze", ["seq", "one"], ["s"], name="/rnn/Squeeze"),
             helper.make_node("MatMul", ["s", "fc"], ["y"], name="/head/MatMul")]
    graph = helper.make_graph(nodes, "crnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_unknown_nodes_with_torch_names_are_counted_as_assumed_on_mlu220(tmp_path):
    report = check(_torch_named_model(tmp_path / "crnn.onnx"), "mlu220")
    counts = report.details["counts"]
    assert counts == {"npu": 1, "unknown": 5}
    part = report.details["partition"]
    assert part["assumed_on_npu"] == 5  # every unknown node placed on the NPU is an assumption, said so
    assert part["npu_macs_assumed"] > 0 and part["mac_share_npu_confirmed"] < 1.0
    got = _cli("check", tmp_path / "crnn.onnx", "--target", "mlu220")
    assert got.exit_code == 0, got.output
    text = " ".join(got.output.split())
    assert "5 node(s) unknown" in text and "LSTM" in text
    assert "no unsupported nodes" not in text or "5 node(s) unknown" in text
    assert "assumed" in text


def _softmax_model(path, axis: int):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Softmax", ["x"], ["y"], name=f"/softmax{axis}", axis=axis)
    graph = helper.make_graph([node], "sm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize(("axis", "verdict"), [(1, "npu"), (2, "cpu-fallback"), (3, "cpu-fallback"),
                                               (-1, "cpu-fallback")])
def test_the_softmax_axis_limit_shown_for_rk3588_is_applied(tmp_path, axis, verdict):
    report = check(_softmax_model(tmp_path / "sm.onnx", axis), "rk3588")
    (v,) = report.verdicts
    assert "axis 1" in v.reason
    assert v.verdict == verdict, v.reason
    if verdict != "npu":
        assert f"axis is {axis % 4}" in v.reason
        assert report.details["partition"]["cpu_fallbacks"] == 1
