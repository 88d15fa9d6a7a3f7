"""Data of a run: evaluation/calibration samples materialised from a recipe's sources, stored as .npz files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.artifact import sha256_file
from edgekit.errors import BadInputError
from edgekit.recipe import DataSource, Recipe
from edgekit.stages.calibration import SAMPLES_ORIGIN, load_arrays


@dataclass
class EvalSet:
    """Evaluation (or calibration) samples loaded in memory: list of input dicts and optional labels."""

    samples: list[dict[str, np.ndarray]]
    labels: list[np.ndarray] | None  # one per sample: class ids, a mask, box rows (a metric reads them)
    description: str
    synthetic: bool = False


def write_samples(folder: Path, data: EvalSet) -> None:
    """One .npz per sample, plus a record of what they are (the stages reading them back report that)."""
    folder.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(data.samples))))
    for i, sample in enumerate(data.samples):
        extra = {} if data.labels is None else {"labels": np.asarray(data.labels[i])}
        np.savez(folder / f"{i:0{width}d}.npz", **sample, **extra)
    (folder / SAMPLES_ORIGIN).write_text(json.dumps({"description": data.description, "synthetic": data.synthetic}),
                                         encoding="utf-8")


def read_samples(folder: Path) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray] | None]:
    samples, labels = [], []
    for file in sorted(folder.glob("*.npz")):
        z = load_arrays(file)  # never unpickles: an object array is bad input naming the file
        sample = {k: v for k, v in z.items() if k != "labels"}
        if "labels" in z:
            labels.append(np.asarray(z["labels"]))
        samples.append(sample)
    return samples, (labels if len(labels) == len(samples) and labels else None)


def load_data(source: DataSource, specs: list, *, default_samples: int, allow_code: bool, recipe: Recipe) -> EvalSet:
    """Materialise a data source as samples shaped for the model's inputs."""
    limit = source.samples or default_samples
    if source.source == "digits":
        from edgekit.zoo.digits import load_digits_dataset

        images, labels = load_digits_dataset(source.split)
        limit = source.samples or len(images)  # the whole split unless the recipe caps it
        images, labels = images[:limit], labels[:limit]
        if len(specs) != 1:
            raise BadInputError("the digits source feeds one-input models only", path=recipe.path)
        spec = specs[0]
        want = tuple(d for d in spec.concrete_shape()[1:])
        if tuple(images.shape[1:]) != want:
            raise BadInputError(f"digits samples are {tuple(images.shape[1:])} but input {spec.name!r} wants {want}",
                                path=recipe.path, hint="use a model with a 1x32x32 input (lenet5-digits)")
        samples = [{spec.name: images[i:i + 1].astype(np.float32)} for i in range(len(images))]
        return EvalSet(samples, [labels[i:i + 1] for i in range(len(samples))],
                       f"scikit-learn digits ({source.split} split, {len(samples)} samples)")
    if source.source == "synthetic":
        from edgekit.onnxio import random_inputs

        samples = [random_inputs(specs, seed=1000 + i) for i in range(limit)]
        return EvalSet(samples, None, f"synthetic random inputs ({limit}; not valid for task accuracy)", True)
    path = source.path
    if path is not None and path.is_dir() and any(path.glob("*.npz")):
        samples, labels = read_samples(path)
        samples, labels = samples[:limit], None if labels is None else labels[:limit]
        if samples and labels is not None:
            return EvalSet(samples, labels, f"{path} ({len(samples)} samples with labels)")
    # Everything else goes through the data set readers (COCO JSON, masks, labels.csv, ImageFolder, image
    # folders, .npy dirs, py:module:fn): labels come along when the format has them.
    from edgekit.stages.datasets import open_data

    reader = open_data(str(path or source.source), specs, preprocess=recipe.preprocess, allow_code=allow_code,
                       limit=limit)
    samples, labels = [], []
    for sample, label in reader.iter_labeled():
        samples.append(dict(sample))
        labels.append(label)
    labelled = bool(labels) and all(label is not None for label in labels)
    return EvalSet(samples, [np.asarray(x) for x in labels] if labelled else None,
                   str(getattr(reader, "description", source.source)), bool(getattr(reader, "synthetic", False)))


def module_digest(module: str) -> str | None:
    """sha256 of a factory's source file, so editing the model code re-exports (None when not found)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return sha256_file(origin) if origin and Path(origin).is_file() else None
