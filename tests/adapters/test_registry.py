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
from edgekit.adapters.base import Availability, Capabilities, TargetAdapter
from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.targets import TargetProfile, get_profile
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


# --- plan_adapters: the one "which adapters serve this target, and why not" ---------------------------------


def _profile(*adapters: str, name: str = "plantest") -> TargetProfile:
    return TargetProfile(name, "test", "cpu", adapters, ("fp32", "int8"))


class _Unavailable(TargetAdapter):
    name = "offline"

    def capabilities(self, target):
        return Capabilities(("fp32",), True, Availability.no("toolchain offline"), Availability.no("toolchain offline"))

    def compile(self, model, target, options, out_dir):
        raise AssertionError("never compiled")

    def load(self, compiled, *, threads=None):
        raise AssertionError("never loaded")


class _Crashing(_Unavailable):
    name = "crashing"

    def capabilities(self, target):
        raise RuntimeError("probe fell over")


def test_plan_auto_keeps_profile_order_and_says_why_not():
    with registry.registered(_Unavailable, profile=_profile("offline", "not-an-adapter", "onnxruntime", "null")):
        plan = registry.plan_adapters(get_profile("plantest"), "auto", "fp32")
    assert [c.name for c in plan] == ["offline", "not-an-adapter", "onnxruntime"]  # null is explicit-only
    assert [c.usable for c in plan] == [False, False, True]
    assert plan[0].reason == "toolchain offline" and isinstance(plan[0].error, ToolchainMissingError)
    assert "not installed" in plan[1].reason and plan[1].adapter is None and plan[1].error.exit_code == 4
    assert plan[2].reason == "" and plan[2].error is None and "fp32" in plan[2].capabilities.precisions


def test_plan_precision_not_offered_is_unsupported():
    (choice,) = registry.plan_adapters(get_profile("cpu"), "onnxruntime", "bf16")
    assert not choice.usable and "bf16 not offered on cpu" in choice.reason
    assert isinstance(choice.error, UnsupportedError) and choice.error.exit_code == 3
    (any_precision,) = registry.plan_adapters(get_profile("cpu"), "onnxruntime", None)
    assert any_precision.usable


def test_plan_explicit_list_keeps_its_order_and_refuses_strangers():
    cpu = get_profile("cpu")
    assert [c.name for c in registry.plan_adapters(cpu, "openvino, onnxruntime,null")] == [
        "openvino", "onnxruntime", "null"]
    with pytest.raises(BadInputError, match="unknown backend 'tflite'") as err:
        registry.plan_adapters(cpu, "onnxruntime,tflite", option="--backends")
    assert err.value.path == "--backends" and "auto" not in (err.value.hint or "")
    with pytest.raises(BadInputError, match="does not serve target cpu"):
        registry.plan_adapters(cpu, "ascend-atc")
    with pytest.raises(BadInputError, match="no backend given"):
        registry.plan_adapters(cpu, " , ")


def test_plan_never_raises_for_a_crashing_probe():
    with registry.registered(_Crashing, profile=_profile("crashing")):
        (choice,) = registry.plan_adapters(get_profile("plantest"))
        status = registry.describe_target(get_profile("plantest"))["adapters"][0]
    assert not choice.usable and "capabilities check failed: RuntimeError: probe fell over" in choice.reason
    assert status["available"] is False and "probe fell over" in status["reason"]


def test_check_uses_the_first_usable_adapter(tmp_path):
    """Before plan_adapters, `check` took the first registered adapter even when it could not run here."""
    model = tiny_conv_model(tmp_path / "tiny.onnx")
    with registry.registered(_Unavailable, profile=_profile("offline", "onnxruntime")):
        report = edgekit.check(model, "plantest")
    assert report.adapter == "onnxruntime"


# --- registered(): the public way to add an adapter or a profile for a while ---------------------------------


def test_registered_adds_and_then_forgets_adapter_and_profile():
    profile = _profile("offline", name="regtest")
    with registry.registered(_Unavailable, profile=profile):
        assert "offline" in registry.adapter_names() and registry.adapter_origin("offline") == "registered"
        assert isinstance(registry.get_adapter("offline"), _Unavailable)
        assert get_profile("regtest") is profile
    assert "offline" not in registry.adapter_names()
    with pytest.raises(BadInputError, match="unknown target 'regtest'"):
        get_profile("regtest")


def test_registered_under_another_name_and_shadowing_is_undone():
    with registry.registered(_Unavailable, name="onnxruntime"):
        adapter = registry.get_adapter("onnxruntime")
        assert isinstance(adapter, _Unavailable) and adapter.name == "onnxruntime"
    assert type(registry.get_adapter("onnxruntime")).__name__ == "OnnxRuntimeAdapter"
    cpu = get_profile("cpu")
    with registry.registered(profile=_profile("onnxruntime", name="cpu")):
        assert get_profile("cpu").description == "test"
    assert get_profile("cpu") == cpu


def test_registered_refuses_what_is_not_an_adapter():
    with pytest.raises(BadInputError, match="not a TargetAdapter subclass"), registry.registered(dict):
        pass
    with pytest.raises(BadInputError, match="needs an adapter class"), registry.registered():
        pass


def test_targets_never_import_the_registry():
    code = ("import sys, edgekit.targets as t; t.all_profiles(); t.get_profile('cpu');"
            "print('edgekit.adapters.registry' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
