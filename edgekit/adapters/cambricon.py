"""Cambricon MLU (220, 270) through MagicMind: build config + script, emulation, estimate.

`compile` writes plan/builder_config.json (archs, precision_config with the quantization scheme,
graph_shape_mutable, insert_bn_before_firstnode with mean and var = std², as MagicMind expects) and
plan/magicmind_build.py (ONNX parser -> input dims -> calibration for INT8 -> build -> model.mm). When
`magicmind.python.runtime` is importable it runs the script and packs model.mm; otherwise the bundle
says why and how to run it later. Without the device the runner is an onnxruntime emulator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgekit.adapters.base import Availability, CompiledModel, CompileOptions, Provenance, Runner
from edgekit.adapters.npu.adapter_base import PLAN_DIR, NpuAdapter, VendorStep, module_available
from edgekit.adapters.npu.plan_common import per_channel, save_calibration
from edgekit.errors import BadInputError

if TYPE_CHECKING:
    import numpy as np

    from edgekit.adapters.npu.profile import NpuProfile
    from edgekit.specs import TensorSpec

PRECISION_MODES = {"fp32": "force_float32", "fp16": "force_float16", "int8": "qint8_mixed_float16",
                   "mixed": "qint8_mixed_float16"}
MM_MODULE = "magicmind.python.runtime"

BUILD_SCRIPT = '''"""MagicMind build for this bundle, written by edgekit. Run in the bundle directory:
    python3 plan/magicmind_build.py
