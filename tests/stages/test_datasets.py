"""Eval data in users' formats (COCO JSON, masks, labels.csv, ImageFolder, one .npz), and hostile files of each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.errors import BadInputError
from edgekit.specs import Preprocess, TensorSpec
from edgekit.stages.datasets import open_data

SPEC = [TensorSpec("x", (1, 3, 16, 16), "float32", "nchw")]


def _image(path: Path, size: tuple[int, int] = (32, 32), value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _coco(root: Path, **change) -> Path:
    _image(root / "a.png")
    _image(root / "images" / "b.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 32},
                       {"id": 2, "file_name": "b.png", "width": 32, "height": 32}],
            "annotations": [{"image_id": 1, "bbox": [0, 0, 16, 8], "category_id": 3},
                            {"image_id": 2, "bbox": [8, 8, 8, 8], "category_id": 5}],
            "categories": [{"id": 3}, {"id": 5}]}
    data.update(change)
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_one_npz_with_a_batch_axis(tmp_path):
    path = tmp_path / "eval.npz"
    np.savez(path, input=np.zeros((5, 3, 16, 16), np.float32), labels=np.arange(5))
    reader = open_data(path, SPEC)
    items = list(reader.iter_labeled())
    assert len(reader) == 5 and items[0][0]["x"].shape == (1, 3, 16, 16) and int(items[3][1][0]) == 3


@pytest.mark.parametrize("arrays, words", [
    ({"input": np.zeros((5, 3, 16, 16), np.float32), "labels": np.arange(4)}, "disagree on the number of samples"),
    ({"other": np.zeros((5, 3, 16, 16), np.float32)}, "no array for model input"),
    ({"input": np.array(["a"] * 5)}, "not numbers"),
])
def test_hostile_npz(tmp_path, arrays, words):
    path = tmp_path / "eval.npz"
    np.savez(path, **arrays)
    with pytest.raises(BadInputError, match=words) as info:
        open_data(path, SPEC)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_npz_with_objects_is_never_unpickled(tmp_path):
    path = tmp_path / "eval.npz"
    np.savez(path, input=np.array([{"a": 1}] * 2, dtype=object))
    with pytest.raises(BadInputError, match=r"cannot read \.npz"):
        open_data(path, SPEC)


def test_coco_boxes_scaled_to_the_input_and_categories_made_contiguous(tmp_path):
    reader = open_data(_coco(tmp_path), SPEC)
    labels = [label for _, label in reader.iter_labeled()]
    assert labels[0].tolist() == [[0, 0, 0, 8, 4]]  # 32 -> 16 pixels, category 3 -> class 0
    assert labels[1].tolist() == [[1, 4, 4, 8, 8]]
    second = [label for _, label in reader.subset(1, None).iter_labeled()]  # windows keep labels aligned
    assert len(second) == 1 and second[0].tolist() == [[1, 4, 4, 8, 8]]
    assert len(open_data(_coco(tmp_path), SPEC, limit=1)) == 1


@pytest.mark.parametrize("change, words", [
    ({"images": [{"id": 1, "file_name": "../../etc/passwd", "width": 32, "height": 32}]}, "leaves the data set"),
    ({"images": [{"id": 1, "file_name": "/etc/passwd", "width": 32, "height": 32}]}, "leaves the data set"),
    ({"images": [{"id": 1, "file_name": "missing.png", "width": 32, "height": 32}]}, "does not exist"),
    ({"images": [{"id": 1, "file_name": 7, "width": 32, "height": 32}]}, "must be a non-empty string"),
    ({"images": [{"id": 1, "file_name": "a.png", "width": 1e300, "height": 32}]}, "width must be a number"),
    ({"images": [{"id": "x", "file_name": "a.png", "width": 32, "height": 32}]}, "id must be a number"),
    ({"annotations": [{"image_id": 1, "bbox": [0, 0, "8", 8], "category_id": 3}]}, "bbox must be a number"),
    ({"annotations": [{"image_id": 1, "bbox": [0, 0, 8, float("nan")], "category_id": 3}]}, "not valid JSON|number"),
    ({"annotations": [{"image_id": 9, "bbox": [0, 0, 8, 8], "category_id": 3}]}, "not in `images`"),
    ({"annotations": [{"image_id": 1, "bbox": [0, 0, 8], "category_id": 3}]}, r"\[x, y, w, h\]"),
    ({"images": "nope"}, "not a COCO file"),
])
def test_hostile_coco(tmp_path, change, words):
    with pytest.raises(BadInputError, match=words) as info:
        open_data(_coco(tmp_path, **change), SPEC)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_coco_symlink_out_of_the_folder_is_refused(tmp_path):
    outside = _image(tmp_path / "secret" / "s.png")
    root = tmp_path / "set"
    path = _coco(root, images=[{"id": 1, "file_name": "link.png", "width": 32, "height": 32}], annotations=[])
    (root / "link.png").symlink_to(outside)
    with pytest.raises(BadInputError, match="outside the data set folder"):
        open_data(path, SPEC)


def test_images_and_masks(tmp_path):
    _image(tmp_path / "images" / "0.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:16] = 1
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks" / "0.png")
    reader = open_data(tmp_path, SPEC)
    (_sample, label), = list(reader.iter_labeled())
    assert label.shape == (1, 16, 16) and label[0, :8].all() and not label[0, 8:].any()
    _image(tmp_path / "images" / "1.png")
    with pytest.raises(BadInputError, match="has no mask"):
        open_data(tmp_path, SPEC)


def test_labels_csv_and_image_folder_layouts(tmp_path):
    for name in ("a.png", "b.png"):
        _image(tmp_path / "csv" / name)
    (tmp_path / "csv" / "labels.csv").write_text("file,label\na.png,dog\nb.png,cat\n")
    labels = [int(label[0]) for _, label in open_data(tmp_path / "csv", SPEC).iter_labeled()]
    assert labels == [1, 0]  # names sorted: cat=0, dog=1
    _image(tmp_path / "tree" / "cat" / "1.png")
    _image(tmp_path / "tree" / "dog" / "2.png")
    reader = open_data(tmp_path / "tree", SPEC, preprocess=Preprocess(mean=(127.5,) * 3, std=(127.5,) * 3))
    assert [int(label[0]) for _, label in reader.iter_labeled()] == [0, 1]
    (tmp_path / "csv" / "labels.csv").write_text("../x.png,1\n")
    with pytest.raises(BadInputError, match="leaves the data set"):
        open_data(tmp_path / "csv", SPEC)
    (tmp_path / "csv" / "labels.csv").write_text("a.png,99999999999\n")
    with pytest.raises(BadInputError, match="out of range"):
        open_data(tmp_path / "csv", SPEC)


def test_quantize_cli_takes_eval_npz_as_in_the_readme(tmp_path):
    from typer.testing import CliRunner

    from edgekit.cli import app
    from tests._quant_helpers import random_samples, small_conv_model, write_npz

    model = small_conv_model(tmp_path / "m.onnx", opset=13, shape=(1, 3, 8, 8))
    calib = write_npz(tmp_path / "calib", random_samples((1, 3, 8, 8), 8))
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "eval.npz", input=rng.standard_normal((6, 3, 8, 8)).astype(np.float32),
             labels=rng.integers(0, 5, 6))
    result = CliRunner().invoke(app, ["quantize", str(model), "-o", str(tmp_path / "q.onnx"), "--calib", str(calib),
                                      "--eval", str(tmp_path / "eval.npz"), "--no-speed", "--no-sensitivity"])
    assert result.exit_code == 0, result.output
    assert "6 sample(s) in eval.npz" in result.output and "task accuracy" in result.output
