"""Real data and a really trained model, with no download: LeNet-5 on scikit-learn's `load_digits`.

The 8x8 digit images (values 0..16) are scaled to 0..1 and upsampled 4x (nearest) to 1x1x32x32 so
they fit LeNet-5. Training is deterministic (fixed seed, fixed split) and takes seconds on 2 cores,
so tests and docs can quantize a model whose task accuracy means something.

Importing this module registers the zoo entry `lenet5-digits`. Torch and scikit-learn are imported
only inside functions.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.specs import TensorSpec

if TYPE_CHECKING:
    import torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SHAPE = (1, 1, 32, 32)
TEST_FRACTION = 0.25
SPLIT_SEED = 0
_BATCH = 128


def load_digits_dataset(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(images N x 1 x 32 x 32 float32 in 0..1, labels N int64) for split `train`, `test` or `all`."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ToolchainMissingError("scikit-learn is not installed", path="lenet5-digits",
                                    hint="pip install scikit-learn (it ships the digits data)") from None
    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    images = images.repeat(4, axis=2).repeat(4, axis=3)  # nearest 4x upsample: 8x8 -> 32x32
    labels = data.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(len(labels) * TEST_FRACTION)
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    if split == "all":
        return np.ascontiguousarray(images), labels
    if split == "train":
        return np.ascontiguousarray(images[train_idx]), labels[train_idx]
    if split == "test":
        return np.ascontiguousarray(images[test_idx]), labels[test_idx]
    raise BadInputError(f"unknown split {split!r}", path="split", hint="train, test or all")


@functools.lru_cache(maxsize=2)
def _trained_state(epochs: int, seed: int) -> dict[str, Any]:
    import torch

    from edgekit.zoo.models import LeNet5

    x_train, y_train = load_digits_dataset("train")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is faster and bit-reproducible
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LeNet5(num_classes=10, in_channels=1)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            steps_per_epoch = (len(y_train) + _BATCH - 1) // _BATCH
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=epochs * steps_per_epoch)
            x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
            generator = torch.Generator().manual_seed(seed)
            model.train()
            for _ in range(epochs):
                perm = torch.randperm(len(y), generator=generator)
                for start in range(0, len(y), _BATCH):
                    idx = perm[start:start + _BATCH]
                    optimizer.zero_grad()
                    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                    loss.backward()
                    optimizer.step()
                    schedule.step()
    finally:
        torch.set_num_threads(threads)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def trained_lenet5(epochs: int = 10, seed: int = 0) -> torch.nn.Module:
    """LeNet-5 trained on the digits train split (deterministic; cached per process)."""
    from edgekit.zoo.models import LeNet5

    model = LeNet5(num_classes=10, in_channels=1)
    model.load_state_dict(_trained_state(epochs, seed))
    return model.eval()


def accuracy(model: torch.nn.Module, split: str = "test") -> float:
    """Top-1 accuracy of a torch model on a digits split (0..1)."""
    import torch

    x, y = load_digits_dataset(split)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float(np.mean(pred == y))


def export_onnx(model: torch.nn.Module, path: str | Path, *, opset: int = 17) -> Path:
    """Export a 1x1x32x32 model to ONNX (TorchScript exporter; input `input`, output `logits`)."""
    import torch

    from edgekit.artifact import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.onnx.export(model.eval(), (torch.zeros(INPUT_SHAPE),), str(tmp), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False)
    return path


def write_samples(folder: str | Path, images: np.ndarray, labels: np.ndarray | None = None, *,
                  fmt: str = "npz", input_name: str = INPUT_NAME) -> Path:
    """Write one file per sample (`.npz` with the input and optional `labels`, or `.npy`) for --calib/--eval."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(images))))
    for i, image in enumerate(images):
        sample = image[None].astype(np.float32)
        if fmt == "npy":
            np.save(folder / f"{i:0{width}d}.npy", sample)
        elif fmt == "npz":
            extra = {} if labels is None else {"labels": np.asarray([labels[i]], dtype=np.int64)}
            np.savez(folder / f"{i:0{width}d}.npz", **{input_name: sample}, **extra)
        else:
            raise BadInputError(f"unknown sample format {fmt!r}", path="fmt", hint="npz or npy")
    return folder


def write_calibration_and_eval(folder: str | Path, *, calib_samples: int = 100, fmt: str = "npz") -> tuple[Path, Path]:
    """`folder/calib` (train split, no labels) and `folder/eval` (whole test split, `.npz` with labels)."""
    folder = Path(folder)
    x_train, _ = load_digits_dataset("train")
    x_test, y_test = load_digits_dataset("test")
    calib = write_samples(folder / "calib", x_train[:calib_samples], None, fmt=fmt)
    evaluation = write_samples(folder / "eval", x_test, y_test, fmt="npz")
    return calib, evaluation


def _register() -> None:
    from edgekit.zoo import ZooEntry, register

    register(
        ZooEntry("lenet5-digits", "LeNet-5 trained on scikit-learn digits (8x8 upsampled to 32x32), 10 classes",
                 "classification", [TensorSpec(INPUT_NAME, INPUT_SHAPE, "float32", "nchw")], [OUTPUT_NAME],
                 61_706, 416_520, "edgekit.zoo.digits:trained_lenet5"),
        trained_lenet5,
    )


_register()
