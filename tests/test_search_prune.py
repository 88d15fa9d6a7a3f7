"""Precision auto's screening: what cannot win is pruned before it is paid for, with the figures that say so."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.errors import BadInputError
from edgekit.pipeline.data import EvalSet, write_samples
from edgekit.pipeline.search import label, prune
from edgekit.specs import TensorSpec
from edgekit.stages.calibration import SAMPLES_ORIGIN, open_source

PRECISIONS = {"openvino-bf16": "bf16", "openvino-fp32": "fp32", "openvino-int8": "int8",
              "onnxruntime-fp32": "fp32", "onnxruntime-int8": "int8"}


def test_label_names_adapter_and_precision():
    assert label("onnxruntime-int8") == "onnxruntime·int8"
    assert label("null-fp32") == "null·fp32"


def test_far_slower_accurate_candidate_is_dropped_with_the_figures():
    medians = {"openvino-bf16": 10.0, "openvino-fp32": 19.0, "onnxruntime-fp32": 14.0}
    dropped = prune(medians, PRECISIONS, set(medians), {}, rounds=5)
    assert set(dropped) == {"openvino-fp32"}
    assert dropped["openvino-fp32"] == ("dropped openvino·fp32 after 5 rounds: 1.90× slower than openvino·bf16 "
                                        "(19.000 vs 10.000 ms)")


def test_mixed_dropped_when_its_int8_bound_is_not_clearly_faster_than_float():
    medians = {"openvino-bf16": 10.0, "onnxruntime-int8": 9.8}  # ORT int8 inaccurate, 2 % faster only
    dropped = prune(medians, PRECISIONS, {"openvino-bf16"}, {"onnxruntime-mixed": "onnxruntime-int8"}, rounds=5)
    assert "onnxruntime-mixed" in dropped
    assert "only 2% faster than openvino·bf16" in dropped["onnxruntime-mixed"]
    assert "before building it" in dropped["onnxruntime-mixed"]


def test_mixed_kept_when_its_bound_could_win():
    medians = {"openvino-bf16": 10.0, "onnxruntime-int8": 7.0}
    assert prune(medians, PRECISIONS, {"openvino-bf16"}, {"onnxruntime-mixed": "onnxruntime-int8"}, rounds=5) == {}


def test_mixed_dropped_when_an_accurate_int8_build_is_already_faster_than_its_bound():
    medians = {"openvino-bf16": 10.0, "openvino-int8": 6.0, "onnxruntime-int8": 8.0}
    dropped = prune(medians, PRECISIONS, {"openvino-bf16", "openvino-int8"},
                    {"onnxruntime-mixed": "onnxruntime-int8"}, rounds=3)
    assert "1.33× slower than openvino·int8" in dropped["onnxruntime-mixed"]


def test_nothing_pruned_without_an_accurate_reference_or_a_timed_bound():
    medians = {"onnxruntime-int8": 50.0, "onnxruntime-fp32": 10.0}
    assert prune(medians, PRECISIONS, set(), {"onnxruntime-mixed": "onnxruntime-int8"}, rounds=5) == {}
    # the bound did not build: nothing is known about mixed, so it is built
    assert prune({"openvino-bf16": 10.0}, PRECISIONS, {"openvino-bf16"},
                 {"onnxruntime-mixed": "onnxruntime-int8"}, rounds=5) == {}


def test_the_fastest_accurate_candidate_is_never_dropped():
    medians = {"openvino-bf16": 10.0, "openvino-fp32": 12.0}
    assert set(prune(medians, PRECISIONS, set(medians), {}, rounds=5, drop_ratio=0.5)) == {"openvino-fp32"}


# ------------------------------------------------------------------ samples an edgekit stage stored

SPEC = [TensorSpec("x", (1, 3), "float32")]


def test_stored_synthetic_samples_read_back_as_synthetic_not_as_real_files(tmp_path):
    data = EvalSet([{"x": np.zeros((1, 3), np.float32)}] * 2, None, "synthetic random inputs (2)", True)
    write_samples(tmp_path / "s", data)
    reader = open_source(tmp_path / "s", SPEC)
    assert reader.synthetic is True
    assert reader.description == "synthetic random inputs (2)"
    assert len(list(reader)) == 2  # the record is not a sample


def test_a_user_folder_without_the_record_is_described_by_its_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((1, 3), np.float32))
    reader = open_source(tmp_path, SPEC)
    assert reader.synthetic is False and "1 array file(s)" in reader.description


@pytest.mark.parametrize("record", ["{not json", json.dumps([1]), json.dumps({"description": 3, "synthetic": True}),
                                    json.dumps({"description": "x", "synthetic": "yes"})])
def test_a_broken_samples_record_is_one_line_of_bad_input(tmp_path, record):
    np.save(tmp_path / "a.npy", np.zeros((1, 3), np.float32))
    (tmp_path / SAMPLES_ORIGIN).write_text(record, encoding="utf-8")
    with pytest.raises(BadInputError) as err:
        open_source(tmp_path, SPEC)
    assert SAMPLES_ORIGIN in err.value.one_line() and "\n" not in err.value.one_line()
