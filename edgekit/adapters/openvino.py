"""OpenVINO (CPU): ONNX → IR (`model.xml`/`model.bin`) compiled with a latency hint and an explicit precision.

OpenVINO 2026 computes in bf16 by default on CPUs that have it (AVX512-BF16, AMX), even for an
FP32 model. So every compile sets `INFERENCE_PRECISION_HINT` explicitly (fp32 → f32, bf16 → bf16,
fp16 → f16), reads back the precision the compiled model really uses and records it in
`info["precision_used"]`, plus the per-kernel runtime precisions of the executable graph. A
request the CPU cannot honour (fp16 here silently becomes bf16) is refused, not relabelled.

INT8: a QDQ ONNX model runs on OpenVINO's integer kernels as it is; a float model with
calibration data is quantized by NNCF (`nncf.quantize`, post-training, min/max + fast bias
correction) into an INT8 IR (`native_int8 = True`). A float model without calibration is refused.

adapter_options: `performance_hint` (latency|throughput, default latency), `nncf_preset`
(performance|mixed, default performance), `subset_size` (int, NNCF calibration samples, default:
all given, at most 300), `float_precision` (f32|bf16: what the non-int8 layers of an int8 model
compute in, default f32).

Cold start: a bundle may carry OpenVINO's compiled model (`model.blob`, `CompiledModel.export_model`),
kept only when importing it was measured faster than compiling the IR (`info["load"]` records both
figures: INT8 IRs, whose compile runs the low-precision transformations, import several times faster;
small float IRs often compile faster than they import). `load` imports the blob only when this host
runs the same OpenVINO version on the same CPU model it was built with, else it compiles the IR and
says why (`runner.load_path`); a blob OpenVINO refuses falls back the same way.

A bundle's config file is data from whoever made the bundle: `load` accepts only the device `CPU`
and the properties in `BUNDLE_PROPERTIES` with the listed values (no CACHE_DIR, no plugin paths:
nothing that makes OpenVINO read or write outside the bundle); anything else is exit 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Mapping
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
)
from edgekit.bundle import check_threads
from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError
from edgekit.specs import COMPILE_PRECISIONS

if TYPE_CHECKING:
    from edgekit.targets import TargetProfile

CONFIG_FILE = "openvino_config.json"
BLOB_FILE = "model.blob"  # a fixed name: the manifest only says whether it is there, never where
BLOB_MIN_GAIN = 0.8  # keep the blob when importing it took < 80 % of the IR's compile time
_OPTIONS = {"performance_hint": str, "nncf_preset": str, "subset_size": int, "float_precision": str}
_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # edgekit precision -> OpenVINO hint
_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}  # OpenVINO element type -> edgekit precision
_CAPS = {"FP32": "fp32", "FP16": "fp16", "BF16": "bf16", "INT8": "int8"}  # OPTIMIZATION_CAPABILITIES
BUNDLE_DEVICES = ("CPU",)
# The only properties a bundle's config may set, with their allowed values (None: a thread count,
# bounded by edgekit.bundle.check_threads). Paths (CACHE_DIR, ...) are never accepted from a bundle.
BUNDLE_PROPERTIES: dict[str, tuple[Any, ...] | None] = {
    "PERFORMANCE_HINT": ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"),
    "INFERENCE_PRECISION_HINT": tuple(_NAMES),
    "EXECUTION_MODE_HINT": ("PERFORMANCE", "ACCURACY"),
    "ENABLE_CPU_PINNING": (True, False),
    "ENABLE_HYPER_THREADING": (True, False),
    "INFERENCE_NUM_THREADS": None,
}


def _core() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise ToolchainMissingError(f"openvino is not importable ({exc})",
                                    hint="pip install 'edgekit[openvino]'") from None
    return ov.Core()


def cpu_precisions() -> tuple[str, ...]:
    """What this CPU's plugin can compute in, from its OPTIMIZATION_CAPABILITIES."""
    found = set(_CAPS[c] for c in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") if c in _CAPS)
    return tuple(p for p in COMPILE_PRECISIONS if p in found)


def runtime_precisions(compiled: Any) -> dict[str, int]:
    """Histogram of the kernels' runtime precisions in the executable graph (evidence, not a hint)."""
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            key = str(info["runtimePrecision"].astype(str))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


class OpenVinoRunner(Runner):
    def __init__(self, compiled: Any, input_specs: list, output_names: list[str], precision_used: str,
                 source: tuple[str, str, dict[str, Any]] | None = None):
        super().__init__(input_specs, output_names)
        self.precision_used = precision_used
        self._compiled = compiled
        self._source = source  # (model.xml, device, properties): what throughput mode recompiles
        self.load_path = "IR compiled"  # or "blob imported", or why the blob was not used
        self._request = compiled.create_infer_request()
        ports = {name: port for port in compiled.outputs for name in port.get_names()}
        self._ports = [ports.get(name, compiled.outputs[i]) for i, name in enumerate(output_names)]

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # np.asarray(order="C"), not np.ascontiguousarray: the latter turns a 0-d input (silero-vad's `sr`) into (1,)
        # share_inputs: the arrays are read in place during this synchronous call (no copy into the request's
        # tensors); share_outputs=False (OpenVINO's default): the outputs come back as fresh numpy copies, so a
        # second copy here would only add its cost (an 8.6 MB YOLOv5n-640 output: ~5 ms a run, measured)
        try:
            results = self._request.infer({k: np.asarray(v, order="C") for k, v in inputs.items()},
                                          share_inputs=True, share_outputs=False)
        except RuntimeError as exc:
            raise RuntimeError(openvino_message(exc)) from exc
        return {name: results[port] for name, port in zip(self.output_names, self._ports, strict=True)}

    def throughput(
        self, feed: Mapping[str, np.ndarray], *, streams: int | None = None, seconds: float = 10.0,
        items_per_call: int = 1,
    ) -> ThroughputRun:
        """OpenVINO's own way: the IR compiled with the THROUGHPUT hint (`NUM_STREAMS` when given), an
        `AsyncInferQueue` of its optimal number of requests, each request's latency from start to callback.

        Same precision hint and threads as the latency build; a compile that lands on another precision
        is refused (a throughput figure in bf16 next to an f32 latency would compare two models).
        """
        import openvino as ov

        count = check_streams(streams)
        if self._source is None:
            return super().throughput(feed, streams=streams, seconds=seconds, items_per_call=items_per_call)
        xml, device, properties = self._source
        config = {**properties, "PERFORMANCE_HINT": "THROUGHPUT"}
        if count:
            config["NUM_STREAMS"] = count
        started = time.perf_counter_ns()
        try:
            compiled = _core().compile_model(xml, device, config)
        except RuntimeError as exc:
            raise RuntimeError(openvino_message(exc)) from exc
        compile_ms = (time.perf_counter_ns() - started) / 1e6  # a second compile: said, not hidden in load_ms
        used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if self.precision_used != "int8" and _NAMES.get(used, used) != self.precision_used:
            raise UnsupportedError(f"the THROUGHPUT compile computes {used}, the bundle {self.precision_used}",
                                   path=xml, hint="bench --mode latency, or recompile the bundle")
        requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, requests)
        data = {k: np.asarray(v, order="C") for k, v in feed.items()}
        for index in range(len(queue)):  # inputs set once per request, like benchmark_app: no copy per call
            for name, array in data.items():
                queue[index].set_tensor(name, ov.Tensor(array))
        latencies: list[float] = []
        clock = time.perf_counter_ns

        def done(_request: Any, started: int) -> None:
            latencies.append((clock() - started) / 1e6)

        queue.set_callback(done)
        for _ in range(requests):  # warm-up: each request's first inference out of the figure
            queue.start_async(userdata=clock())
        queue.wait_all()
        latencies.clear()
        start = clock()
        deadline = start + int(seconds * 1e9)
        try:
            while clock() < deadline:
                queue.get_idle_request_id()  # wait for a free request before its clock starts
                queue.start_async(userdata=clock())
            queue.wait_all()
        except RuntimeError as exc:
            raise RuntimeError(openvino_message(exc)) from exc
        wall = (clock() - start) / 1e9
        nstreams = int(compiled.get_property("NUM_STREAMS"))
        threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        return ThroughputRun(len(latencies), items_per_call, wall, tuple(latencies), requests,
                             f"openvino AsyncInferQueue, THROUGHPUT hint: {nstreams} stream(s), "
                             f"{requests} infer request(s), {threads} thread(s)",
                             threads_per_stream=max(1, threads // max(1, nstreams)) if threads else None,
                             details={"num_streams": nstreams, "infer_requests": requests, "threads": threads,
                                      "inference_precision": used, "compile_ms": compile_ms})

    def close(self) -> None:
        self._request = None
        self._compiled = None


class OpenVinoAdapter(TargetAdapter):
    name = "openvino"
    description = "OpenVINO CPU: IR with explicit precision hint (f32/bf16), INT8 from QDQ or NNCF"
    native_int8 = True

    def capabilities(self, target: TargetProfile) -> Capabilities:
        try:
            import openvino as ov

            precisions = cpu_precisions()
        except (ImportError, ToolchainMissingError) as exc:
            no = Availability.no(f"openvino is not importable ({exc}); pip install 'edgekit[openvino]'")
            return Capabilities(("fp32",), True, no, no)
        version = f"openvino {ov.get_version().split('-')[0]}"
        if target.kind != "cpu":
            no = Availability.no(f"the openvino adapter serves CPU targets only, not {target.kind}")
            return Capabilities(precisions, True, Availability.yes(version), no)
        notes = ["fp32 is pinned with INFERENCE_PRECISION_HINT=f32 (OpenVINO otherwise uses bf16 where the CPU has it)",
                 "int8: QDQ models directly, float models through NNCF with calibration data"]
        if "fp16" not in precisions:
            notes.append("no fp16 on this CPU (OpenVINO would silently compute in bf16 instead)")
        return Capabilities(precisions, True, Availability.yes(version),
                            Availability.yes(_core().get_property("CPU", "FULL_DEVICE_NAME")), notes=tuple(notes))

    def mixed_float_options(self, target: TargetProfile) -> dict[str, Any]:
        """bf16 for the float-kept nodes of a mixed INT8 model where the CPU computes bf16: measured on a mixed
        YOLOv5n, its float Convs ran bf16 under the bf16 hint (an NNCF/QDQ model's INT8 layers are unaffected)."""
        try:
            return {"float_precision": "bf16"} if "bf16" in cpu_precisions() else {}
        except ToolchainMissingError:
            return {}

    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        import openvino as ov

        from edgekit.onnxio import load_onnx, quantization_info

        opts = dict(options.adapter_options)
        check_adapter_options(self.name, opts, _OPTIONS)
        hint = _choice(opts, "performance_hint", ("latency", "throughput"), "latency")
        precision = options.precision
        caps = self.capabilities(target)
        if precision not in caps.precisions:
            raise UnsupportedError(f"openvino cannot compute {precision} on this CPU (offers "
                                   f"{', '.join(caps.precisions)})", path=model,
                                   hint="fp16 needs a CPU with native fp16 (e.g. AMX-FP16, ARM); try bf16 or fp32")
        quant = quantization_info(load_onnx(model, load_weights=False))
        info: dict[str, Any] = {"device": "CPU", "performance_hint": hint.upper()}
        shapes = {s.name: list(s.concrete_shape()) for s in options.input_shapes or ()}
        try:
            ov_model = ov.convert_model(str(model), input=shapes) if shapes else ov.convert_model(str(model))
        except RuntimeError as exc:
            raise RuntimeError(openvino_message(exc)) from exc
        if quant.quantized:
            info["int8"] = f"{quant.format} model run by OpenVINO's integer kernels"
            precision_goal = "int8"
        elif precision == "int8":
            if options.calibration is None:
                raise BadInputError("int8 from a float model needs calibration data for NNCF", path=model,
                                    hint="pass --calib SOURCE, or a QDQ model from `edgekit quantize`")
            ov_model, info["int8"] = self._nncf(ov_model, options.calibration, opts)
            precision_goal = "int8"
        else:
            precision_goal = precision
        float_hint = _HINTS.get(precision_goal) or _choice(opts, "float_precision", ("f32", "bf16"), "f32")
        ov.save_model(ov_model, str(out_dir / "model.xml"), compress_to_fp16=False)
        config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": float_hint}
        (out_dir / CONFIG_FILE).write_text(json.dumps({"device": "CPU", "properties": config}, indent=2) + "\n")
        properties = _with_threads(config, options.threads)
        started = time.perf_counter()
        try:
            compiled = _core().compile_model(str(out_dir / "model.xml"), "CPU", properties)
        except RuntimeError as exc:
            raise RuntimeError(openvino_message(exc)) from exc
        compile_ms = (time.perf_counter() - started) * 1e3
        used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if precision_goal != "int8" and _NAMES.get(used) != precision_goal:
            raise UnsupportedError(f"asked OpenVINO for {precision_goal}, it compiled {used}", path=model,
                                   hint="this CPU lacks that precision; use --precision fp32 or bf16")
        info.update({
            "inference_precision_hint": used,
            "precision_used": "int8" if precision_goal == "int8" else _NAMES[used],
            "runtime_precisions": runtime_precisions(compiled),
            "config_file": CONFIG_FILE,
        })
        info["load"] = _keep_blob_if_faster(compiled, out_dir, properties, compile_ms)
        files = ["model.xml", "model.bin", CONFIG_FILE] + ([BLOB_FILE] if info["load"]["blob"] else [])
        return CompiledModel(out_dir, self.name, target.name, precision, files=files, info=info)

    def _nncf(self, ov_model: Any, calibration: Any, opts: Mapping[str, Any]) -> tuple[Any, str]:
        """Post-training INT8 with NNCF over the given calibration samples (its output kept quiet)."""
        try:
            import nncf
        except ImportError as exc:
            raise ToolchainMissingError(f"nncf is not importable ({exc})", hint="pip install 'edgekit[openvino]'",
                                        path="--calib") from None
        samples = [dict(item) for item in calibration]
        if not samples:
            raise BadInputError("calibration data is empty", path="--calib")
        preset_name = _choice(opts, "nncf_preset", ("performance", "mixed"), "performance")
        subset = int(opts.get("subset_size", min(len(samples), 300)))
        if subset < 1:
            raise BadInputError("subset_size must be >= 1", path="adapter_options.subset_size")
        preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
        logging.getLogger("nncf").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantized = nncf.quantize(ov_model, nncf.Dataset(samples), preset=preset[preset_name], subset_size=subset)
        method = (f"NNCF {nncf.__version__} post-training quantize (preset {preset_name}, "
                  f"{min(subset, len(samples))} calibration sample(s))")
        return quantized, method

    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        path = Path(compiled.path)
        config_path = path / str(compiled.info.get("config_file", CONFIG_FILE))
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise BadInputError(f"cannot read the OpenVINO config ({exc})", path=config_path) from None
        device, properties = bundle_config(config, config_path)
        properties = _with_threads(properties, threads)
        ov_compiled, load_path = _import_blob(path, compiled.info.get("load"), device, properties)
        if ov_compiled is None:
            try:
                ov_compiled = _core().compile_model(str(path / "model.xml"), device, properties)
            except RuntimeError as exc:
                raise RuntimeError(openvino_message(exc)) from exc
        used = ov_compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        recorded = str(compiled.info.get("precision_used", ""))
        precision = "int8" if recorded == "int8" else _NAMES.get(used, used)  # what this host really computes in
        runner = OpenVinoRunner(ov_compiled, compiled.input_specs(), compiled.output_names(), precision,
                                source=(str(path / "model.xml"), device, properties))
        runner.load_path = load_path
        return runner


def _blob_host() -> dict[str, str]:
    """What a compiled blob is tied to: the OpenVINO build and the CPU model it was compiled on."""
    import openvino as ov

    return {"openvino": ov.get_version(), "cpu": str(_core().get_property("CPU", "FULL_DEVICE_NAME"))}


def _keep_blob_if_faster(compiled: Any, out_dir: Path, properties: dict[str, Any], compile_ms: float
                         ) -> dict[str, Any]:
    """Export the compiled model, time one import of it, and keep it only when importing beat compiling.

    The import's cost includes hashing the blob: every bundle file is sha256-verified at load, so a blob
    that holds float weights (tens of MB) can cost more to verify than the IR costs to compile.
    """
    try:
        blob = compiled.export_model().getvalue()
        started = time.perf_counter()  # the IR again, warm like the import below: the first compile paid set-up
        _core().compile_model(str(out_dir / "model.xml"), "CPU", properties)
        compile_ms = min(compile_ms, (time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
        hashlib.sha256(blob).digest()
        hashed = time.perf_counter()
        _core().import_model(blob, "CPU", properties)
        done = time.perf_counter()
    except RuntimeError as exc:  # a plugin that cannot export: the IR is the bundle, as before
        return {"blob": None, "decision": f"no blob: export/import failed ({openvino_message(exc)})",
                "compile_ms": round(compile_ms, 1)}
    hash_ms, import_ms = (hashed - started) * 1e3, (done - hashed) * 1e3
    keep = hash_ms + import_ms < BLOB_MIN_GAIN * compile_ms
    if keep:
        (out_dir / BLOB_FILE).write_bytes(blob)
    verdict = "kept" if keep else "not kept"
    return {"blob": BLOB_FILE if keep else None, "compile_ms": round(compile_ms, 1), "import_ms": round(import_ms, 1),
            "hash_ms": round(hash_ms, 1), "blob_mb": round(len(blob) / 1e6, 2),
            "decision": f"blob {verdict}: verify {hash_ms:.0f} ms + import {import_ms:.0f} ms of "
                        f"{len(blob) / 1e6:.1f} MB vs IR compile {compile_ms:.0f} ms (measured at compile here)",
            **_blob_host()}


def _import_blob(path: Path, load: Any, device: str, properties: dict[str, Any]) -> tuple[Any, str]:
    """(the imported blob, "blob"), or (None, why the IR is compiled instead)."""
    if not isinstance(load, Mapping) or load.get("blob") != BLOB_FILE:
        return None, "IR compiled (the bundle has no blob)"
    blob = path / BLOB_FILE
    if not blob.is_file():
        return None, "IR compiled (the manifest names a blob the bundle lacks)"
    here = _blob_host()
    for key, what in (("openvino", "OpenVINO"), ("cpu", "CPU")):
        if load.get(key) != here[key]:
            return None, f"IR compiled: the blob was built for {what} {load.get(key)!r}, this host has {here[key]!r}"
    try:
        return _core().import_model(blob.read_bytes(), device, properties), "blob imported"
    except RuntimeError as exc:
        return None, f"IR compiled: OpenVINO refused the blob ({openvino_message(exc)})"


def bundle_config(config: Any, where: Path) -> tuple[str, dict[str, Any]]:
    """(device, properties) from a bundle's config file, after the allow-list check (exit 2 otherwise)."""
    if not isinstance(config, dict) or not isinstance(config.get("properties", {}), dict):
        raise BadInputError("OpenVINO config is not an object with a `properties` object", path=where)
    device = config.get("device", "CPU")
    if device not in BUNDLE_DEVICES:
        raise BadInputError(f"OpenVINO device {device!r} is not accepted from a bundle", path=where,
                            hint=f"accepted: {', '.join(BUNDLE_DEVICES)}")
    properties = dict(config.get("properties", {}))
    for key, value in properties.items():
        if key not in BUNDLE_PROPERTIES:
            raise BadInputError(f"OpenVINO property {key!r} is not accepted from a bundle", path=where,
                                hint=f"accepted: {', '.join(BUNDLE_PROPERTIES)}; recompile the bundle")
        allowed = BUNDLE_PROPERTIES[key]
        if allowed is None:
            check_threads(value, source=f"{where} {key}")
        elif value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise BadInputError(f"OpenVINO property {key}={value!r} is not accepted from a bundle", path=where,
                                hint=f"one of {', '.join(map(str, allowed))}")
    return str(device), properties


_WHERE = re.compile(r"^(?:Exception from|Check '.*' failed at) (src/\S+?:\d+):?\s*(.*)$")


def openvino_message(exc: BaseException) -> str:
    """OpenVINO's exception text on one line, its real cause first and the source locations after.

    OpenVINO puts "Exception from src/...cpp:224:" on the first line and the cause lines below;
    callers that keep one line would otherwise show the location and drop the cause.
    """
    causes: list[str] = []
    where: list[str] = []
    for line in (part.strip() for part in str(exc).splitlines()):
        match = _WHERE.match(line)
        if match:
            where.append(match.group(1))
            line = match.group(2)
        if line:
            causes.append(line)
    text = " ".join(causes) or type(exc).__name__
    return f"{text} (OpenVINO at {', '.join(where)})" if where else text


def _with_threads(config: dict[str, Any], threads: int | None) -> dict[str, Any]:
    return {**config, "INFERENCE_NUM_THREADS": int(threads)} if threads else dict(config)


def _choice(opts: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = str(opts.get(key, default)).lower()
    if value not in allowed:
        raise BadInputError(f"unknown {key} {value!r}", path=f"adapter_options.{key}",
                            hint=f"one of {', '.join(allowed)}")
    return value
