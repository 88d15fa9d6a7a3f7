"""Registry: built-ins by name, plugins from the `edgekit.targets` entry-point group, clear unknowns."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import edgekit
from edgekit.adapters import registry
from edgekit.adapters.base import TargetAdapter
from edgekit.errors import BadInputError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.targets import get_profile
from tests._adapters_helpers import install_toy_plugin, tiny_conv_model


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    return install_toy_plugin(tmp_path_factory.mktemp("site") / "site")


@pytest.fixture
def plugin_on_path(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry.refresh()
    yield plugin_dir
    monkeypatch.undo()
    registry.refresh()


def test_builtins_listed_and_importable():
    names = registry.adapter_names()
    assert names[:2] == ["null", "onnxruntime"]
    for name in names:
        if registry.adapter_origin(name) == "built-in":
            assert isinstance(registry.get_adapter(name), TargetAdapter)


def test_unknown_adapter_lists_known_ones():
    with pytest.raises(BadInputError) as info:
        registry.get_adapter("tensorflowlite")
    assert "unknown backend 'tensorflowlite'" in str(info.value)
    assert "onnxruntime" in str(info.value)


def test_availability_never_raises_and_gives_a_reason():
    cuda = get_profile("cuda")
    for name in [*cuda.adapters, "no-such-adapter"]:
        avail = registry.adapter_availability(name, cuda)
        assert avail.available or avail.reason


def test_importing_edgekit_stays_light():
    code = ("import sys, edgekit, edgekit.adapters.registry as r; r.adapter_names();"
            "heavy = [m for m in ('torch', 'tvm', 'openvino', 'onnxsim') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plugin_is_listed_with_its_profile(plugin_on_path):
    assert "toyaccel" in registry.adapter_names()
    assert registry.adapter_origin("toyaccel").startswith("plugin")
    profile = get_profile("toyaccel")
    assert profile.adapters == ("toyaccel",) and profile.source_file == "plugin toyaccel"


def test_plugin_cannot_shadow_a_builtin(plugin_on_path):
    assert registry.adapter_names().count("onnxruntime") == 1
    assert registry.adapter_origin("onnxruntime") == "built-in"


def test_plugin_compiles_and_runs_a_model_unmodified(plugin_on_path, tmp_path):
    model = tiny_conv_model(tmp_path / "tiny.onnx")
    result = edgekit.compile(model, output=tmp_path / "bundle", target="toyaccel", backend="auto")
    assert result.adapter == "toyaccel"
    info = result.bundle.manifest.info
    assert info["run_provenance"] == "emulated" and info["toy_rewrites"] == "Relu->Clip"
    runner = edgekit.load(tmp_path / "bundle")
    feeds = random_inputs(runner.input_specs, seed=5)
    np.testing.assert_allclose(runner.run(feeds)["logits"], run_reference(model, feeds)["logits"], rtol=1e-4,
                               atol=1e-5)


def test_plugin_appears_in_the_cli(plugin_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "edgekit"]
    listing = subprocess.run([*cli, "targets", "--json"], capture_output=True, text=True, env=env, check=True)
    data = json.loads(listing.stdout)
    toy = next(t for t in data["targets"] if t["name"] == "toyaccel")
    assert toy["adapters"][0]["available"] and toy["adapters"][0]["origin"].startswith("plugin")
    model = tiny_conv_model(tmp_path / "tiny.onnx")
    done = subprocess.run([*cli, "compile", str(model), "--target", "toyaccel", "-o", str(tmp_path / "b"), "--json"],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["adapter"] == "toyaccel"
