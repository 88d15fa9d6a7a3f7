"""`lenet5-digits`: a really trained zoo model on scikit-learn's digits, deterministic, with sample writers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from edgekit import zoo
from edgekit.zoo import digits


def test_split_is_fixed_and_shaped_for_lenet5():
    x_test, y_test = digits.load_digits_dataset("test")
    x_train, _ = digits.load_digits_dataset("train")
    assert x_test.shape[1:] == (1, 32, 32) and x_test.dtype == np.float32 and 0.0 <= x_test.min() <= x_test.max() <= 1.0
    assert len(x_test) + len(x_train) == 1797 and len(x_test) == 449
    np.testing.assert_array_equal(y_test, digits.load_digits_dataset("test")[1])


def test_zoo_entry_is_trained_and_deterministic():
    import torch

    assert "lenet5-digits" in [e.name for e in zoo.list_models()]
    model = zoo.create("lenet5-digits")
    assert digits.accuracy(model, "test") >= 0.95
    again = digits.trained_lenet5()
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_sample_writers(tmp_path):
    calib, evaluation = digits.write_calibration_and_eval(tmp_path, calib_samples=7)
    assert len(list(calib.glob("*.npz"))) == 7 and len(list(evaluation.glob("*.npz"))) == 449
    with np.load(next(evaluation.glob("*.npz"))) as npz:
        assert npz["input"].shape == (1, 1, 32, 32) and npz["labels"].shape == (1,)
    folder = digits.write_samples(tmp_path / "npy", np.zeros((3, 1, 32, 32), np.float32), fmt="npy")
    assert len(list(folder.glob("*.npy"))) == 3
