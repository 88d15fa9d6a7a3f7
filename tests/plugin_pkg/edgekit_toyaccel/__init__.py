"""A toy accelerator: "compiles" by saving the model with every Relu turned into Clip(0, +inf).

It uses only edgekit's public adapter contract, the way a vendor's plugin would. Its device is
emulated on the host, so its runs are labelled `emulated`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.adapters.base import (
    Availability,
    Capabilities,
    CompiledModel,
    CompileOptions,
    Provenance,
    Runner,
    TargetAdapter,
    check_adapter_options,
)


class ToyRunner(Runner):
    provenance = Provenance.EMULATED

    def __init__(self, model: Path, input_specs: list, output_names: list[str]) -> None:
        import onnxruntime as ort

        super().__init__(input_specs, output_names)
        self._session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session.run(self.output_names, dict(inputs)), strict=True))


class ToyAccelAdapter(TargetAdapter):
    name = "toyaccel"
    description = "Toy accelerator (third-party plugin test fixture)"

    @classmethod
    def profiles(cls) -> list[dict[str, Any]]:
        return [{"name": "toyaccel", "description": "Toy accelerator (plugin)", "kind": "npu",
                 "adapters": ["toyaccel"], "precisions": ["fp32"]}]

    def capabilities(self, target: Any) -> Capabilities:
        return Capabilities(("fp32",), False, Availability.yes("toyaccel 0.1 (pure Python)"),
                            Availability.yes("emulated on the host"), Provenance.EMULATED)

    def compile(self, model: Path, target: Any, options: CompileOptions, out_dir: Path) -> CompiledModel:
        import onnx

        check_adapter_options(self.name, options.adapter_options, {})
        proto = onnx.load(str(model))
        for node in proto.graph.node:
            if node.op_type == "Relu":
                node.op_type = "Clip"  # Clip with no bounds = identity; min 0 via a constant input
                zero = node.name + "_zero"
                proto.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((), np.float32), zero))
                node.input.append(zero)
        onnx.save(proto, str(Path(out_dir) / "toy.onnx"))
        return CompiledModel(Path(out_dir), self.name, target.name, options.precision, ["toy.onnx"],
                             {"precision_used": "fp32", "toy_rewrites": "Relu->Clip"})

    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        return ToyRunner(compiled.path / "toy.onnx", compiled.input_specs(), compiled.output_names())
