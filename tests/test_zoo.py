"""The zoo: every registered model builds, is deterministic, and matches its stored params/MACs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgekit import zoo
from edgekit.errors import BadInputError

torch = pytest.importorskip("torch")

BUILTIN = list(zoo.VARIANTS)
# Small inputs for speed: every zoo net is fully convolutional up to a global pool (or fixed like LeNet).
SMALL = {"lenet5": (1, 1, 32, 32), "resnet18": (1, 3, 64, 64), "mobilenetv2": (1, 3, 64, 64),
         "yolov5n": (1, 3, 128, 128), "unet": (1, 1, 64, 64)}


def test_names_and_entries() -> None:
    names = [e.name for e in zoo.list_models()]
    assert names[:5] == ["lenet5", "resnet18", "mobilenetv2", "yolov5n", "unet"]
    for entry in zoo.list_models():
        assert entry.inputs and entry.task and entry.description and entry.params > 0 and entry.macs > 0
    assert zoo.get_entry("zoo:yolov5n").inputs[0].shape == (1, 3, 640, 640)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(BadInputError) as info:
        zoo.create("resnet19")
    assert "resnet18" in info.value.one_line() and info.value.exit_code == 2


def test_listing_does_not_import_torch() -> None:
    code = "import sys, edgekit.zoo as z; z.list_models(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


@pytest.mark.parametrize("name", BUILTIN)
def test_params_match_and_forward_shapes(name: str) -> None:
    model = zoo.create(name)
    assert not model.training
    assert sum(p.numel() for p in model.parameters()) == zoo.get_entry(name).params
    with torch.no_grad():
        out = model(torch.randn(*SMALL[name]))
    assert torch.isfinite(out).all()
    expected = {"lenet5": (1, 10), "resnet18": (1, 1000), "mobilenetv2": (1, 1000), "unet": (1, 1, 64, 64),
                "yolov5n": (1, 3 * (16 * 16 + 8 * 8 + 4 * 4), 85)}[name]
    assert tuple(out.shape) == expected


def test_create_is_deterministic_and_seedable() -> None:
    a, b = zoo.create("lenet5"), zoo.create("lenet5")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c = zoo.create("lenet5", seed=1)
    assert not torch.equal(a.state_dict()["features.0.weight"], c.state_dict()["features.0.weight"])


def test_yolov5n_is_yolov5n_sized() -> None:
    assert 1.7e6 < zoo.get_entry("yolov5n").params < 2.0e6  # real YOLOv5n: 1.87 M
    assert zoo.get_entry("resnet18").params == 11_689_512  # torchvision resnet18


@pytest.mark.parametrize(("name", "shape", "scale"), [
    ("lenet5", None, 1), ("mobilenetv2", None, 1), ("resnet18", None, 1),
    ("yolov5n", "images:1,3,320,320", 4), ("unet", "image:1,1,128,128", 4),
])
def test_stored_macs_match_the_exported_graph(zoo_onnx, name: str, shape: str | None, scale: int) -> None:
    """Stored MACs = node_costs on the export (fully conv nets counted at half size: MACs scale with H*W)."""
    import onnx

    from edgekit.stages.inspect import node_costs

    macs = sum(c.macs for c in node_costs(onnx.load(str(zoo_onnx(name, shape)))))
    assert macs * scale == zoo.get_entry(name).macs
    if name == "resnet18":
        assert abs(macs - 1.81e9) / 1.81e9 < 0.03
