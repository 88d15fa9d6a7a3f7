"""What the Ascend and Cambricon adapters share: check, plan + vendor run, emulation, estimate.

Each vendor adapter (ascend.py, cambricon.py) fills in the plan it writes and the tool it runs; this
base does the rest the same way for both. Without the vendor tool the bundle holds source.onnx, the
plan files and the emulated model, and `info["vendor_build"]` says why the build was not run and the
exact command to run later. Nothing here fakes a vendor artifact.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgekit.adapters.base import (
    Availability,
    Capabilities,
    CompiledModel,
    CompileOptions,
    LatencyEstimate,
    Provenance,
    Runner,
    SupportReport,
    TargetAdapter,
    check_adapter_options,
)
from edgekit.adapters.npu.profile import NpuProfile, npu_profile
from edgekit.errors import BadInputError, CheckFailedError, ToolchainMissingError, UnsupportedError

if TYPE_CHECKING:
    from edgekit.specs import TensorSpec
    from edgekit.targets import TargetProfile

PLAN_DIR = "plan"
PLAN_FILE = "plan/plan.json"
EMULATED_DIR = "emulated"
EMULATION_NOTE = "host emulation with onnxruntime: numerics of the vendor scheme, not NPU timing"


@dataclass
class VendorStep:
    """One vendor command in the plan, and whether/how it ran here."""

    tool: str
    argv: list[str]
    cwd: str = "."
    produces: list[str] = field(default_factory=list)
    ran: bool = False
    reason: str = ""
    returncode: int | None = None
    stdout_tail: str = ""

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def portable_command(self) -> str:
        """The command for the plan files: the vendor host has its own Python, not this machine's venv."""
        argv = ["python3", *self.argv[1:]] if self.argv and self.argv[0] == sys.executable else self.argv
        return shlex.join(argv)

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "argv": self.argv, "command": self.command, "cwd": self.cwd,
                "produces": self.produces, "ran": self.ran, "reason": self.reason, "returncode": self.returncode,
                "stdout_tail": self.stdout_tail}