Reads plan/builder_config.json, parses source.onnx, sets the input dims, calibrates (INT8) on
plan/calib/*.npy and serializes model.mm.
"""
import glob
import json
import os

import numpy as np
import magicmind.python.runtime as mm
from magicmind.python.runtime.parser import Parser

PLAN = json.load(open("plan/builder_config.json"))
INPUT_DIMS = {dims!r}

network = mm.Network()
parser = Parser(mm.ModelKind.kOnnx)
assert parser.parse(network, "source.onnx").ok(), "MagicMind ONNX parser failed"
for i, dims in enumerate(INPUT_DIMS.values()):
    assert network.get_input(i).set_dimension(mm.Dims(tuple(dims))).ok()

config = mm.BuilderConfig()
assert config.parse_from_string(json.dumps(PLAN)).ok(), "builder config rejected"

if PLAN["precision_config"]["precision_mode"].startswith("qint"):
    class CalibData(mm.CalibDataInterface):
        def __init__(self, name, dims):
            super().__init__()
            self.files = sorted(glob.glob(f"plan/calib/*_{{name}}.npy"))
            self.shape = mm.Dims(tuple(dims))
            self.index, self.sample = 0, None

        def get_shape(self):
            return self.shape

        def get_data_type(self):
            return mm.DataType.FLOAT32

        def get_sample(self):
            return self.sample

        def next(self):
            if self.index >= len(self.files):
                return mm.Status(mm.Code.OUT_OF_RANGE, "Data end reached")
            self.sample = np.load(self.files[self.index], allow_pickle=False).astype(np.float32)
            self.index += 1
            return mm.Status.OK()

        def reset(self):
            self.index, self.sample = 0, None
            return mm.Status.OK()

    calibrator = mm.Calibrator([CalibData(n, d) for n, d in INPUT_DIMS.items()])
    assert calibrator.set_quantization_algorithm(mm.QuantizationAlgorithm.LINEAR_ALGORITHM).ok()
    assert calibrator.calibrate(network, config).ok(), "calibration failed"

model = mm.Builder().build_model("edgekit", network, config)
assert model is not None, "build failed"
assert model.serialize_to_file("model.mm").ok()
'''


def builder_config(profile: NpuProfile, options: CompileOptions, specs: list[TensorSpec]) -> dict[str, Any]:
    """MagicMind BuilderConfig JSON: archs, precision_config, shapes, fused mean/var (var = std²)."""
    opts = options.adapter_options
    granularity = str(opts.get("weight_quant_granularity", "per_axis"))
    if granularity not in ("per_tensor", "per_axis"):
        raise BadInputError(f"weight_quant_granularity {granularity!r}", path="adapter_options",
                            hint="per_tensor or per_axis")
    algo = str(opts.get("activation_quant_algo", "symmetric"))
    if algo not in ("symmetric", "asymmetric"):
        raise BadInputError(f"activation_quant_algo {algo!r}", path="adapter_options", hint="symmetric or asymmetric")
    precision: dict[str, Any] = {"precision_mode": PRECISION_MODES.get(options.precision, "force_float16")}
    if options.precision == "int8":
        precision.update({"activation_quant_algo": algo, "weight_quant_granularity": granularity})
    config: dict[str, Any] = {
        "archs": [profile.soc_version],
        "precision_config": precision,
        "graph_shape_mutable": bool(opts.get("graph_shape_mutable", False)),
        "opt_config": {"type64to32_conversion": True, "conv_scale_fold": True},
    }
    if options.mean is not None or options.std is not None:
        image = specs[0]
        if len(image.shape) != 4:
            raise BadInputError(f"mean/std need a 4-D NCHW image input, {image.name} is {image.shape}",
                                path="--mean/--std")
        channels = int(image.shape[1])
        mean = per_channel(options.mean, channels, "mean") or [0.0] * channels
        std = per_channel(options.std, channels, "std") or [1.0] * channels
        config["insert_bn_before_firstnode"] = {"0": {"mean": mean, "var": [round(s * s, 10) for s in std]}}
    return config


class MagicMindAdapter(NpuAdapter):
    name = "magicmind"
    description = "Cambricon MLUs via MagicMind: build config + script, emulation, roofline"
    compiler = "magicmind"
    accepts_qdq = True  # no MagicMind statement either way: the plan is written, QDQ verdicts stay `unknown`
    runtime_modules: ClassVar[tuple[str, ...]] = (MM_MODULE,)
    option_types: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "weight_quant_granularity": str, "activation_quant_algo": str, "graph_shape_mutable": bool, "timeout_s": int,
    }

    def tool_available(self) -> Availability:
        if module_available(MM_MODULE):
            return Availability.yes(f"{MM_MODULE} importable")
        return Availability.no(f"MagicMind Python module {MM_MODULE} not importable (install Cambricon MagicMind)")

    def vendor_model_file(self) -> str:
        return "model.mm"

    def precision_used(self, profile: NpuProfile, precision: str) -> str:
        return {"int8": "int8", "fp32": "fp32"}.get(precision, "fp16")

    def write_plan(self, profile: NpuProfile, options: CompileOptions, specs: list[TensorSpec], out_dir: Path,
                   info: dict[str, Any]) -> list[VendorStep]:
        plan = out_dir / PLAN_DIR
        config = builder_config(profile, options, specs)
        (plan / "builder_config.json").write_text(json.dumps(config, indent=2) + "\n")
        dims = {s.name: [int(d) for d in s.shape] for s in specs}
        (plan / "magicmind_build.py").write_text(BUILD_SCRIPT.format(dims=dims))
        if options.precision == "int8":
            info["calibration_plan"] = save_calibration(options.calibration, out_dir)
        info["magicmind"] = {"builder_config": config, "input_dims": dims,
                             "config_file": f"{PLAN_DIR}/builder_config.json",
                             "script": f"{PLAN_DIR}/magicmind_build.py"}
        return [VendorStep("magicmind", [sys.executable, f"{PLAN_DIR}/magicmind_build.py"], produces=["model.mm"])]

    def device_runner(self, compiled: CompiledModel, threads: int | None) -> Runner | None:
        model = compiled.path / "model.mm"
        if not model.is_file() or not module_available(MM_MODULE):
            return None
        return MagicMindRunner(model, compiled.input_specs(), compiled.output_names())

    def vendor_benchmark(self, compiled: CompiledModel, *, iterations: int = 1000,
                         timeout_s: int = 600) -> dict[str, Any]:
        """Run `mm_run --magicmind_model model.mm` and parse its Performance Summary (measured)."""
        import subprocess

        from edgekit.adapters.npu.vendor_output import parse_mm_run

        argv = ["mm_run", "--magicmind_model", "model.mm", "--iterations", str(iterations), "--devices", "0"]
        proc = subprocess.run(argv, cwd=compiled.path, capture_output=True, text=True, timeout=timeout_s, check=False)
        result = parse_mm_run(proc.stdout + proc.stderr)
        return {"provenance": Provenance.MEASURED.value, "tool": "mm_run", "command": " ".join(argv),
                "compute_ms": result.compute.to_json(), "throughput_qps": result.throughput_qps}


class MagicMindRunner(Runner):
    """model.mm on the MLU through the MagicMind runtime (measured). Untested here: no device."""

    provenance = Provenance.MEASURED

    def __init__(self, model: Path, input_specs: list[TensorSpec], output_names: list[str], device_id: int = 0):
        super().__init__(input_specs, output_names)
        import magicmind.python.runtime as mm

        self._mm = mm
        self._device = mm.Device()
        self._device.id = device_id
        if not self._device.active().ok():
            from edgekit.errors import ToolchainMissingError

            raise ToolchainMissingError(f"MLU device {device_id} could not be activated", path=str(model))
        self._model = mm.Model()
        self._model.deserialize_from_file(str(model))
        self._engine = self._model.create_i_engine()
        self._context = self._engine.create_i_context()
        self._queue = self._device.create_queue()

    def _run_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = self._context.create_inputs()
        for tensor, spec in zip(tensors, self.input_specs, strict=True):
            tensor.from_numpy(inputs[spec.name])
        outputs: list[Any] = []
        self._context.enqueue(tensors, outputs, self._queue)
        self._queue.sync()
        return {name: out.asnumpy() for name, out in zip(self.output_names, outputs, strict=True)}
