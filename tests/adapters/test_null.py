"""The null adapter: the ONNX reference as a backend, usable on every target, never picked by auto."""

from __future__ import annotations

import numpy as np
import pytest

import edgekit
from edgekit.adapters.base import CompileOptions, Provenance
from edgekit.adapters.null import NullAdapter
from edgekit.errors import BadInputError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.targets import TargetProfile
from tests._adapters_helpers import tiny_conv_model

NPU = TargetProfile("fakenpu", "", "npu", ("null",), ("fp32",))


@pytest.fixture
def model(tmp_path):
    return tiny_conv_model(tmp_path / "tiny.onnx")


def test_runs_the_reference_bit_for_bit_close(model, tmp_path):
    runner = edgekit.compile(model, output=tmp_path / "b", backend="null")
    loaded = edgekit.load(runner.bundle.path)
    feeds = random_inputs(loaded.input_specs, seed=3)
    got = loaded.run(feeds)["logits"]
    ref = run_reference(model, feeds)["logits"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_on_a_non_cpu_target_runs_are_emulated_not_measured():
    caps = NullAdapter().capabilities(NPU)
    assert caps.run_provenance is Provenance.EMULATED
    assert NullAdapter().capabilities(TargetProfile("cpu", "", "cpu", (), ())).run_provenance is Provenance.MEASURED


def test_not_chosen_by_auto(model, tmp_path):
    result = edgekit.compile(model, output=tmp_path / "b", backend="auto")
    assert "null" not in {c.adapter for c in result.candidates}
    assert result.adapter != "null"


def test_rejects_unknown_adapter_options(model, tmp_path):
    opts = CompileOptions(adapter_options={"speed": "max"})
    with pytest.raises(BadInputError, match="unknown option 'speed'"):
        NullAdapter().compile(model, NPU, opts, tmp_path)
