"""Rockchip RKNN through the real RKNN-Toolkit2, run in its managed environment (`edgekit toolchain install rknn`).

The toolkit's pins (onnx <= 1.18, protobuf < 7, setuptools < 81) clash with edgekit's, so it never runs
in edgekit's process: a worker (toolchains/rknn_worker.py) runs inside the rknn environment and this
adapter talks edgekit.worker/1 to it. compile: calibration .npy (NCHW) + list file -> config(mean/std,
target_platform) -> load_onnx -> build -> export_rknn into the bundle. load: the toolkit's x86 simulator
(provenance emulated; it cannot simulate a loaded .rknn, so the worker rebuilds from the bundle's
source.onnx + recorded config + calibration files), or a connected board (measured; set
EDGEKIT_RKNN_TARGET, untested here). Edgekit inputs are always the ONNX model's inputs: with mean/std the
.rknn takes raw values (normalization fused), and the runner converts (raw = x * std + mean).
"""

from __future__ import annotations

import atexit
import json
import os
import tempfile
from collections.abc import Mapping
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
from edgekit.errors import BadInputError, UnsupportedError
from edgekit.progress import step

if TYPE_CHECKING:
    from edgekit.specs import TensorSpec
    from edgekit.targets import TargetProfile
    from edgekit.toolchains.worker_client import WorkerClient

RKNN_FILE = "model.rknn"
BUILD_FILE = "rknn/build.json"
CALIB_DIR = "rknn/calib"
DATASET_FILE = "rknn/dataset.txt"
ANALYSIS_FILE = "rknn/accuracy_analysis.txt"
SIMULATOR_NOTE = "RKNN-Toolkit2 x86 simulator: the NPU's numerics on the host; simulator time is not NPU time"
BOARD_ENV = "EDGEKIT_RKNN_TARGET"  # e.g. rk3588: run on a board reachable by adb (measured; untested here)
DEVICE_ENV = "EDGEKIT_RKNN_DEVICE_ID"
OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "accuracy_analysis": bool,  # run the toolkit's per-layer accuracy_analysis on one calibration sample
    "calib_samples": int,  # calibration samples given to the toolkit (default 20)
    "quantized_algorithm": str,  # normal | mmse | kl_divergence
    "quantized_method": str,  # channel | layer
    "optimization_level": int,
    "timeout_s": (int, float),  # per worker call
}
DEFAULT_CALIB_SAMPLES = 20
_LIVE: dict[str, tuple[WorkerClient, int, str]] = {}  # bundle dir -> simulator session kept from compile


def _spec_shape(spec: TensorSpec) -> tuple[int, ...]:
    if not spec.is_static:
        raise UnsupportedError(f"input {spec.name!r} has dynamic dims {spec.shape}; RKNN builds static shapes",
                               hint="fix them with --input-shape NAME:1,3,224,224")
    return tuple(int(d) for d in spec.shape)


def _norm(specs: list[TensorSpec], mean: tuple[float, ...] | None, std: tuple[float, ...] | None
          ) -> tuple[list[list[float]] | None, list[list[float]] | None]:
    """RKNN mean_values/std_values per input: the given ones on 4-D inputs with that many channels."""
    if mean is None and std is None:
        return None, None
    means, stds = [], []
    for spec in specs:
        shape = _spec_shape(spec)
        channels = shape[1] if len(shape) == 4 else 1
        m = list(mean) if mean is not None else [0.0] * channels
        s = list(std) if std is not None else [1.0] * channels
        if len(shape) == 4 and len(m) == 1:
            m = m * channels
        if len(shape) == 4 and len(s) == 1:
            s = s * channels
        if len(shape) != 4 or len(m) != channels or len(s) != channels:
            raise BadInputError(f"--mean/--std have {len(m)}/{len(s)} values but input {spec.name!r} has shape "
                                f"{shape}", path="--mean", hint="give one value per channel of the NCHW input")
        if any(v == 0 for v in s):
            raise BadInputError("--std has a zero", path="--std")
        means.append([float(v) for v in m])
        stds.append([float(v) for v in s])
    return means, stds


def _to_raw(array: np.ndarray, mean: list[float] | None, std: list[float] | None) -> np.ndarray:
    """ONNX-model input -> what the .rknn takes when normalization is fused: x * std + mean (per channel)."""
    array = np.asarray(array, dtype=np.float32)
    if mean is None or std is None or array.ndim != 4:
        return array
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return (array * s + m).astype(np.float32)


