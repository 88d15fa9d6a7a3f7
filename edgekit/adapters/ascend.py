"""Huawei Ascend (310, 310P) through ATC: plan, AIPP, AMCT INT8 plan, emulation, estimate.

`compile` always writes the exact ATC invocation (plan/atc_command.sh), an AIPP config when mean/std
are given (var_reci_chn_i = 1/std, as AIPP multiplies), and for INT8 an AMCT calibration plan. When
`atc` is on PATH it runs it in the bundle and packs model.om; otherwise the bundle says why not and the
command to run later. Without the device the runner is an onnxruntime emulator (provenance emulated).
"""

from __future__ import annotations

import shutil
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

PRECISION_MODES = {"fp16": "force_fp16", "fp32": "allow_fp32_to_fp16", "int8": "force_fp16",
                   "mixed": "allow_mix_precision"}
AMCT_DEPLOY = "amct/model_deploy_model.onnx"  # amct_onnx.save_model(..., save_path="amct/model") writes this


def aipp_config(spec: TensorSpec, mean: list[float] | None, std: list[float] | None) -> str:
    """AIPP static config: out = (pixel - mean_chn_i - min_chn_i) * var_reci_chn_i, var_reci = 1/std."""
    channels, height, width = (int(spec.shape[1]), int(spec.shape[2]), int(spec.shape[3]))
    lines = ["aipp_op {", "    aipp_mode : static",
             f"    input_format : {'YUV400_U8' if channels == 1 else 'RGB888_U8'}",
             f"    src_image_size_w : {width}", f"    src_image_size_h : {height}",
             "    csc_switch : false", "    rbuv_swap_switch : false"]
    for c in range(channels):
        m = (mean or [0.0] * channels)[c]
        whole = int(m) if 0 <= m <= 255 else 0  # mean_chn_i is an integer pixel offset
        lines.append(f"    mean_chn_{c} : {whole}")
        lines.append(f"    min_chn_{c} : {round(m - whole, 6):g}")
    for c in range(channels):
        s = (std or [1.0] * channels)[c]
        lines.append(f"    var_reci_chn_{c} : {1.0 / s:.10g}")
    lines.append("}")
    return "\n".join(lines) + "\n"


AMCT_SCRIPT = '''"""AMCT (Ascend Model Compression Toolkit) INT8 calibration for this bundle, written by edgekit.

Scheme: AMCT default (activation_offset=True: asymmetric activations; per-channel weights).
Run in the bundle directory on a host with CANN AMCT (amct_onnx) installed:  python3 plan/amct_calibrate.py
Then run plan/atc_command.sh, which compiles the deployable model this writes ({deploy}).
"""
import glob
import os

import numpy as np
import onnxruntime as ort
import amct_onnx as amct

SOURCE = "source.onnx"
os.makedirs("amct", exist_ok=True)
amct.create_quant_config(config_file="amct/config.json", model_file=SOURCE, skip_layers=None,
                         batch_num={batches}, activation_offset=True)
amct.quantize_model(config_file="amct/config.json", model_file=SOURCE,
                    modified_onnx_file="amct/modified.onnx", record_file="amct/record.txt")
session = ort.InferenceSession("amct/modified.onnx", amct.AMCT_SO, providers=["CPUExecutionProvider"])
names = {names!r}
files = sorted(glob.glob("plan/calib/*.npy"))
for index in sorted({{os.path.basename(f).split("_", 1)[0] for f in files}}):
    feeds = {{n: np.load(f"plan/calib/{{index}}_{{n}}.npy", allow_pickle=False) for n in names}}
    session.run(None, feeds)
amct.save_model(modified_onnx_file="amct/modified.onnx", record_file="amct/record.txt", save_path="amct/model")
'''


