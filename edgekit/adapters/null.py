"""The null adapter: runs the ONNX reference (onnxruntime CPU, every graph optimization off).

Like tinygrad's `ops_null`, it lets the whole pipeline, `edgekit load` and the adapter
conformance suite run on any host without an optional backend. It serves every target, but is
never picked by `--backend auto`: ask for it with `--backend null`. On a non-CPU target its numbers
describe the host reference, so they are labelled `emulated`, not measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from edgekit.targets import TargetProfile


class NullRunner(Runner):
    def __init__(self, model: Path, input_specs: list, output_names: list[str], *, threads: int | None,
                 provenance: Provenance):
        super().__init__(input_specs, output_names)
        from edgekit.onnxio import ort_session

        self.provenance = provenance
        self._session = ort_session(model, threads=threads, optimization="disable")

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._session.run(self.output_names, dict(inputs))
        return dict(zip(self.output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


class NullAdapter(TargetAdapter):
    name = "null"
    description = "ONNX reference on onnxruntime CPU, optimizations off (testing; never picked by auto)"

    def capabilities(self, target: TargetProfile) -> Capabilities:
        return Capabilities(
            precisions=("fp32", "int8"),  # int8 = a QDQ model run by the reference
            dynamic_shapes=True,
            toolchain=Availability.yes("onnxruntime (core dependency)"),
            device=Availability.yes("host CPU"),
            run_provenance=Provenance.MEASURED if target.kind == "cpu" else Provenance.EMULATED,
            notes=("reference only: explicit --backend null, never chosen by auto",),
        )

    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        """Nothing to build: the bundle's source.onnx is the executable model."""
        check_adapter_options(self.name, options.adapter_options, {})
        info: dict[str, Any] = {"precision_used": options.precision, "executes": "source.onnx"}
        return CompiledModel(Path(out_dir), self.name, target.name, options.precision, files=[], info=info)

    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        provenance = Provenance(compiled.info.get("run_provenance", Provenance.MEASURED.value))
        return NullRunner(compiled.source_path, compiled.input_specs(), compiled.output_names(),
                          threads=threads, provenance=provenance)
