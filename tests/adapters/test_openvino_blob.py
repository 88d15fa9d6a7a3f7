"""OpenVINO cold start: a bundle carries the compiled blob only when importing it was measured faster, and a
blob built for another OpenVINO or CPU is never imported (the IR is compiled, and the runner says why)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")

import edgekit
from edgekit.adapters import openvino as ov_adapter
from tests._pipeline_helpers import tiny_classifier


def _compile(tmp_path: Path, monkeypatch, gain: float) -> Path:
    monkeypatch.setattr(ov_adapter, "BLOB_MIN_GAIN", gain)
    model = tiny_classifier(tmp_path / "tiny.onnx")
    out = tmp_path / f"bundle-{gain}"
    edgekit.compile(model, output=out, backend="openvino", precision="fp32")
    return out


def test_blob_kept_when_import_was_faster_and_imported_on_load(tmp_path, monkeypatch):
    bundle = _compile(tmp_path, monkeypatch, gain=1e9)  # any import time counts as faster
    info = json.loads((bundle / "manifest.json").read_text())["info"]
    load = info["load"]
    assert load["blob"] == ov_adapter.BLOB_FILE and (bundle / ov_adapter.BLOB_FILE).is_file()
    assert load["import_ms"] >= 0 and load["compile_ms"] > 0 and load["decision"].startswith("blob kept")
    with edgekit.load(bundle) as runner:
        assert runner.load_path == "blob imported"
        x = np.ones(runner.input_specs[0].concrete_shape(), np.float32)
        from_blob = runner.run({runner.input_specs[0].name: x})
    monkeypatch.setattr(ov_adapter, "_import_blob", lambda *a: (None, "IR compiled (test)"))
    with edgekit.load(bundle) as runner:  # the IR gives the same outputs as the blob
        assert runner.load_path == "IR compiled (test)"
        from_ir = runner.run({runner.input_specs[0].name: x})
    for name in from_ir:
        np.testing.assert_array_equal(from_blob[name], from_ir[name])


def test_blob_not_kept_when_compiling_was_faster(tmp_path, monkeypatch):
    bundle = _compile(tmp_path, monkeypatch, gain=0.0)  # no import is faster than 0 × compile
    load = json.loads((bundle / "manifest.json").read_text())["info"]["load"]
    assert load["blob"] is None and load["decision"].startswith("blob not kept")
    assert not (bundle / ov_adapter.BLOB_FILE).exists()
    with edgekit.load(bundle) as runner:
        assert runner.load_path == "IR compiled (the bundle has no blob)"


@pytest.mark.parametrize("key", ["openvino", "cpu"])
def test_blob_for_another_openvino_or_cpu_is_not_imported(tmp_path, monkeypatch, key):
    bundle = _compile(tmp_path, monkeypatch, gain=1e9)
    real = ov_adapter._blob_host()
    monkeypatch.setattr(ov_adapter, "_blob_host", lambda: {**real, key: "something else"})
    with edgekit.load(bundle) as runner:
        assert runner.load_path.startswith("IR compiled: the blob was built for")
        assert "something else" in runner.load_path


def test_a_blob_openvino_refuses_falls_back_to_the_ir(tmp_path, monkeypatch):
    bundle = _compile(tmp_path, monkeypatch, gain=1e9)
    # the same refusal a corrupt or foreign blob gets, without breaking the bundle's integrity check
    monkeypatch.setattr(ov_adapter, "_core", _RefusingCore(ov_adapter._core()))
    with edgekit.load(bundle) as runner:
        assert runner.load_path.startswith("IR compiled: OpenVINO refused the blob")


class _RefusingCore:
    def __init__(self, core):
        self._core = core

    def __call__(self):
        return self

    def import_model(self, *args, **kwargs):
        raise RuntimeError("Exception from src/inference/src/dev/core_impl.cpp:1: blob is not compatible")

    def __getattr__(self, name):
        return getattr(self._core, name)


def test_outputs_of_one_run_survive_the_next_run(tmp_path, monkeypatch):
    # OpenVINO copies outputs out of the request (share_outputs=False): edgekit adds no copy of its own
    bundle = _compile(tmp_path, monkeypatch, gain=0.0)
    with edgekit.load(bundle) as runner:
        spec = runner.input_specs[0]
        first = runner.run({spec.name: np.ones(spec.concrete_shape(), np.float32)})
        kept = {k: v.copy() for k, v in first.items()}
        runner.run({spec.name: np.full(spec.concrete_shape(), -3.0, np.float32)})
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])


@pytest.mark.parametrize("load", [None, "model.blob", ["model.blob"], {"blob": "../../outside.blob"},
                                  {"blob": "/etc/passwd"}, {"blob": 7}, {"blob": None}])
def test_a_manifest_load_record_cannot_point_anywhere_but_the_fixed_blob_name(tmp_path, load):
    # the manifest only says whether model.blob is there: a path, a list or a number is never opened
    (tmp_path / "outside.blob").write_bytes(b"not a blob")
    compiled, why = ov_adapter._import_blob(tmp_path / "bundle", load, "CPU", {})
    assert compiled is None and why == "IR compiled (the bundle has no blob)"


def test_a_manifest_naming_a_missing_blob_compiles_the_ir(tmp_path):
    compiled, why = ov_adapter._import_blob(tmp_path, {"blob": ov_adapter.BLOB_FILE}, "CPU", {})
    assert compiled is None and why == "IR compiled (the manifest names a blob the bundle lacks)"
