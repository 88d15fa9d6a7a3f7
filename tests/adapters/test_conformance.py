"""Adapter conformance: every registered adapter (null included) honours the contract.

Parametrized over `registry.adapter_names()`, so an adapter added to the registry (or installed as a
plugin) is tested here without writing a test. Adapters whose toolchain or device is absent are
skipped with the reason they give. Compiles pass `adapter_options={"tune": False}` (a key every
adapter accepts) and a tiny model, so TVM and friends stay cheap.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgekit
from edgekit.adapters import registry
from edgekit.adapters.base import (
    Availability,
    Capabilities,
    CompileOptions,
    Provenance,
    SupportReport,
)
from edgekit.checks.numerics import compare_outputs, tolerance_for
from edgekit.errors import BadInputError
from edgekit.onnxio import random_inputs, run_reference
from edgekit.stages.compile import judge, judged_precision
from edgekit.targets import TargetProfile, all_profiles, get_profile
from tests._adapters_helpers import qdq_model, tiny_conv_model

KNOWN_PRECISIONS = {"fp32", "fp16", "bf16", "int8", "mixed"}
QUICK = {"tune": False}


def _target_for(name: str) -> TargetProfile:
    """The first profile (cpu preferred) this adapter serves; null serves every target."""
    if name == "null":
        return get_profile("cpu")
    profiles = sorted(all_profiles().values(), key=lambda p: (p.name != "cpu", p.name))
    for profile in profiles:
        if name in profile.adapters:
            return profile
    pytest.skip(f"no target profile names adapter {name}")


def _usable(name: str) -> tuple[object, TargetProfile]:
    target = _target_for(name)
    avail = registry.adapter_availability(name, target)
    if not avail.available:
        pytest.skip(f"{name} unavailable for {target.name}: {avail.reason}")
    return registry.get_adapter(name), target


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_conv_model(tmp_path_factory.mktemp("conf") / "tiny.onnx")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """name -> compiled bundle path, built once per adapter for the tests below."""
    return {}


def _int8_kwargs(adapter, model, tmp):
    """int8 input the adapter expects: the float model + calibration (native int8) or a QDQ model."""
    if adapter.native_int8:
        return model, {"calib": "synthetic"}
    return qdq_model(model, tmp / "tiny.qdq.onnx"), {}


def _bundle(name, model, bundles, tmp_path_factory):
    """Compile once per adapter, in fp32 when offered, else its first float precision, else int8."""
    if name not in bundles:
        adapter, target = _usable(name)
        out = tmp_path_factory.mktemp(f"bundle-{name}") / "b"
        offered = adapter.capabilities(target).precisions
        precision = next((p for p in ("fp32", "fp16", "bf16") if p in offered), "int8")
        source, extra = (model, {}) if precision != "int8" else _int8_kwargs(adapter, model, out.parent)
        bundles[name] = edgekit.compile(source, output=out, target=target.name, backend=name, precision=precision,
                                        adapter_options=QUICK, **extra).bundle.path
    return bundles[name]


ADAPTERS = registry.adapter_names()


@pytest.mark.parametrize("name", ADAPTERS)
def test_capabilities_shape(name):
    adapter = registry.get_adapter(name)
    assert adapter.name == name
    caps = adapter.capabilities(_target_for(name))
    assert isinstance(caps, Capabilities)
    assert caps.precisions and set(caps.precisions) <= KNOWN_PRECISIONS
    assert isinstance(caps.toolchain, Availability) and isinstance(caps.device, Availability)
    for part in (caps.toolchain, caps.device):
        assert part.available or part.reason, "an unavailable part must say why"
    assert isinstance(caps.run_provenance, Provenance)


@pytest.mark.parametrize("name", ADAPTERS)
def test_check_gives_a_verdict_per_node(name, model):
    adapter, target = _usable(name)
    report = adapter.check(model, target)
    assert isinstance(report, SupportReport)
    assert {v.node for v in report.verdicts} >= {"conv", "relu", "gap", "flatten", "fc"}
    assert report.ok


@pytest.mark.parametrize("name", ADAPTERS)
def test_compile_load_run_agrees_with_reference(name, model, bundles, tmp_path_factory):
    path = _bundle(name, model, bundles, tmp_path_factory)
    manifest = edgekit.Artifact.open(path).manifest
    info = manifest.info
    assert info["adapter"] == name and info["verification"]["passed"]
    assert info["source_model"] == "source.onnx" and "source.onnx" in manifest.files
    assert info["run_provenance"] in {p.value for p in Provenance}
    assert set(manifest.files) == {p.relative_to(path).as_posix() for p in path.rglob("*")
                                   if p.is_file() and p.name != "manifest.json"}
    runner = edgekit.load(path)
    feeds = random_inputs(runner.input_specs, seed=11)
    got = runner.run(feeds)
    ref = run_reference(model, feeds)
    assert set(got) >= set(ref)
    rule = judged_precision(info["precision"], info)
    comparison = compare_outputs(ref, got, **dict(zip(("atol", "rtol"), tolerance_for(rule), strict=True)))
    passed, why = judge(comparison, rule)
    assert passed, why
    runner.close()


@pytest.mark.parametrize("name", ADAPTERS)
def test_runner_refuses_wrong_inputs(name, model, bundles, tmp_path_factory):
    runner = edgekit.load(_bundle(name, model, bundles, tmp_path_factory))
    with pytest.raises(BadInputError, match="shape"):
        runner.run({"input": np.zeros((1, 3, 9, 9), np.float32)})
    with pytest.raises(BadInputError, match="missing"):
        runner.run({})


@pytest.mark.parametrize("name", ADAPTERS)
def test_tampered_or_truncated_bundle_is_refused(name, model, bundles, tmp_path_factory):
    import shutil

    path = _bundle(name, model, bundles, tmp_path_factory)
    copy = tmp_path_factory.mktemp(f"tamper-{name}") / "b"
    shutil.copytree(path, copy)
    victim = max((p for p in copy.rglob("*") if p.is_file() and p.name != "manifest.json"),
                 key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match="sha256"):
        edgekit.load(copy)
    victim.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(BadInputError, match="tampered or truncated"):
        edgekit.load(copy)
    victim.unlink()
    with pytest.raises(BadInputError, match="missing"):
        edgekit.load(copy)


@pytest.mark.parametrize("name", ADAPTERS)
def test_unknown_adapter_option_is_refused(name, model, tmp_path):
    adapter, target = _usable(name)
    with pytest.raises(BadInputError, match="definitely_not_an_option"):
        adapter.compile(model, target, CompileOptions(adapter_options={"definitely_not_an_option": 1}), tmp_path)


@pytest.mark.parametrize("name", ADAPTERS)
def test_int8_qdq_model(name, model, tmp_path):
    adapter, target = _usable(name)
    if "int8" not in adapter.capabilities(target).precisions:
        pytest.skip(f"{name} offers no int8 on {target.name}")
    source, extra = _int8_kwargs(adapter, model, tmp_path)
    result = edgekit.compile(source, output=tmp_path / "b", target=target.name, backend=name, precision="int8",
                             adapter_options=QUICK, **extra)
    assert result.verification["passed"]
    assert result.bundle.manifest.info["precision"] == "int8"
    assert result.bundle.manifest.info["precision_used"]
