"""ONNX Runtime: CPU execution provider, plus CUDA and TensorRT execution providers where present.

CPU: the graph is optimized once at compile time and saved into the bundle (`model.opt.onnx`,
saved at the portable "extended" level; layout transforms that depend on the CPU are redone at
load). INT8 means a QDQ model (made by the quantize stage), which ORT runs with integer kernels.
GPU: FP16 by float16 conversion (CUDA EP) or TensorRT's fp16 flag; INT8 by QDQ (TensorRT
explicit quantization). ORT silently falls back to CPU when a provider fails, so loading checks
the provider really in use and refuses otherwise.

adapter_options: `optimization` (disable|basic|extended|all, default all), `provider`
(cpu|cuda|tensorrt; default cpu on CPU targets, tensorrt when present else cuda on GPU targets),
`save_optimized` (bool, default True).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.adapters.base import (
    Availability,
    Capabilities,
    CompiledModel,
    CompileOptions,
    Runner,
    TargetAdapter,
    ThroughputRun,
    check_adapter_options,
    check_streams,
    run_streams,
)
from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError

if TYPE_CHECKING:
    from edgekit.targets import TargetProfile

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_LEVELS = ("disable", "basic", "extended", "all")
_OPTIONS = {"optimization": str, "provider": str, "save_optimized": bool}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def gpu_device() -> Availability:
    """An NVIDIA GPU visible here (nvidia-smi lists one), or why not."""
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Availability.no("nvidia-smi not found (no NVIDIA driver or GPU on this host)")
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Availability.no(f"nvidia-smi failed: {exc}")
    gpus = [line for line in listing.splitlines() if line.startswith("GPU ")]
    return Availability.yes(gpus[0]) if gpus else Availability.no("nvidia-smi lists no GPU")


def to_float16(model: Any) -> Any:
    """FP16 weights and compute with FP32 inputs/outputs (onnxruntime's float16 helper)."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:  # pragma: no cover - ships with onnxruntime
        from onnxconverter_common.float16 import convert_float_to_float16
    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OrtRunner(Runner):
    concurrent_run = True  # InferenceSession.run is thread-safe and releases the GIL

    def __init__(self, session: Any, input_specs: list, output_names: list[str],
                 new_session: Callable[[int | None], Any] | None = None, threads: int | None = None):
        super().__init__(input_specs, output_names)
        self._session = session
        self._new_session = new_session  # threads -> a session of the same model and providers (throughput mode)
        self._threads = threads

    def throughput(
        self, feed: Mapping[str, np.ndarray], *, streams: int | None = None, seconds: float = 10.0,
        items_per_call: int = 1,
    ) -> ThroughputRun:
        """N sessions (default: one per usable core), each with its share of the threads, run from N threads
        at once (`InferenceSession.run` releases the GIL). Batching is the caller's feed (`--batch`)."""
        if self._new_session is None:
            return super().throughput(feed, streams=streams, seconds=seconds, items_per_call=items_per_call)
        cpus = _usable_cpus()
        count = check_streams(streams) or max(1, cpus)
        per = max(1, (self._threads or cpus) // count)
        started = time.perf_counter_ns()
        sessions = [self._new_session(per) for _ in range(count)]
        sessions_ms = (time.perf_counter_ns() - started) / 1e6  # N more loads: said, not hidden in load_ms
        names, data = self.output_names, dict(feed)
        calls = [lambda s=s: s.run(names, data) for s in sessions]
        for call in calls:  # warm-up: each session's first run out of the figure
            call()
        latencies, done, wall = run_streams(calls, seconds)
        return ThroughputRun(done, items_per_call, wall, tuple(latencies), count,
                             f"onnxruntime: {count} session(s) × {per} intra-op thread(s), run from {count} "
                             "threads at once", threads_per_stream=per,
                             details={"sessions": count, "intra_op_threads": per, "sessions_ms": sessions_ms})

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._session.run(self.output_names, dict(inputs))
        return dict(zip(self.output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


class OnnxRuntimeAdapter(TargetAdapter):
    name = "onnxruntime"
    description = "ONNX Runtime: CPU EP (optimized graph saved), CUDA/TensorRT EPs on NVIDIA GPUs"

    def capabilities(self, target: TargetProfile) -> Capabilities:
        import onnxruntime as ort

        version = f"onnxruntime {ort.__version__}"
        if target.kind == "cpu":
            return Capabilities(("fp32", "int8"), True, Availability.yes(version), Availability.yes("host CPU"),
                                notes=("int8 = QDQ model on integer kernels",))
        if target.kind == "gpu":
            providers = available_providers()
            if "CUDAExecutionProvider" not in providers:
                toolchain = Availability.no(f"no CUDAExecutionProvider in {version} (install onnxruntime-gpu)")
            else:
                gpu_eps = ", ".join(p for p in providers if p != "CPUExecutionProvider")
                toolchain = Availability.yes(f"{version} with {gpu_eps}")
            return Capabilities(("fp32", "fp16", "int8"), True, toolchain, gpu_device(),
                                notes=("fp16 via TensorRT flag or float16 conversion; int8 via QDQ",))
        no = Availability.no(f"onnxruntime does not compile for {target.kind} targets")
        return Capabilities(("fp32",), True, no, no)

    def _provider(self, target: TargetProfile, options: Mapping[str, Any]) -> str:
        default = "cpu"
        if target.kind == "gpu":
            default = "tensorrt" if "TensorrtExecutionProvider" in available_providers() else "cuda"
        provider = str(options.get("provider", default))
        if provider not in _PROVIDERS:
            raise BadInputError(f"unknown onnxruntime provider {provider!r}", path="adapter_options.provider",
                                hint=f"one of {', '.join(_PROVIDERS)}")
        return provider

    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        import onnx

        from edgekit.onnxio import load_onnx, ort_session, quantization_info

        opts = dict(options.adapter_options)
        check_adapter_options(self.name, opts, _OPTIONS)
        level = str(opts.get("optimization", "all"))
        if level not in _LEVELS:
            raise BadInputError(f"unknown optimization level {level!r}", path="adapter_options.optimization",
                                hint=f"one of {', '.join(_LEVELS)}")
        provider = self._provider(target, opts)
        precision = options.precision
        proto = load_onnx(model)
        if precision == "int8" and not quantization_info(proto).quantized:
            raise BadInputError("int8 with onnxruntime needs a quantized (QDQ) model", path=model,
                                hint="compile with --calib SOURCE, or run `edgekit quantize` first")
        if precision not in self.capabilities(target).precisions:
            raise UnsupportedError(f"onnxruntime does not offer {precision} on {target.kind} targets", path=model)
        out_dir = Path(out_dir)
        info: dict[str, Any] = {"provider": _PROVIDERS[provider], "optimization": level, "precision_used": precision}
        files: list[str] = []
        run_file = model
        if precision == "fp16" and provider != "tensorrt":
            onnx.save(to_float16(proto), str(out_dir / "model.fp16.onnx"))
            run_file = out_dir / "model.fp16.onnx"
            files.append("model.fp16.onnx")
            info["fp16"] = "float16 conversion (onnxruntime.transformers.float16, fp32 inputs/outputs)"
        if provider == "cpu" and opts.get("save_optimized", True) and level != "disable":
            saved_level = "extended" if level == "all" else level  # portable: no CPU-specific layouts
            ort_session(run_file, threads=options.threads, optimization=saved_level,
                        optimized_model_path=out_dir / "model.opt.onnx")
            run_file = out_dir / "model.opt.onnx"
            files.append("model.opt.onnx")
            info["saved_optimization"] = saved_level
        info["model_file"] = run_file.name if run_file.parent == out_dir else "source.onnx"
        return CompiledModel(out_dir, self.name, target.name, precision, files=files, info=info)

    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        from edgekit.onnxio import ort_session

        info = compiled.info
        provider = str(info.get("provider", "CPUExecutionProvider"))
        precision = str(info.get("precision_used", compiled.precision))
        providers: list[Any] = ["CPUExecutionProvider"]
        if provider == "CUDAExecutionProvider":
            providers = [provider, "CPUExecutionProvider"]
        elif provider == "TensorrtExecutionProvider":
            from platformdirs import user_cache_dir

            cache = Path(user_cache_dir("edgekit")) / "tensorrt"
            cache.mkdir(parents=True, exist_ok=True)
            trt = {"trt_fp16_enable": precision == "fp16", "trt_int8_enable": precision == "int8",
                   "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
            providers = [(provider, trt), "CUDAExecutionProvider", "CPUExecutionProvider"]
        if provider != "CPUExecutionProvider" and provider not in available_providers():
            raise ToolchainMissingError(f"bundle needs {provider}, not in this onnxruntime", path=compiled.path,
                                        hint="install onnxruntime-gpu on a host with an NVIDIA GPU")
        model_file = compiled.path / str(info.get("model_file", "source.onnx"))
        optimization = str(info.get("optimization", "all"))

        def new_session(count: int | None) -> Any:
            return ort_session(model_file, threads=count, providers=providers, optimization=optimization)

        session = new_session(threads)
        if session.get_providers()[0] != provider:
            raise ToolchainMissingError(f"onnxruntime fell back to {session.get_providers()[0]} instead of {provider}",
                                        path=compiled.path, hint="check the CUDA/TensorRT libraries")
        return OrtRunner(session, compiled.input_specs(), compiled.output_names(), new_session, threads)