class AscendAdapter(NpuAdapter):
    name = "ascend-atc"
    description = "Huawei Ascend NPUs via ATC (CANN): exact plan, AIPP, AMCT INT8 plan, emulation, roofline"
    compiler = "atc"
    qdq_refusal = ("not planned: ATC cannot parse ONNX QuantizeLinear/DequantizeLinear (not in the CANN ONNX "
                   "operator list); compile the float model with --precision int8 --calib DATA for the AMCT plan")
    runtime_modules: ClassVar[tuple[str, ...]] = ("acl", "aclruntime")
    option_types: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "precision_mode": str, "timeout_s": int, "dynamic_batch_size": (str, int), "input_format": str,
    }

    def tool_available(self) -> Availability:
        found = shutil.which("atc")
        if found:
            return Availability.yes(f"atc at {found}")
        return Availability.no("`atc` not on PATH (install the CANN toolkit and source its set_env.sh)")

    def vendor_model_file(self) -> str:
        return "model.om"

    def precision_used(self, profile: NpuProfile, precision: str) -> str:
        return "int8" if precision == "int8" else "fp16"  # the AI Core cube computes fp16 (or int8)

    def dynamic_batch_gear(self, options: CompileOptions) -> int | None:
        text = options.adapter_options.get("dynamic_batch_size")
        if text is None:
            return None
        try:
            gears = [int(g) for g in str(text).split(",")]
        except ValueError:
            gears = []
        if not gears or any(g < 1 for g in gears):
            raise BadInputError(f"dynamic_batch_size {text!r}", path="adapter_options",
                                hint="comma-separated batch gears, e.g. 1,2,4,8 (ATC --dynamic_batch_size)")
        return gears[0]

    def atc_argv(self, profile: NpuProfile, options: CompileOptions, specs: list[TensorSpec], *,
                 model: str = "source.onnx", aipp: str | None = None) -> list[str]:
        """The exact ATC command line (relative to the bundle directory)."""
        mode = str(options.adapter_options.get("precision_mode", PRECISION_MODES.get(options.precision,
                                                                                       "force_fp16")))
        dynamic_batch = "dynamic_batch_size" in options.adapter_options

        def dims(spec: TensorSpec) -> str:
            values = [str(d) for d in spec.shape]
            if dynamic_batch and values:
                values[0] = "-1"  # ATC: the batch dim is -1 and the gears come from --dynamic_batch_size
            return ",".join(values)

        shape = ";".join(f"{s.name}:{dims(s)}" for s in specs)
        argv = ["atc", f"--model={model}", "--framework=5", "--output=model", f"--soc_version={profile.soc_version}",
                f"--input_shape={shape}",
                f"--input_format={options.adapter_options.get('input_format', profile.layout)}",
                f"--precision_mode={mode}"]
        if "dynamic_batch_size" in options.adapter_options:
            argv.append(f"--dynamic_batch_size={options.adapter_options['dynamic_batch_size']}")
        if aipp:
            argv.append(f"--insert_op_conf={aipp}")
        return argv

    def write_plan(self, profile: NpuProfile, options: CompileOptions, specs: list[TensorSpec], out_dir: Path,
                   info: dict[str, Any]) -> list[VendorStep]:
        plan = out_dir / PLAN_DIR
        aipp = None
        if options.mean is not None or options.std is not None:
            image = specs[0]
            if len(image.shape) != 4:
                raise BadInputError(f"AIPP needs a 4-D NCHW image input, {image.name} is {image.shape}",
                                    path="--mean/--std")
            channels = int(image.shape[1])
            (plan / "aipp.cfg").write_text(aipp_config(image, per_channel(options.mean, channels, "mean"),
                                                       per_channel(options.std, channels, "std")))
            aipp = f"{PLAN_DIR}/aipp.cfg"
            info["aipp"] = {"config": aipp, "input": image.name,
                            "note": "the .om then takes uint8 images (AIPP normalizes on the device); "
                                    "the emulator takes the normalized float tensor like source.onnx"}
        steps: list[VendorStep] = []
        model = "source.onnx"
        if options.precision == "int8":
            calib = save_calibration(options.calibration, out_dir)
            (plan / "amct_calibrate.py").write_text(AMCT_SCRIPT.format(
                deploy=AMCT_DEPLOY, batches=max(1, calib["samples"]), names=[s.name for s in specs]))
            amct = VendorStep("amct", [sys.executable, f"{PLAN_DIR}/amct_calibrate.py"], produces=[AMCT_DEPLOY])
            if not module_available("amct_onnx"):
                amct.reason = "not run: AMCT (amct_onnx) not importable"
            steps.append(amct)
            info["amct"] = {"scheme": "AMCT default: activation_offset=True (asymmetric activations), "
                                      "per-channel weights", "calibration": calib,
                            "script": f"{PLAN_DIR}/amct_calibrate.py", "deploy_model": AMCT_DEPLOY}
            model = AMCT_DEPLOY
        atc = VendorStep("atc", self.atc_argv(profile, options, specs, model=model, aipp=aipp), produces=["model.om"])
        if steps and steps[0].reason:
            atc.reason = "not run: needs the AMCT deploy model first"
        steps.append(atc)
        (plan / "atc_command.sh").write_text("#!/bin/sh\n# run in the bundle directory\nset -e\n"
                                             + "\n".join(s.portable_command for s in steps) + "\n")
        info["atc"] = {"argv": atc.argv, "command": atc.command, "soc_version": profile.soc_version,
                       "precision_mode": atc.argv[7].split("=", 1)[1]}
        return steps

    def device_runner(self, compiled: CompiledModel, threads: int | None) -> Runner | None:
        """ais_bench's InferSession on model.om (measured). Not testable here: no Ascend device."""
        om = compiled.path / "model.om"
        if not om.is_file() or not module_available("ais_bench"):
            return None
        return AisBenchRunner(om, compiled.input_specs(), compiled.output_names())

    def vendor_benchmark(self, compiled: CompiledModel, *, loops: int = 100, timeout_s: int = 600) -> dict[str, Any]:
        """Run `python3 -m ais_bench --model model.om --loop N` and parse NPU_compute_time (measured)."""
        import subprocess

        from edgekit.adapters.npu.vendor_output import parse_ais_bench

        argv = [sys.executable, "-m", "ais_bench", "--model", "model.om", "--loop", str(loops)]
        proc = subprocess.run(argv, cwd=compiled.path, capture_output=True, text=True, timeout=timeout_s, check=False)
        result = parse_ais_bench(proc.stdout + proc.stderr)[0]
        return {"provenance": Provenance.MEASURED.value, "tool": "ais_bench", "command": " ".join(argv),
                "npu_compute_ms": result.npu_compute.to_json(), "throughput": result.throughput}


class AisBenchRunner(Runner):
    """Runs model.om on the Ascend device through ais_bench (measured). Untested here: no device."""

    provenance = Provenance.MEASURED

    def __init__(self, om: Path, input_specs: list[TensorSpec], output_names: list[str], device_id: int = 0):
        super().__init__(input_specs, output_names)
        from ais_bench.infer.interface import InferSession

        self._session = InferSession(device_id, str(om))

    def _run_impl(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._session.infer([inputs[s.name] for s in self.input_specs])
        return dict(zip(self.output_names, outputs, strict=True))
