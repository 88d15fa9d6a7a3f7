"""TVM (Relax): ONNX → `from_onnx` → legalize/fuse → (MetaSchedule database) → `tvm.compile` → `model.so`.

The LLVM target names the host CPU explicitly (`mcpu` from LLVM's host detection; `"native"` silently
falls back to generic code in TVM 0.27) and the thread count (`num-cores`). Untuned TVM code is
100–500× slower than ONNX Runtime on CPU convnets, so the bundle records whether it was tuned:
`adapter_options={"tune": True, "trials": N}` runs MetaSchedule for the tasks a persistent database
does not cover yet (see `_tvm_tuning.py`); any records already in the database are applied either
way. CUDA: a `{"kind": "cuda"}` target with dlight's default GPU schedules, when TVM was built with
CUDA and a GPU is present.

adapter_options: `tune` (bool, default False), `trials` (int, total MetaSchedule trial budget,
default 64), `tuning_db` (str path, default `<user cache>/edgekit/tvm-db/<target-hash>/`),
`use_db` (bool, default True: apply records already in the database even when not tuning).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.adapters.base import (
    Availability,
    Capabilities,
    CompiledModel,
    CompileOptions,
    NodeVerdict,
    Runner,
    SupportReport,
    TargetAdapter,
    check_adapter_options,
)
from edgekit.bundle import check_threads
from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError

if TYPE_CHECKING:
    from edgekit.targets import TargetProfile

LIBRARY = "model.so"
TARGET_FILE = "tvm_target.json"
_OPTIONS = {"tune": bool, "trials": int, "tuning_db": str, "use_db": bool}
UNTUNED_NOTE = ("untuned: TVM's default CPU schedules are 100-500x slower than ONNX Runtime; "
                "compile with -O tune=true (adapter_options {'tune': True})")


def _tvm() -> Any:
    try:
        import tvm
        import tvm.relax  # the Relax VM and frontend live here
    except ImportError as exc:
        raise ToolchainMissingError(f"apache-tvm is not importable ({exc})",
                                    hint="pip install 'edgekit[tvm]'") from None
    return tvm


def host_cpu() -> str:
    """LLVM's name for this CPU (e.g. znver4), as TVM's own codegen detects it."""
    import tvm_ffi

    return str(tvm_ffi.get_global_func("tvm.codegen.llvm.GetHostCPUName")())


def cuda_availability() -> Availability:
    tvm = _tvm()
    if not tvm.runtime.enabled("cuda"):
        return Availability.no("this apache-tvm build has no CUDA runtime (pip wheels are CPU-only; build TVM "
                               "with USE_CUDA=ON)")
    if not tvm.cuda(0).exist:
        return Availability.no("TVM has CUDA but sees no GPU")
    return Availability.yes(f"CUDA GPU (compute {tvm.cuda(0).compute_version})")


def make_target(kind: str, threads: int | None) -> Any:
    """The TVM target: LLVM for the host CPU and thread count, or CUDA for the visible GPU's arch."""
    import os

    tvm = _tvm()
    if kind == "gpu":
        arch = "sm_" + tvm.cuda(0).compute_version.replace(".", "")
        return tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm", "mcpu": host_cpu()})
    return tvm.target.Target({"kind": "llvm", "mcpu": host_cpu(), "num-cores": int(threads or os.cpu_count() or 1)})


class TvmRunner(Runner):
    def __init__(self, vm: Any, device: Any, input_specs: list, output_names: list[str]):
        super().__init__(input_specs, output_names)
        self._vm, self._device = vm, device

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tvm

        args = [tvm.runtime.tensor(np.asarray(inputs[s.name], order="C"), self._device) for s in self.input_specs]
        result = self._vm["main"](*args)
        outputs = [result] if hasattr(result, "numpy") else list(result)
        return {name: out.numpy() for name, out in zip(self.output_names, outputs, strict=True)}

    def close(self) -> None:
        self._vm = None


