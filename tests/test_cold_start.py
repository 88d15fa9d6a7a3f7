"""Cold start (issue 17): what loading a bundle pays before its first run."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import edgekit
from edgekit.errors import BadInputError
from edgekit.onnxio import load_onnx
from tests._bench_helpers import compile_bundle


def test_loading_a_bundle_does_not_run_the_onnx_checker_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = compile_bundle(tmp_path)
    calls: list[object] = []
    real = onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", lambda *a, **k: (calls.append(a), real(*a, **k)))
    with edgekit.load(bundle) as runner:  # verify (sha256 + inputs vs source.onnx), adapter load
        assert runner.input_specs
    assert calls == []  # ~65 ms of a ResNet-18 load: only the graph inputs are read from source.onnx


def test_the_inputs_check_at_load_still_refuses_an_edited_manifest(tmp_path: Path) -> None:
    bundle = compile_bundle(tmp_path)
    data = json.loads((bundle / "manifest.json").read_text())
    data["inputs"][0]["name"] = "not_x"
    (bundle / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="manifest inputs"):
        edgekit.load(bundle)


def test_load_onnx_checks_by_default(tmp_path: Path) -> None:
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("NoSuchOp", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BadInputError, match="checker"):
        load_onnx(path, load_weights=False)
    assert load_onnx(path, load_weights=False, check=False).graph.input[0].name == "x"