class EmulatorRunner(Runner):
    """onnxruntime on the emulated model: the vendor's numerics on the host, never NPU timing."""

    provenance = Provenance.EMULATED

    def __init__(self, model: Path, input_specs: list[TensorSpec], output_names: list[str], threads: int | None):
        super().__init__(input_specs, output_names)
        from edgekit.onnxio import ort_session

        self._session = ort_session(model, threads=threads)

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._session.run(self.output_names, dict(inputs))
        return dict(zip(self.output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing raises for dotted names
        return False


def run_vendor_step(step: VendorStep, out_dir: Path, timeout_s: int) -> None:
    """Run a vendor command in the bundle dir; a failure carries the tool's stderr (exit 1 / 4)."""
    try:
        proc = subprocess.run(step.argv, cwd=out_dir / step.cwd, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ToolchainMissingError(f"{step.tool} did not finish within {timeout_s} s", path=step.tool,
                                    hint="raise adapter option timeout_s, or run the plan's command by hand") from None
    except OSError as exc:
        raise ToolchainMissingError(f"{step.tool} could not be started ({exc})", path=step.tool,
                                    hint="check the vendor toolkit installation (set_env.sh)") from None
    step.returncode = proc.returncode
    step.stdout_tail = (proc.stdout or "")[-2000:]
    if proc.returncode != 0:
        err = " ".join((proc.stderr or proc.stdout or "").strip().split())[-600:]
        raise CheckFailedError(f"{step.tool} failed with exit code {proc.returncode}: {err or '(no output)'}",
                               path=step.tool, hint=f"the command was: {step.command}")
    missing = [p for p in step.produces if not (out_dir / p).exists()]
    if missing:
        raise CheckFailedError(f"{step.tool} exited 0 but did not write {', '.join(missing)}", path=step.tool,
                               hint=f"the command was: {step.command}")
    step.ran = True


class NpuAdapter(TargetAdapter):
    """Base for vendor NPU adapters we can plan, emulate and estimate for, and run when the tool is here."""

    native_int8: ClassVar[bool] = True  # the vendor quantizes the float model itself (AMCT / MagicMind)
    compiler: ClassVar[str] = ""
    runtime_modules: ClassVar[tuple[str, ...]] = ()
    accepts_qdq: ClassVar[bool] = False  # can the vendor compiler take an ONNX QDQ model as input?
    qdq_refusal: ClassVar[str] = ""
    option_types: ClassVar[dict[str, type | tuple[type, ...]]] = {}

    # --- vendor specifics ------------------------------------------------------------------------
    @abstractmethod
    def tool_available(self) -> Availability:
        """Is the vendor compiler usable here (binary on PATH / Python module importable)?"""

    @abstractmethod
    def write_plan(self, profile: NpuProfile, options: CompileOptions, specs: list[TensorSpec], out_dir: Path,
                   info: dict[str, Any]) -> list[VendorStep]:
        """Write the plan files under out_dir/plan and return the vendor steps (in order)."""

    @abstractmethod
    def vendor_model_file(self) -> str:
        """The vendor artifact the steps produce (model.om, model.mm)."""

    def device_runner(self, compiled: CompiledModel, threads: int | None) -> Runner | None:
        """A runner on the real device when its runtime is importable (measured); None otherwise."""
        return None

    def precision_used(self, profile: NpuProfile, precision: str) -> str:
        return precision

    def dynamic_batch_gear(self, options: CompileOptions) -> int | None:
        """First batch gear of a vendor dynamic-batch preset given in adapter_options, else None."""
        return None

    # --- TargetAdapter ---------------------------------------------------------------------------
    def device_available(self) -> Availability:
        found = [m for m in self.runtime_modules if module_available(m)]
        if found:
            return Availability.yes(f"device runtime importable: {', '.join(found)}")
        return Availability.no(f"no device runtime ({' / '.join(self.runtime_modules)} not importable)")

    def capabilities(self, target: TargetProfile) -> Capabilities:
        profile = npu_profile(target)
        tool = self.tool_available()
        device = self.device_available()
        precisions = tuple(dict.fromkeys(("fp32", *(p for p in profile.precisions if p != "mixed"))))
        notes = [f"op rules: {profile.rules}", f"dynamic shapes only via {', '.join(profile.dynamic_shapes)}"]
        if not tool.available:
            notes.append(f"vendor build not run here ({tool.reason}); the bundle holds the plan and emulated models")
        return Capabilities(
            precisions=precisions,
            dynamic_shapes=False,
            toolchain=Availability.yes(f"plan + emulation always; vendor tool: {tool.reason}"),
            device=Availability.yes(device.reason if device.available else
                                    f"{EMULATION_NOTE} ({device.reason})"),
            run_provenance=Provenance.MEASURED if device.available else Provenance.EMULATED,
            notes=tuple(notes),
        )

    def check(self, model: Path, target: TargetProfile) -> SupportReport:
        from edgekit.adapters.npu.support import check_npu

        return check_npu(model, target, adapter=self.name)

    def estimate(self, model: Path, target: TargetProfile) -> LatencyEstimate | None:
        """Roofline estimate; reads precision and shapes from the bundle's plan when `model` is in one."""
        from edgekit.adapters.npu.roofline import estimate_latency
        from edgekit.onnxio import load_onnx

        precision, shapes = "fp16", None
        plan = Path(model).parent / PLAN_FILE
        if plan.is_file():
            data = json.loads(plan.read_text())
            precision = str(data.get("precision", precision))
            shapes = {k: tuple(v) for k, v in data.get("input_shapes", {}).items()}
        estimate, _ = estimate_latency(load_onnx(model), npu_profile(target), precision=precision,
                                       input_shapes=shapes)
        return estimate

    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        from edgekit.adapters.npu.emulate import emulate, scheme_for
        from edgekit.adapters.npu.roofline import estimate_latency, estimate_to_json
        from edgekit.onnxio import QUANT_OPS_QDQ, input_specs, load_onnx, quantization_info

        check_adapter_options(self.name, options.adapter_options, self.option_types)
        profile = npu_profile(target)
        out_dir = Path(out_dir)
        proto = load_onnx(model)
        specs = self._static_specs(input_specs(proto), options, model)
        report = self.check(model, target)
        prequantized = quantization_info(proto).format == "QDQ"
        unsupported = [v for v in report.unsupported if not (prequantized and v.op_type in QUANT_OPS_QDQ)]
        if unsupported:
            ops = sorted({v.op_type for v in unsupported})
            first = unsupported[0]
            raise UnsupportedError(
                f"{len(unsupported)} node(s) unsupported on {target.name}: {', '.join(ops)} "
                f"(e.g. {first.node}: {first.reason})", path=model,
                hint=f"see `edgekit check {model} --target {target.name}`")
        (out_dir / PLAN_DIR).mkdir(parents=True, exist_ok=True)
        (out_dir / EMULATED_DIR).mkdir(parents=True, exist_ok=True)
        precision_used = self.precision_used(profile, options.precision)
        info: dict[str, Any] = {"precision_used": precision_used, "npu": profile.to_json()}
        if prequantized and not self.accepts_qdq:
            steps: list[VendorStep] = []
            info["vendor_build_blocked"] = self.qdq_refusal
        else:
            steps = self.write_plan(profile, options, specs, out_dir, info)

        shapes = {s.name: tuple(int(d) for d in s.shape) for s in specs if s.is_static}
        plan = {"target": target.name, "adapter": self.name, "precision": options.precision,
                "precision_used": precision_used, "input_shapes": shapes,
                "steps": [s.to_json() for s in steps]}
        # emulation: the model the host runner executes
        granularity = str(options.adapter_options.get("weight_quant_granularity", "per_axis"))
        scheme = scheme_for(profile.compiler, "int8" if options.precision == "int8" else precision_used,
                            weight_granularity=granularity)
        if prequantized:
            emulated = out_dir / EMULATED_DIR / "model.int8.onnx"
            emulated.write_bytes(Path(model).read_bytes())
            emulation = {"scheme": {"precision": "int8", "description": "the model's own QDQ quantization "
                                    "(already quantized input), not the vendor's calibration scheme"},
                         "model": emulated.name}
        elif options.precision == "fp32" and precision_used == "fp32":
            emulated = out_dir / EMULATED_DIR / "model.fp32.onnx"
            emulated.write_bytes(Path(model).read_bytes())
            emulation = {"scheme": {"precision": "fp32", "description": "fp32 on the NPU: no rounding emulated"},
                         "model": emulated.name}
        else:
            emulated = out_dir / EMULATED_DIR / f"model.{scheme.precision}.onnx"
            emulation = emulate(Path(model), emulated, scheme, calibration=options.calibration, input_shapes=shapes)
        # how far the emulated model is from the FP32 reference is judged once, by the compile stage's
        # verification of this adapter's runner (which runs the emulated model): provenance `emulated`
        info["emulation"] = {**emulation, "path": f"{EMULATED_DIR}/{emulated.name}", "note": EMULATION_NOTE}

        # vendor build: run when the tool is here, otherwise say why and how
        tool = self.tool_available()
        timeout = int(options.adapter_options.get("timeout_s", 1800))
        for step in steps:
            if not tool.available:
                step.reason = f"not run: {tool.reason}"
                continue
            if step.reason:  # a prerequisite step is missing (e.g. AMCT for int8)
                continue
            run_vendor_step(step, out_dir, timeout)
        built = bool(steps) and all(s.ran for s in steps)
        info["vendor_build"] = {
            "ran": built,
            "reason": "vendor tool ran; its output is packed in the bundle" if built else
                      next((s.reason for s in steps if s.reason), info.get("vendor_build_blocked") or "not run"),
            "commands": [s.portable_command for s in steps],
            "run_later": f"cd BUNDLE && {' && '.join(s.portable_command for s in steps)}",
            "steps": [s.to_json() for s in steps],
            "vendor_model": self.vendor_model_file() if built else None,
        }
        plan["steps"] = [s.to_json() for s in steps]
        (out_dir / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")

        estimate, part = estimate_latency(proto, profile, precision=options.precision, input_shapes=shapes)
        info["estimate"] = estimate_to_json(estimate)
        info["partition"] = part.to_json()
        device = self.device_available()
        info["run_provenance"] = (Provenance.MEASURED if device.available and built else Provenance.EMULATED).value
        files = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
        return CompiledModel(out_dir, self.name, target.name, options.precision, files=files, info=info)

    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        info = compiled.info
        if info.get("run_provenance") == Provenance.MEASURED.value:
            runner = self.device_runner(compiled, threads)
            if runner is not None:
                return runner
        emulation = info.get("emulation") or {}
        path = compiled.path / str(emulation.get("path", ""))
        if not emulation.get("path") or not path.is_file():
            raise BadInputError("bundle has no emulated model", path=compiled.path, hint="recompile the bundle")
        return EmulatorRunner(path, compiled.input_specs(), compiled.output_names(), threads)

    # --- helpers ---------------------------------------------------------------------------------
    def _static_specs(self, specs: list[TensorSpec], options: CompileOptions, model: Path) -> list[TensorSpec]:
        """Inputs with every dim fixed, or an error naming the dims and the command that fixes them."""
        from edgekit.specs import TensorSpec

        given = {s.name: s for s in options.input_shapes}
        out: list[TensorSpec] = []
        dynamic: dict[str, dict[int, str]] = {}
        for spec in specs:
            if spec.name in given and given[spec.name].is_static:
                spec = TensorSpec(spec.name, given[spec.name].shape, spec.dtype, spec.layout)
            if not spec.is_static:
                dynamic[spec.name] = spec.dynamic_dims
            out.append(spec)
        gear = self.dynamic_batch_gear(options)
        if dynamic and gear is not None and all(set(axes) == {0} for axes in dynamic.values()):
            # a vendor preset covers the dynamic batch: plan with it, emulate/estimate at the first gear
            return [TensorSpec(s.name, (gear, *s.shape[1:]), s.dtype, s.layout) if s.name in dynamic else s
                    for s in out]
        if dynamic:
            from edgekit.adapters.npu.support import simplify_command

            raise UnsupportedError(
                f"dynamic input dims {dynamic}: {self.name} builds static shapes (dynamic only via vendor presets)",
                path=model, hint=f"fix them first: {simplify_command(model, specs)}, or pass --input-shape")
        return out
