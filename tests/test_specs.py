"""TensorSpec parsing: what `--input-shape` means in every verb."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import BadInputError
from edgekit.specs import (
    COMPILE_PRECISIONS,
    FLOAT_PRECISIONS,
    PRECISIONS,
    QUANT_PRECISIONS,
    TensorSpec,
    as_specs,
    normalize_precision,
    parse_input_shape,
    parse_input_shapes,
    resolve_precision,
)


def test_parse_static_shape_and_default_dtype() -> None:
    spec = parse_input_shape("images:1,3,640,640")
    assert spec == TensorSpec("images", (1, 3, 640, 640), "float32")
    assert spec.is_static and spec.dynamic_dims == {}


def test_named_dims_stay_dynamic_and_fill_from_overrides() -> None:
    spec = parse_input_shape("x:batch,3,h,224:float16")
    assert spec.dtype == "float16"
    assert spec.dynamic_dims == {0: "batch", 2: "h"}
    assert spec.concrete_shape({"h": 32}) == (1, 3, 32, 224)
    assert spec.numpy_dtype() == np.float16


@pytest.mark.parametrize("text", ["images", "images:", "images:1,,3", "images:1x3x224", "x:0,3", "x:1,3:complex"])
def test_bad_syntax_is_bad_input_naming_the_option(text: str) -> None:
    with pytest.raises(BadInputError) as info:
        parse_input_shape(text)
    assert info.value.path == "--input-shape"
    assert info.value.exit_code == 2
    assert "\n" not in info.value.one_line()


def test_duplicate_names_rejected() -> None:
    with pytest.raises(BadInputError, match="given twice"):
        parse_input_shapes(["a:1", "a:2"])


def test_json_round_trip_and_as_specs_accepts_both_forms() -> None:
    spec = parse_input_shape("x:batch,4:int64")
    assert TensorSpec.from_json(spec.to_json()) == spec
    assert as_specs([spec, "y:2,2"]) == [spec, TensorSpec("y", (2, 2))]
    assert as_specs(None) == []
    assert str(spec) == "x:batch,4:int64"


def test_one_precision_vocabulary() -> None:
    assert set(FLOAT_PRECISIONS) | set(QUANT_PRECISIONS) | {"auto"} == set(PRECISIONS)
    assert not set(FLOAT_PRECISIONS) & set(QUANT_PRECISIONS)
    assert set(COMPILE_PRECISIONS) == {"fp32", "fp16", "bf16", "int8"}
    assert normalize_precision(" FP16 ") == "fp16"
    with pytest.raises(BadInputError, match=r"targets\[0\]\.precision: unknown precision 'fp64'.*one of fp32"):
        normalize_precision("fp64", argument="targets[0].precision")
    with pytest.raises(BadInputError, match="unknown precision 'auto'"):
        normalize_precision("auto", allowed=COMPILE_PRECISIONS)


def test_default_precision_is_what_the_model_is() -> None:
    assert resolve_precision(None, model_is_quantized=True) == "int8"
    assert resolve_precision(None, model_is_quantized=False) == "fp32"
    assert resolve_precision("INT8", model_is_quantized=True) == "int8"
    assert resolve_precision("fp16", model_is_quantized=False) == "fp16"


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_float_precision_on_a_quantized_model_is_a_contradiction(precision: str) -> None:
    with pytest.raises(BadInputError, match=rf"--precision: {precision} asked for a model that is already quantized") \
            as info:
        resolve_precision(precision, model_is_quantized=True)
    assert info.value.exit_code == 2 and "leave --precision out" in str(info.value)
