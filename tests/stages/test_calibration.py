"""Calibration sources: arrays, images, callables, synthetic; every bad sample is named before any work."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import BadInputError
from edgekit.specs import Preprocess, TensorSpec
from edgekit.stages.calibration import open_source

SPEC = [TensorSpec("x", (1, 3, 4, 4))]


def _npy(folder, arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        np.save(folder / f"{i:03d}.npy", a)
    return folder


def _images(folder, n, size=(10, 12), mode="RGB"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (*size, 3) if mode == "RGB" else size
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / f"{i}.png")
    return folder


def test_npy_folder_is_reiterable_and_adds_a_missing_batch_dim(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4, 4)).astype(np.float64) for _ in range(5)]  # no batch dim, float64
    reader = open_source(_npy(tmp_path / "d", arrays), SPEC)
    assert len(reader) == 5 and not reader.synthetic and "5 array file(s)" in reader.description
    first, second = list(reader), list(reader)
    assert first[0]["x"].shape == (1, 3, 4, 4) and first[0]["x"].dtype == np.float32
    np.testing.assert_array_equal(first[4]["x"], second[4]["x"])
    np.testing.assert_allclose(first[2]["x"][0], arrays[2], rtol=1e-6)


def test_limit_and_subset_window_the_samples(tmp_path):
    arrays = [np.full((1, 3, 4, 4), i, np.float32) for i in range(10)]
    reader = open_source(_npy(tmp_path / "d", arrays), SPEC, limit=6)
    assert len(reader) == 6
    tail = reader.subset(4, None)
    assert [int(s["x"].flat[0]) for s in tail] == [4, 5]


def test_npz_keeps_labels_aside(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for i in range(3):
        np.savez(folder / f"{i}.npz", x=np.zeros((1, 3, 4, 4), np.float32), labels=np.array([i]))
    reader = open_source(folder, SPEC)
    pairs = list(reader.iter_labeled())
    assert [int(lab[0]) for _, lab in pairs] == [0, 1, 2]
    assert set(pairs[0][0]) == {"x"}


def test_shape_mismatch_names_file_expected_and_found(tmp_path):
    arrays = [np.zeros((1, 3, 4, 4), np.float32)] * 2 + [np.zeros((1, 3, 5, 4), np.float32)]
    with pytest.raises(BadInputError) as info:
        open_source(_npy(tmp_path / "d", arrays), SPEC)
    text = info.value.one_line()
    assert "002.npy" in text and "(1, 3, 4, 4)" in text and "(1, 3, 5, 4)" in text
    assert info.value.exit_code == 2


def test_dtype_kind_mismatch_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="dtype"):
        open_source(_npy(tmp_path / "d", [np.zeros((1, 3, 4, 4), np.int32)]), SPEC)


def test_missing_input_name_in_npz(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    np.savez(folder / "a.npz", y=np.zeros((1, 3, 4, 4), np.float32), z=np.zeros(1))
    with pytest.raises(BadInputError, match="lacks model input"):
        open_source(folder, SPEC)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_named(tmp_path, bad):
    a = np.zeros((1, 3, 4, 4), np.float32)
    a[0, 1, 2, 3] = bad
    with pytest.raises(BadInputError, match="NaN/Inf") as info:
        open_source(_npy(tmp_path / "d", [np.zeros_like(a), a]), SPEC)
    assert "001.npy" in info.value.one_line()


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no samples"):
        open_source(tmp_path / "empty", SPEC)
    with pytest.raises(BadInputError, match="no such folder"):
        open_source(tmp_path / "nope", SPEC)
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("hi")
    with pytest.raises(BadInputError, match=r"none is \.npy"):
        open_source(tmp_path / "txt", SPEC)


def test_image_folder_preprocessing_nchw(tmp_path):
    folder = _images(tmp_path / "img", 3)
    pre = Preprocess(size=(4, 4), mean=(100.0, 100.0, 100.0), std=(50.0, 50.0, 50.0))
    reader = open_source(folder, SPEC, preprocess=pre)
    sample = next(iter(reader))["x"]
    assert sample.shape == (1, 3, 4, 4)
    from PIL import Image

    raw = np.asarray(Image.open(folder / "0.png").convert("RGB").resize((4, 4), Image.Resampling.BILINEAR), np.float32)
    np.testing.assert_allclose(sample[0], ((raw - 100.0) / 50.0).transpose(2, 0, 1), rtol=1e-5)


def test_image_folder_nhwc_grayscale_uses_model_size(tmp_path):
    folder = _images(tmp_path / "img", 2)
    spec = [TensorSpec("x", (1, 6, 5, 1))]
    reader = open_source(folder, spec, preprocess=Preprocess(layout="nhwc", grayscale=True, mean=(0.0,), std=(255.0,)))
    sample = next(iter(reader))["x"]
    assert sample.shape == (1, 6, 5, 1) and sample.min() >= 0.0 and sample.max() <= 1.0


def test_unreadable_image_is_named(tmp_path):
    folder = _images(tmp_path / "img", 2)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    with pytest.raises(BadInputError, match="unreadable image") as info:
        open_source(folder, SPEC, preprocess=Preprocess(size=(4, 4)))
    assert "broken.jpg" in info.value.one_line()


def test_callable_source_needs_trust(tmp_path):
    code = tmp_path / "mydata.py"
    code.write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    return [{'x': np.full((1, 3, 4, 4), i, np.float32)} for i in range(4)]\n"
    )
    ref = f"py:{code}:samples"
    with pytest.raises(BadInputError, match="trust-code"):
        open_source(ref, SPEC)
    reader = open_source(ref, SPEC, allow_code=True)
    assert len(reader) == 4 and [int(s["x"].flat[0]) for s in reader] == [0, 1, 2, 3]
    with pytest.raises(BadInputError, match="no callable"):
        open_source(f"py:{code}:missing", SPEC, allow_code=True)


def test_synthetic_is_flagged(tmp_path):
    reader = open_source("synthetic", SPEC, limit=7)
    assert reader.synthetic and len(reader) == 7 and "NOT valid for accuracy" in reader.description
    a, b = next(iter(reader))["x"], next(iter(reader))["x"]
    np.testing.assert_array_equal(a, b)  # seeded: the same on every pass


def test_python_iterables_are_accepted(tmp_path):
    items = [{"x": np.full((1, 3, 4, 4), i, np.float32), "labels": np.array([i])} for i in range(5)]
    reader = open_source(items, SPEC, limit=3)
    assert len(reader) == 3 and [int(lab[0]) for _, lab in reader.iter_labeled()] == [0, 1, 2]
    once = open_source(iter(items), SPEC)
    assert len(list(once)) == 5 and len(list(once)) == 5  # a one-shot iterator is kept, re-iterable
    with pytest.raises(BadInputError, match="expected shape"):
        open_source([{"x": np.zeros((2, 2), np.float32)}], SPEC)


def test_a_scalar_input_stays_scalar():
    from edgekit.stages.calibration import conform

    specs = [TensorSpec("x", (1, 4)), TensorSpec("sr", (), "int64")]
    sample = conform({"x": np.ones((1, 4), np.float32), "sr": np.array(16000, np.int64)}, specs, "calib.npz")
    assert sample["sr"].shape == () and sample["sr"] == 16000  # silero-vad's `sr`, not shape (1,)