def _parse_analysis(text: str, limit: int = 400) -> list[dict[str, Any]]:
    """Rows of the toolkit's error_analysis.txt: layer, then entire/single cosine and euclidean error.

    "entire" accumulates the simulator's error layer by layer; "single" is that layer alone (vendor's words).
    """
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("["):
            continue
        head, _, rest = line.partition("]")
        parts = rest.split()
        if not parts:
            continue
        numbers = []
        for token in parts[1:]:
            if token != "|" and _is_float(token):
                numbers.append(float(token))
        if len(numbers) != 4:
            continue
        rows.append({"layer": f"{head}] {parts[0]}", "entire_cos": numbers[0], "entire_euc": numbers[1],
                     "single_cos": numbers[2], "single_euc": numbers[3]})
        if len(rows) >= limit:
            break
    return rows


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class RknnRunner(Runner):
    """Inference through the worker: the simulator (emulated) or a connected board (measured)."""

    def __init__(self, client: WorkerClient, session: int, input_specs: list[TensorSpec], output_specs: list[Any],
                 means: list[list[float]] | None, stds: list[list[float]] | None, provenance: Provenance,
                 timeout: float):
        super().__init__(input_specs, [s.name for s in output_specs])
        self._client, self._session, self._timeout = client, session, timeout
        self._means, self._stds = means, stds
        self._out_shapes = [s.shape for s in output_specs]
        self.provenance = provenance
        self.last_seconds: float | None = None  # worker-side inference time (simulator time is not NPU time)

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from edgekit.toolchains import protocol

        arrays = []
        for i, spec in enumerate(self.input_specs):
            mean = self._means[i] if self._means else None
            std = self._stds[i] if self._stds else None
            arrays.append(protocol.encode_array(_to_raw(inputs[spec.name], mean, std)))
        four_d = all(len(s.shape) == 4 for s in self.input_specs)
        result = self._client.call("infer", {"session": self._session, "inputs": arrays,
                                             "data_format": "nchw" if four_d else None}, timeout=self._timeout)
        self.last_seconds = float(result.get("seconds", 0.0))
        outputs = [protocol.decode_array(o) for o in result["outputs"]]
        named = {}
        for name, shape, out in zip(self.output_names, self._out_shapes, outputs, strict=False):
            out = np.asarray(out, dtype=np.float32)
            if all(isinstance(d, int) for d in shape) and out.size == int(np.prod(shape)) and out.shape != shape:
                out = out.reshape(shape)
            named[name] = out
        return named

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None  # type: ignore[assignment]


class RknnLiteRunner(Runner):
    """On the board itself, with rknn-toolkit-lite2 importable in edgekit's env: measured (untested here)."""

    provenance = Provenance.MEASURED

    def __init__(self, rknn_file: Path, input_specs: list[TensorSpec], output_specs: list[Any],
                 means: list[list[float]] | None, stds: list[list[float]] | None):
        super().__init__(input_specs, [s.name for s in output_specs])
        from rknnlite.api import RKNNLite  # type: ignore[import-not-found]

        self._means, self._stds = means, stds
        self._out_shapes = [s.shape for s in output_specs]
        self._lite = RKNNLite()
        if self._lite.load_rknn(str(rknn_file)) != 0 or self._lite.init_runtime() != 0:
            raise UnsupportedError("rknn-toolkit-lite2 could not load the .rknn on this board", path=rknn_file,
                                   hint="check that the bundle's target matches this SoC and librknnrt is installed")

    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [_to_raw(inputs[s.name], self._means[i] if self._means else None,
                          self._stds[i] if self._stds else None) for i, s in enumerate(self.input_specs)]
        four_d = all(len(s.shape) == 4 for s in self.input_specs)
        outputs = self._lite.inference(inputs=arrays, data_format="nchw" if four_d else None)
        if outputs is None:
            raise UnsupportedError("rknn-toolkit-lite2 inference returned no outputs")
        return {name: np.asarray(o, np.float32).reshape(shape) if np.asarray(o).size == int(np.prod(shape))
                else np.asarray(o, np.float32)
                for name, shape, o in zip(self.output_names, self._out_shapes, outputs, strict=False)}

    def close(self) -> None:
        if self._lite is not None:
            self._lite.release()
            self._lite = None


def _lite_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("rknnlite.api") is not None
    except (ImportError, ValueError):
        return False


