"""Helpers for bench/gate/runtime tests: a tiny ONNX model, bundles, and a fake clock + runner.

The fake runner advances a fake clock by a programmed duration per call, so timing logic (warm-up,
rounds, stability) is tested exactly, without sleeps and without depending on machine noise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.adapters.base import Runner
from edgekit.specs import TensorSpec


def tiny_model(path: Path, *, dynamic_batch: bool = True, features: int = 16, outputs: int = 8) -> Path:
    """x[batch,16] @ W -> Relu -> y[batch,8]: runs in microseconds on any backend."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((features, outputs)).astype(np.float32), "W")
    batch: int | str = "batch" if dynamic_batch else 1
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, outputs])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgekit-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def compile_bundle(tmp: Path, *, backend: str = "onnxruntime", target: str = "cpu", name: str = "bundle") -> Path:
    """A real bundle from the compile stage (onnxruntime CPU by default)."""
    from edgekit.stages.compile import compile as compile_model

    tmp.mkdir(parents=True, exist_ok=True)
    model = tiny_model(tmp / f"{name}.onnx")
    return Path(compile_model(model, output=tmp / name, target=target, backend=backend).bundle.path)


def edit_manifest(bundle: Path, **info: Any) -> Path:
    """Update keys of a bundle manifest's `info` (the manifest itself is not in the sha256 list)."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    for key, value in info.items():
        if value is None:
            data["info"].pop(key, None)
        else:
            data["info"][key] = value
    path.write_text(json.dumps(data, indent=2))
    return bundle


class FakeClock:
    """A monotonic nanosecond clock that only moves when the fake runner runs."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += round(ms * 1e6)


class FakeRunner(Runner):
    """Each run advances the clock by the next duration (ms) from `durations` (cycled)."""

    def __init__(self, clock: FakeClock, durations: Iterable[float] | Callable[[int], float],
                 *, input_specs: list[TensorSpec] | None = None, provenance: str = "measured"):
        super().__init__(input_specs or [TensorSpec("x", ("batch", 16))], ["y"])
        self.clock = clock
        self.calls = 0
        self.seen_inputs: list[int] = []
        self.shapes: list[tuple[int, ...]] = []
        self.provenance = provenance  # type: ignore[assignment]
        self._next: Callable[[int], float]
        if callable(durations):
            self._next = durations
        else:
            it = cycle(list(durations))
            self._next = lambda _i: next(it)

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.clock.advance_ms(self._next(self.calls))
        self.calls += 1
        self.seen_inputs.append(id(inputs))
        self.shapes.append(tuple(next(iter(inputs.values())).shape))
        return {"y": np.zeros((1, 8), np.float32)}


def fake_loader(runner: Runner) -> Callable[..., Runner]:
    def load(_bundle: Path, *, threads: int | None = None) -> Runner:
        return runner

    return load


def bundle_with_reference(tmp_path: Path, budgets: dict, *, reference: bool = True, perturb: float = 0.0) -> Path:
    """A compiled bundle with `budgets`, and (optionally) FP32 reference data on 6 eval samples.

    `perturb` scales the stored FP32 outputs, standing in for a bundle that drifted from its reference.
    """
    from edgekit.artifact import Manifest
    from edgekit.bundle import finalize_manifest
    from edgekit.checks.verify import write_reference
    from edgekit.onnxio import run_reference

    bundle = compile_bundle(tmp_path)
    fp32 = tiny_model(tmp_path / "fp32.onnx", dynamic_batch=True)
    rng = np.random.default_rng(3)
    samples = [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(6)]
    outputs = [{k: v * (1.0 + perturb) for k, v in run_reference(fp32, s).items()} for s in samples]
    manifest = Manifest.read(bundle / "manifest.json")
    manifest.info["budgets"] = budgets
    if reference:
        manifest.info["reference"] = {**write_reference(bundle, samples, outputs, None), "eval": "6 test samples"}
    finalize_manifest(bundle, manifest)
    return bundle
