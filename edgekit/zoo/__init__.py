"""Reference models in plain torch: LeNet-5, ResNet-18, MobileNetV2, a YOLOv5n-shaped detector, U-Net.

Variants are data (`VARIANTS`, timm habit): a name maps to a builder in `edgekit.zoo.models` and its
keyword arguments. Listing the zoo does not import torch; `create` does. Weights are random but
seeded, so every `create(name)` gives the same model. `params` and `macs` are stored figures that
`tests/test_zoo.py` recomputes (torch parameter count; MACs via `edgekit.graph.node_costs`
on the exported model) so they cannot drift.

Other modules add entries with `register` (e.g. `edgekit.zoo.digits` adds `lenet5-digits`).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: what it takes, what it is for, and how big it is (at its default input)."""

    name: str
    description: str
    task: str  # classification | detection | segmentation
    inputs: list[TensorSpec]
    outputs: list[str]
    params: int
    macs: int  # multiply-accumulates at `inputs` (estimated from shapes: not a measurement)
    builder: str = ""  # key of edgekit.zoo.models.BUILDERS, or "module:function" for registered entries
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "task": self.task,
            "inputs": [s.to_json() for s in self.inputs], "outputs": list(self.outputs),
            "params": self.params, "macs": self.macs, "config": dict(self.config),
        }


def _spec(name: str, *shape: int) -> list[TensorSpec]:
    return [TensorSpec(name, tuple(shape), "float32", "nchw")]


VARIANTS: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("lenet5", "LeNet-5, 10 classes, 1x32x32 grayscale", "classification",
                 _spec("input", 1, 1, 32, 32), ["logits"], 61_706, 416_520, "lenet5", {"num_classes": 10}),
        ZooEntry("resnet18", "ResNet-18, ImageNet-shaped (1000 classes), 224x224 RGB", "classification",
                 _spec("input", 1, 3, 224, 224), ["logits"], 11_689_512, 1_814_073_344, "resnet",
                 {"layers": (2, 2, 2, 2), "num_classes": 1000}),
        ZooEntry("mobilenetv2", "MobileNetV2 1.0, ImageNet-shaped (1000 classes), 224x224 RGB", "classification",
                 _spec("input", 1, 3, 224, 224), ["logits"], 3_504_872, 300_774_272, "mobilenetv2",
                 {"num_classes": 1000, "width_mult": 1.0}),
        ZooEntry("yolov5n", "YOLOv5n-shaped detector (C3 backbone, SPPF, PAN neck, 3 heads), 80 classes, "
                 "decoded boxes (batch, anchors, 85)", "detection",
                 _spec("images", 1, 3, 640, 640), ["detections"], 1_872_157, 2_234_060_800, "yolov5",
                 {"depth": 0.33, "width": 0.25, "num_classes": 80, "decode": True}),
        ZooEntry("unet", "U-Net (base 16, depth 4), 1-channel medical-style 256x256, ConvTranspose + Resize "
                 "upsampling", "segmentation",
                 _spec("image", 1, 1, 256, 256), ["mask"], 1_940_753, 3_013_607_424, "unet",
                 {"in_channels": 1, "num_classes": 1, "base": 16, "depth": 4, "resize_last": True}),
    )
}

# Entries added by other modules (name -> (entry, factory)); see `register`.
_REGISTERED: dict[str, tuple[ZooEntry, Callable[[], Any]]] = {}
# Modules that register entries when imported, loaded on first listing.
PLUGIN_MODULES = ("edgekit.zoo.digits", "edgekit.zoo.shapes")
_plugins_loaded = False


def register(entry: ZooEntry, factory: Callable[[], Any]) -> None:
    """Add a model defined elsewhere (a trained variant, a plugin) to the zoo."""
    _REGISTERED[entry.name] = (entry, factory)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:  # they ship with edgekit: importing registers their entries
        importlib.import_module(module)


def list_models() -> list[ZooEntry]:
    """Every zoo model (built-in variants first, then registered ones)."""
    _load_plugins()
    return [*VARIANTS.values(), *(entry for entry, _ in _REGISTERED.values())]


def get_entry(name: str) -> ZooEntry:
    """The entry for `name` (an optional `zoo:` prefix is accepted) or BadInputError listing known names."""
    name = name.removeprefix("zoo:")
    if name in VARIANTS:
        return VARIANTS[name]
    _load_plugins()
    if name in _REGISTERED:
        return _REGISTERED[name][0]
    known = ", ".join(e.name for e in list_models())
    raise BadInputError(f"unknown zoo model {name!r}", path=f"zoo:{name}", hint=f"known: {known}")


def create(name: str, *, seed: int | None = None) -> torch.nn.Module:
    """Build a zoo model in eval mode with deterministic (seeded) weights."""
    import torch

    entry = get_entry(name)
    if entry.name in _REGISTERED:
        return _REGISTERED[entry.name][1]().eval()
    key = (entry.name, entry.seed if seed is None else seed)
    if key not in _BUILT:  # building + BN calibration takes seconds on 2 cores: once per process
        from edgekit.zoo.models import BUILDERS

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key[1])
            model = BUILDERS[entry.builder](**entry.config)
            _calibrate_batchnorm(model, entry)
        _BUILT[key] = model.eval()
    return copy.deepcopy(_BUILT[key])


_BUILT: dict[tuple[str, int], Any] = {}


def _calibrate_batchnorm(model: torch.nn.Module, entry: ZooEntry) -> None:
    """Set BatchNorm statistics from one seeded random batch, so activations stay O(1) in every layer.

    Freshly initialised BN is the identity; stacked with random convs the outputs would vanish or explode,
    and numeric checks (export tolerance, INT8 SQNR) on such a model would prove nothing.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    model.train()  # one image at the default size: smaller images skew the stats (padding dominates)
    with torch.no_grad():
        model(torch.randn(*entry.inputs[0].concrete_shape()))
    model.eval()


def example_inputs(name: str, *, seed: int = 0) -> dict[str, Any]:
    """Seeded random numpy inputs at the entry's default shapes."""
    from edgekit.onnxio import random_inputs

    return random_inputs(get_entry(name).inputs, seed=seed)


__all__ = ["VARIANTS", "ZooEntry", "create", "example_inputs", "get_entry", "list_models", "register"]