class TvmAdapter(TargetAdapter):
    name = "tvm"
    description = "Apache TVM Relax: LLVM for the host -mcpu (MetaSchedule tuning, persistent DB), CUDA"
    loads_native_code = True  # `load` dlopens the bundle's model.so: edgekit.bundle.require_trust decides

    def capabilities(self, target: TargetProfile) -> Capabilities:
        try:
            tvm = _tvm()
        except ToolchainMissingError as exc:
            no = Availability.no(exc.message + "; pip install 'edgekit[tvm]'")
            return Capabilities(("fp32",), False, no, no)
        version = Availability.yes(f"apache-tvm {tvm.__version__}")
        if target.kind == "cpu":
            version = Availability.yes(f"apache-tvm {tvm.__version__}; untuned unless -O tune=true")
            return Capabilities(("fp32",), False, version, Availability.yes(f"host CPU (llvm -mcpu={host_cpu()})"),
                                notes=(UNTUNED_NOTE + " (default tune=False)",
                                       "static shapes only: fix dynamic dims with --input-shape"))
        if target.kind == "gpu":
            return Capabilities(("fp32",), False, version, cuda_availability(),
                                notes=("CUDA with dlight default GPU schedules (not MetaSchedule-tuned)",))
        no = Availability.no(f"tvm does not compile for {target.kind} targets here")
        return Capabilities(("fp32",), False, no, no)

    def check(self, model: Path, target: TargetProfile) -> SupportReport:
        """Per node: does TVM's Relax ONNX frontend have a converter for this op type?"""
        from edgekit.onnxio import load_onnx

        tvm = _tvm()
        try:
            from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

            known = set(_get_convert_map()) | {"If", "Constant"}
        except ImportError:  # private helper moved: fall back to "every standard op"
            return super().check(model, target)
        source = f"tvm.relax.frontend.onnx converters (apache-tvm {tvm.__version__})"
        verdicts = [NodeVerdict(n.name, n.op_type, "supported", "has a Relax converter", source) if n.op_type in known
                    else NodeVerdict(n.name, n.op_type, "unsupported", "no Relax ONNX converter", source)
                    for n in load_onnx(model, load_weights=False).graph.node]
        return SupportReport(target.name, self.name, verdicts)

    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        from edgekit.adapters import _tvm_tuning as tuning
        from edgekit.onnxio import input_specs, load_onnx

        opts = dict(options.adapter_options)
        check_adapter_options(self.name, opts, _OPTIONS)
        if options.precision != "fp32":
            raise UnsupportedError(f"the tvm adapter compiles fp32 only, not {options.precision}", path=model,
                                   hint="use --backend openvino or onnxruntime for int8/bf16")
        trials = int(opts.get("trials", 64))
        if trials < 0:
            raise BadInputError("trials must be >= 0", path="adapter_options.trials")
        tune = bool(opts.get("tune", False))
        tvm = _tvm()
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        missing = sorted({v.op_type for v in self.check(model, target).unsupported})
        if missing:
            raise UnsupportedError(f"TVM's Relax ONNX frontend has no converter for {', '.join(missing)}", path=model,
                                   hint="try --backend onnxruntime or openvino")
        proto = load_onnx(model)
        fixed = {s.name: s for s in options.input_shapes}
        shapes = {}
        for spec in input_specs(proto):
            spec = fixed.get(spec.name, spec)
            if not spec.is_static:
                raise UnsupportedError(f"input {spec.name!r} has dynamic dims {spec.shape}", path=model,
                                       hint=f"fix them, e.g. --input-shape {spec.name}:"
                                            + ",".join(str(d) if isinstance(d, int) else "1" for d in spec.shape))
            shapes[spec.name] = list(spec.shape)
        target_obj = make_target(target.kind, options.threads)
        mod = from_onnx(proto, shape_dict=shapes, keep_params_in_input=False)
        info: dict[str, Any] = {"tvm_target": _plain_target(target_obj), "precision_used": "fp32"}
        with target_obj:
            mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                            relax.transform.CanonicalizeBindings(), relax.get_pipeline("zero")])(mod)
        if target.kind == "gpu":
            from tvm.s_tir import dlight

            with target_obj:
                mod = dlight.ApplyDefaultSchedule(dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                                                  dlight.gpu.GeneralReduction(), dlight.gpu.Fallback())(mod)
            info["tuned"] = False
            info["schedules"] = "dlight default GPU schedules"
            info["note"] = "CUDA build with dlight's default GPU schedules (not MetaSchedule-tuned)"
        else:
            db_dir = Path(opts["tuning_db"]).expanduser() if "tuning_db" in opts else tuning.default_db_dir(target_obj)
            with tuning.quiet_tvm_logs():
                if tune:
                    outcome = tuning.tune(mod, target_obj, db_dir, trials=trials, threads=_cores(target_obj))
                    tasks, covered = outcome.tasks, outcome.tasks_with_records
                    info["tuning"] = {k: v for k, v in vars(outcome).items() if k != "task_names"}
                else:
                    tasks, covered = tuning.covered_tasks(mod, target_obj, db_dir)
                    covered = covered if opts.get("use_db", True) else 0
                if covered:
                    with target_obj, tuning.open_database(db_dir):
                        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            info.update({"tuned": covered > 0, "tuning_db": str(db_dir), "tasks": tasks, "tasks_tuned": covered,
                         "trials": trials if tune else 0})
            if covered == 0:
                info["note"] = UNTUNED_NOTE
            elif covered < tasks:
                info["note"] = f"partly tuned: {covered} of {tasks} tasks have tuning records"
        executable = tvm.compile(mod, target=target_obj)
        executable.export_library(str(out_dir / LIBRARY))
        (out_dir / TARGET_FILE).write_text(json.dumps({"target": info["tvm_target"], "kind": target.kind}) + "\n")
        return CompiledModel(out_dir, self.name, target.name, "fp32", files=[LIBRARY, TARGET_FILE], info=info)

    def skip_in_auto(self, adapter_options: Mapping[str, Any]) -> str:
        """Untuned TVM is 20-300x slower than ORT here: building and timing it costs every auto user half a
        minute for a candidate that cannot win. Tried when asked for options (-O tune=true) or when a tuning
        database from an earlier `tune` exists on this machine."""
        if adapter_options:
            return ""
        from edgekit.adapters._tvm_tuning import databases_root

        root = databases_root()
        if root.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in root.iterdir()):
            return ""
        return ("skipped in auto: untuned TVM is 20-300x slower than ONNX Runtime here and no tuning database "
                "exists on this machine; name it (--backend tvm) or tune it (-O tune=true)")

    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        import os

        tvm = _tvm()
        from tvm import relax

        path = Path(compiled.path)
        try:
            meta = json.loads((path / TARGET_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise BadInputError(f"cannot read the TVM target file ({exc})", path=path / TARGET_FILE) from None
        if not isinstance(meta, dict) or not isinstance(meta.get("target", {}), dict):
            raise BadInputError("the TVM target file is not a JSON object", path=path / TARGET_FILE)
        recorded = check_threads(meta.get("target", {}).get("num-cores"), source=f"{path / TARGET_FILE} num-cores",
                                 clamp=True)
        _set_threads(threads or (None if "TVM_NUM_THREADS" in os.environ else recorded or os.cpu_count()))
        device = tvm.cuda(0) if meta.get("kind") == "gpu" else tvm.cpu(0)
        if meta.get("kind") == "gpu" and not cuda_availability().available:
            raise ToolchainMissingError(f"bundle needs a CUDA GPU: {cuda_availability().reason}", path=path)
        lib = tvm.runtime.load_module(str(path / LIBRARY))
        vm = relax.VirtualMachine(lib, device)
        return TvmRunner(vm, device, compiled.input_specs(), compiled.output_names())


def _set_threads(threads: int | None) -> None:
    """TVM's pool defaults to *physical* cores (1 on a 2-vCPU host); size it like the other backends.

    Process-wide: the last runner loaded sets it (TVM has one thread pool per process).
    """
    import os

    import tvm_ffi

    if threads:
        os.environ["TVM_NUM_THREADS"] = str(int(threads))
        tvm_ffi.get_global_func("runtime.config_threadpool")(1, int(threads))


def _cores(target: Any) -> int:
    return int(target.attrs.get("num-cores", 1) or 1)


def _plain_target(target: Any) -> dict[str, Any]:
    from edgekit.adapters._tvm_tuning import _plain

    return {k: v for k, v in _plain(target.export()).items() if v not in ("", [], None)}
