"""TensorSpec parsing: what `--input-shape` means in every verb."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec, as_specs, parse_input_shape, parse_input_shapes


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