class RknnAdapter(TargetAdapter):
    name: ClassVar[str] = "rknn"
    description: ClassVar[str] = "Rockchip RKNN-Toolkit2 (managed environment; x86 simulator or a board)"
    native_int8: ClassVar[bool] = True  # the toolkit quantizes the float model with its own calibration

    # --- availability ------------------------------------------------------------------------------
    @staticmethod
    def _env() -> Any:
        from edgekit.toolchains.env import find_env

        return find_env("rknn")

    @staticmethod
    def _board() -> str | None:
        return os.environ.get(BOARD_ENV) or None

    def capabilities(self, target: TargetProfile) -> Capabilities:
        from edgekit.toolchains.env import install_command, toolchains_root

        env = self._env()
        precisions = tuple(p for p in ("fp16", "int8") if p in target.precisions)
        if env is None and _lite_available():  # edgekit running on the board: run and bench, no compile
            lite = Availability.yes("rknn-toolkit-lite2 on this board (runs .rknn bundles; compiling needs "
                                    f"`{install_command('rknn')}` on an x86 host)")
            return Capabilities(precisions=precisions, dynamic_shapes=False, toolchain=lite, device=lite,
                                run_provenance=Provenance.MEASURED, notes=("on-device runtime: measured",))
        if env is None:
            why = (f"the rknn toolchain environment is not installed at {toolchains_root() / 'rknn'}: "
                   f"run `{install_command('rknn')}`")
            toolchain = device = Availability.no(why)
        else:
            version = env.packages.get("rknn-toolkit2", "?")
            toolchain = Availability.yes(f"RKNN-Toolkit2 {version} in {env.path}")
            board = self._board()
            device = Availability.yes(f"board {board} via init_runtime(target=...) (measured)" if board
                                      else SIMULATOR_NOTE)
        return Capabilities(
            precisions=precisions, dynamic_shapes=False, toolchain=toolchain, device=device,
            run_provenance=Provenance.MEASURED if self._board() else Provenance.EMULATED,
            notes=("fp32 is not an RKNN mode: build fp16 or int8",
                   "latency without a board: roofline estimate from the profile (simulator time is not NPU time)"),
        )

    def _require(self) -> Any:
        from edgekit.toolchains.env import require_env

        return require_env("rknn")

    def _client(self, timeout: float) -> WorkerClient:
        from edgekit.toolchains.env import RKNN
        from edgekit.toolchains.worker_client import WorkerClient

        env = self._require()
        return WorkerClient(env.python, RKNN.worker_path, start_timeout=min(timeout, 300.0))

    # --- check / estimate --------------------------------------------------------------------------
    def check(self, model: Path, target: TargetProfile) -> SupportReport:
        from edgekit.adapters.npu.support import check_npu

        return check_npu(model, target, adapter=self.name)

    def estimate(self, model: Path, target: TargetProfile) -> LatencyEstimate | None:
        """Roofline from the profile (estimated); precision from the bundle's build record when beside it."""
        from edgekit.adapters.npu.profile import npu_profile
        from edgekit.adapters.npu.roofline import estimate_latency
        from edgekit.onnxio import load_onnx

        precision = "int8"
        build = Path(model).parent / BUILD_FILE
        if build.is_file():
            precision = str(json.loads(build.read_text()).get("precision", precision))
        estimate, _ = estimate_latency(load_onnx(model), npu_profile(target), precision=precision)
        return LatencyEstimate(estimate.latency_ms, (*estimate.assumptions, SIMULATOR_NOTE), estimate.per_node,
                               Provenance.ESTIMATED)

    # --- compile -----------------------------------------------------------------------------------
    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        from edgekit.adapters.npu.profile import npu_profile
        from edgekit.onnxio import input_specs, load_onnx, quantization_info

        check_adapter_options(self.name, options.adapter_options, OPTION_TYPES)
        opts = dict(options.adapter_options)
        precision = options.precision
        offered = tuple(p for p in ("fp16", "int8") if p in target.precisions)
        if precision not in offered:
            raise UnsupportedError(f"RKNN on {target.name} builds {' or '.join(offered)}, not {precision}",
                                   path="--precision", hint=f"use --precision {offered[-1]}")
        self._require()
        profile = npu_profile(target)
        proto = load_onnx(model, load_weights=False)
        specs = input_specs(proto)
        for spec in specs:
            _spec_shape(spec)
        means, stds = _norm(specs, options.mean, options.std)
        qformat = quantization_info(proto).format
        if qformat not in (None, "QDQ"):
            raise UnsupportedError(f"RKNN-Toolkit2 takes float or QDQ models, not {qformat} quantized ones",
                                   path=model, hint="give the float model with --calib, or a QDQ model")
        # A QDQ model (edgekit quantize) carries its scales: the toolkit uses them, no calibration run.
        prequantized = precision == "int8" and qformat == "QDQ"
        quantize = precision == "int8" and not prequantized
        if qformat == "QDQ" and precision != "int8":
            raise UnsupportedError("the model is already INT8 (QDQ)", path=model, hint="use --precision int8")
        out_dir = Path(out_dir)
        (out_dir / "rknn").mkdir(parents=True, exist_ok=True)
        samples = 0
        if quantize:
            if options.calibration is None:
                raise BadInputError("int8 needs calibration data", path="--calib",
                                    hint="pass --calib DIR (.npy/.npz, images) or --calib synthetic")
            samples = self._write_calibration(options.calibration, specs, means, stds, out_dir,
                                              int(opts.get("calib_samples", DEFAULT_CALIB_SAMPLES)))
        build = {
            "schema": "edgekit.rknn.build/1", "precision": precision, "target_platform": profile.soc_version,
            "quantize": quantize, "prequantized_qdq": prequantized, "mean_values": means, "std_values": stds,
            "quantized_algorithm": opts.get("quantized_algorithm"), "quantized_method": opts.get("quantized_method"),
            "optimization_level": opts.get("optimization_level"), "calibration_samples": samples,
            "dataset": DATASET_FILE if quantize else None, "inputs": [s.name for s in specs],
        }
        (out_dir / BUILD_FILE).write_text(json.dumps(build, indent=2) + "\n")
        timeout = float(opts.get("timeout_s", 1800))
        client = self._client(timeout)
        try:
            result = self._build(client, model, out_dir, build, timeout, simulate=True,
                                 output=out_dir / RKNN_FILE,
                                 analysis=bool(opts.get("accuracy_analysis", False)))
        except BaseException:
            client.close()
            raise
        old = _LIVE.pop(str(out_dir.resolve()), None)
        if old is not None:
            old[0].close()
        _LIVE[str(out_dir.resolve())] = (client, int(result["session"]), str(model))
        files = [RKNN_FILE, BUILD_FILE]
        info: dict[str, Any] = {
            "precision_used": precision,
            "run_provenance": Provenance.MEASURED.value if self._board() else Provenance.EMULATED.value,
            "rknn": {
                "toolkit": client.hello.get("versions", {}).get("rknn-toolkit2"),
                "target_platform": profile.soc_version, "quantized": quantize or prequantized,
                "quantized_by": "RKNN-Toolkit2 calibration" if quantize else
                                ("QDQ scales of the model (edgekit quantize)" if prequantized else None),
                "calibration_samples": samples, "mean_values": means, "std_values": stds,
                "rknn_size_bytes": result.get("size"), "timings_s": result.get("timings", {}),
                "inputs": "the .rknn takes raw values (x * std + mean); edgekit runners take the ONNX inputs"
                          if means else "same inputs as the ONNX model",
                "simulator": SIMULATOR_NOTE,
            },
        }
        if quantize:
            files += [DATASET_FILE, CALIB_DIR]
        analysis = result.get("accuracy_analysis")
        if analysis:
            info["rknn"]["accuracy_analysis"] = self._keep_analysis(analysis, out_dir)
            files.append(ANALYSIS_FILE)
        return CompiledModel(out_dir, self.name, target.name, precision, files=files, info=info)

    def _write_calibration(self, reader: Any, specs: list[TensorSpec], means: Any, stds: Any, out_dir: Path,
                           limit: int) -> int:
        """NCHW float32 .npy per sample and input (raw values when mean/std are fused) + the list file."""
        calib = out_dir / CALIB_DIR
        calib.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, sample in enumerate(reader):
            if i >= limit:
                break
            names = []
            for k, spec in enumerate(specs):
                if spec.name not in sample:
                    raise BadInputError(f"calibration sample {i} lacks input {spec.name!r}", path="--calib")
                array = _to_raw(np.asarray(sample[spec.name]), means[k] if means else None,
                                stds[k] if stds else None)
                if tuple(array.shape) != _spec_shape(spec):
                    raise BadInputError(f"calibration sample {i} input {spec.name!r} has shape {array.shape}, "
                                        f"the model takes {spec.shape}", path="--calib")
                name = f"{i:04d}_{k}.npy"
                np.save(calib / name, np.ascontiguousarray(array))
                names.append(f"calib/{name}")
            lines.append(" ".join(names))
        if not lines:
            raise BadInputError("calibration source gave no samples", path="--calib")
        (out_dir / DATASET_FILE).write_text("\n".join(lines) + "\n")
        return len(lines)

    @staticmethod
    def _build(client: WorkerClient, model: Path, bundle: Path, build: dict[str, Any], timeout: float, *,
               simulate: bool, output: Path | None = None, analysis: bool = False) -> dict[str, Any]:
        """Run the toolkit build in the worker; the list file gets absolute paths in a temp file."""
        with tempfile.TemporaryDirectory(prefix="edgekit-rknn-") as tmp:
            params: dict[str, Any] = {
                "model": str(Path(model).resolve()), "target_platform": build["target_platform"],
                "quantize": build["quantize"], "simulate": simulate,
                **{k: build[k] for k in ("mean_values", "std_values", "quantized_algorithm", "quantized_method",
                                         "optimization_level") if build.get(k) is not None},
            }
            if build["quantize"]:
                base = bundle / "rknn"
                lines = (bundle / build["dataset"]).read_text().split("\n")
                absolute = [" ".join(str((base / p).resolve()) for p in ln.split()) for ln in lines if ln.strip()]
                dataset = Path(tmp) / "dataset.txt"
                dataset.write_text("\n".join(absolute) + "\n")
                params["dataset"] = str(dataset)
                if analysis:
                    params["accuracy_analysis"] = {"inputs": absolute[0].split(),
                                                   "output_dir": str(Path(tmp) / "snapshot")}
            elif analysis:
                raise BadInputError("accuracy_analysis compares the INT8 build with float: use --precision int8",
                                    path="adapter_options")
            if output is not None:
                params["output"] = str(Path(output).resolve())
            with step("RKNN-Toolkit2 build", "in its own environment; its log lines follow"):
                result = client.call("build", params, timeout=timeout)
            report = (result.get("accuracy_analysis") or {}).get("report")
            if report and Path(report).is_file():  # read before the temp dir goes
                result["accuracy_analysis"]["text"] = Path(report).read_text(errors="replace")
            return result

    @staticmethod
    def _keep_analysis(analysis: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        text = analysis.get("text") or ""
        (out_dir / ANALYSIS_FILE).write_text(text)
        rows = _parse_analysis(text)
        return {"file": ANALYSIS_FILE, "layers": len(rows), "rows": rows[:200],
                "note": "RKNN-Toolkit2 accuracy_analysis on the first calibration sample (simulator vs float)"}

    # --- load --------------------------------------------------------------------------------------
    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner:
        from edgekit.onnxio import load_onnx, output_specs

        bundle = Path(compiled.path)
        build_file = bundle / BUILD_FILE
        if not build_file.is_file():
            raise BadInputError("bundle lacks rknn/build.json (not an RKNN bundle?)", path=bundle)
        build = json.loads(build_file.read_text())
        specs = compiled.input_specs()
        outputs = output_specs(load_onnx(compiled.source_path, load_weights=False))
        means, stds = build.get("mean_values"), build.get("std_values")
        timeout = 1800.0
        if self._env() is None and _lite_available():
            return RknnLiteRunner(bundle / RKNN_FILE, specs, outputs, means, stds)
        board = self._board()
        if board:  # a real board through adb: measured (no board here, so this path is untested)
            client = self._client(timeout)
            try:
                opened = client.call("open", {"rknn": str((bundle / RKNN_FILE).resolve()), "target": board,
                                              "device_id": os.environ.get(DEVICE_ENV)}, timeout=timeout)
            except BaseException:
                client.close()
                raise
            return RknnRunner(client, int(opened["session"]), specs, outputs, means, stds, Provenance.MEASURED,
                              timeout)
        live = _LIVE.pop(str(bundle.resolve()), None)
        if live is not None and live[0].alive:
            client, session = live[0], live[1]
        else:
            if live is not None:
                live[0].close()
            client = self._client(timeout)
            try:
                result = self._build(client, compiled.source_path, bundle, build, timeout, simulate=True)
            except BaseException:
                client.close()
                raise
            session = int(result["session"])
        return RknnRunner(client, session, specs, outputs, means, stds, Provenance.EMULATED, timeout)


def release_live_sessions() -> None:
    """Close simulator workers kept between compile and load (the compile stage normally loads at once)."""
    while _LIVE:
        _, (client, _, _) = _LIVE.popitem()
        client.close()


atexit.register(release_live_sessions)

