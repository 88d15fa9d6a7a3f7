"""The ONNX Runtime side of quantization: prepare, calibrate (streamed), write QDQ, check it loads.

Core, below stages and adapters, so that the quantize stage and NPU emulation (adapters/npu) call
the same bare steps: `prepare_model` -> `calibrate` (ranges cached in a JSON file, computed once)
-> `quantize_qdq` (any number of times with different exclusions, no recalibration) -> `check_loads`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgekit.errors import BadInputError, UnsupportedError
from edgekit.onnxio import QUANT_OPS_QDQ, opset_version, quantization_info
from edgekit.progress import emit

METHODS = ("minmax", "entropy", "percentile")
PER_CHANNEL_MIN_OPSET = 13  # DequantizeLinear `axis` (per-channel) exists from opset 13
MIN_OPSET = 11


@dataclass
class Prepared:
    """A model made ready for ORT quantization, and what was done to it."""

    path: Path
    model: onnx.ModelProto
    opset_from: int
    opset_to: int
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """ORT's quantization tooling logs warnings and prints; keep the user's terminal clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        root.setLevel(level)


def refuse_quantized(model: onnx.ModelProto, path: str | Path | None) -> None:
    """Already-quantized input is refused (exit 2): quantizing twice stacks rounding errors silently."""
    info = quantization_info(model)
    if info.quantized:
        ops = ", ".join(f"{op} x{n}" for op, n in info.ops.items())
        raise BadInputError(
            f"model is already quantized ({info.format} format: {ops}); quantizing it again would stack "
            "rounding errors and break the accuracy report", path=path,
            hint="pass the FP32 model that this one was quantized from")


def name_nodes(model: onnx.ModelProto) -> int:
    """Give unnamed nodes stable names (op_type_index): exclusions and rankings refer to names."""
    used = {n.name for n in model.graph.node if n.name}
    count = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
            count += 1
    return count


def prepare_model(model: onnx.ModelProto, workdir: Path, *, per_channel: bool, pre_process: bool = True,
                  source: str | Path | None = None) -> Prepared:
    """Refuse quantized input, name nodes, upgrade the opset where needed, run ORT's quant_pre_process.

    quant_pre_process (symbolic shape inference + ORT basic optimizations) is retried without symbolic
    shape inference, then without optimization; if all fail the model is used as is (noted).
    """
    refuse_quantized(model, source)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    notes: list[str] = []
    if named := name_nodes(model):
        notes.append(f"named {named} unnamed node(s)")
    opset = opset_version(model)
    target = max(opset, MIN_OPSET, PER_CHANNEL_MIN_OPSET if per_channel else 0)
    if target != opset:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, target)
            onnx.checker.check_model(model)
        except Exception as exc:
            raise UnsupportedError(
                f"cannot upgrade opset {opset} -> {target} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                path=source, hint="re-export the model at opset >= 13 (or use --per-tensor with opset >= 11)",
            ) from None
        why = ("per-channel DequantizeLinear needs opset >= 13" if per_channel and opset < 13
               else "QDQ needs opset >= 11")
        notes.append(f"opset upgraded {opset} -> {target} ({why})")
    raw = workdir / "fp32_in.onnx"
    onnx.save(model, str(raw))
    out = workdir / "fp32_prepared.onnx"
    if pre_process:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        attempts = (({}, None), ({"skip_symbolic_shape": True}, "symbolic shape inference failed; skipped"),
                    ({"skip_symbolic_shape": True, "skip_optimization": True},
                     "ORT pre-optimization failed; skipped"))
        for kwargs, note in attempts:
            try:
                # ORT's symbolic shape inference saves `sym_shape_infer_temp.onnx` in the current directory when
                # it gives up: run it inside the work folder so nothing lands in the user's directory
                with quiet_ort(), contextlib.chdir(workdir):
                    quant_pre_process(str(raw.resolve()), str(out.resolve()), **kwargs)
                prepared = onnx.load(str(out))
                if note:
                    notes.append(f"quant_pre_process: {note}")
                return Prepared(out, prepared, opset, target, notes)
            except Exception as exc:
                last = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        notes.append(f"quant_pre_process failed ({last}); quantizing the model as given")
    return Prepared(raw, model, opset, target, notes)


def op_types_to_quantize() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class _ListReader:
    """ORT CalibrationDataReader over a list (one chunk of the stream)."""

    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _fast_session(path: Path, threads: int | None) -> Any:
    """ORT's calibrator runs its augmented model unoptimized with spinning threads; this is ~2x faster on a
    busy machine and gives the same ranges (graph outputs are never fused away)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def calibrate(prepared: Prepared, samples: Iterable[dict[str, np.ndarray]], workdir: Path, *, method: str = "minmax",
              percentile: float = 99.999, symmetric: bool = False, chunk: int = 16, threads: int | None = None) -> Path:
    """Collect activation ranges in chunks of `chunk` samples (bounded memory); returns the ranges cache file."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    if method not in METHODS:
        raise BadInputError(f"unknown calibration method {method!r}", path="--method", hint=f"one of {METHODS}")
    cal_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[method]
    extra: dict[str, Any] = {"percentile": percentile} if method == "percentile" else {"symmetric": symmetric}
    with quiet_ort():
        calibrator = create_calibrator(prepared.path, op_types_to_quantize(),
                                       augmented_model_path=str(workdir / "augmented.onnx"),
                                       calibrate_method=cal_method, extra_options=extra)
        calibrator.infer_session = _fast_session(Path(calibrator.augmented_model_path), threads)
    buffer: list[dict[str, np.ndarray]] = []
    seen = 0
    for sample in samples:
        buffer.append(sample)
        seen += 1
        if len(buffer) >= chunk:
            with quiet_ort():
                calibrator.collect_data(_ListReader(buffer))
            buffer = []
            emit("calibration", seen, None, f"{method} ranges over {seen} sample(s)")
    if buffer:
        with quiet_ort():
            calibrator.collect_data(_ListReader(buffer))
    if seen == 0:
        raise BadInputError("no calibration samples", path="--calib")
    with quiet_ort():
        ranges = calibrator.compute_data()
    cache = workdir / f"ranges_{method}.json"
    save_tensors_data(ranges, cache)
    del calibrator
    return cache


@dataclass(frozen=True)
class QdqSettings:
    """The knobs that decide the numerics of the QDQ graph (first-class for NPU emulation too)."""

    method: str = "minmax"
    per_channel: bool = True
    symmetric_activations: bool = False
    activation_type: str = "auto"  # auto: uint8 (asymmetric), int8 when symmetric_activations
    weight_type: str = "int8"
    reduce_range: bool = False

    def resolved_activation_type(self) -> str:
        if self.activation_type != "auto":
            return self.activation_type
        return "int8" if self.symmetric_activations else "uint8"


def quantize_qdq(prepared: Prepared, ranges: Path, settings: QdqSettings, *, exclude: Iterable[str] = (),
                 only: Iterable[str] | None = None, workdir: Path) -> bytes:
    """Write a QDQ model with the cached ranges; `exclude` keeps nodes float, `only` quantizes just those."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    qtypes = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    act, wt = settings.resolved_activation_type(), settings.weight_type
    if act not in qtypes or wt not in qtypes:
        raise BadInputError(f"unsupported activation/weight type {act}/{wt}", path="activation_type",
                            hint="int8 or uint8")
    cal_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[settings.method]
    extra = {"ActivationSymmetric": settings.symmetric_activations, "WeightSymmetric": True}
    out = workdir / f"qdq_{uuid.uuid4().hex[:12]}.onnx"
    try:
        with quiet_ort():
            quantize_static(
                str(prepared.path), str(out), None, quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                activation_type=qtypes[act], weight_type=qtypes[wt],
                nodes_to_exclude=sorted(set(exclude)), nodes_to_quantize=list(only) if only else None,
                calibrate_method=cal_method, extra_options=extra, calibration_cache_path=str(ranges),
            )
        return out.read_bytes()
    except Exception as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise UnsupportedError(
            f"onnxruntime quantization failed ({type(exc).__name__}: {first})", path=prepared.path.name,
            hint="exclude the failing node/op type with --exclude, or report the model",
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            out.unlink()


def check_loads(model_bytes: bytes, *, threads: int | None = None, what: str = "quantized model") -> Any:
    """Every produced model is loaded by onnxruntime before it counts; returns the session."""
    from edgekit.onnxio import ort_session

    try:
        onnx.checker.check_model(onnx.ModelProto.FromString(model_bytes))
        return ort_session(model_bytes, threads=threads)
    except Exception as exc:
        raise UnsupportedError(
            f"the {what} does not load in onnxruntime ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            hint="nothing was written; try --per-tensor or --exclude the op type named above",
        ) from None


def resolve_excludes(model: onnx.ModelProto, items: Iterable[str]) -> list[str]:
    """Node names and op types (`Conv`) -> node names; unknown entries are a BadInputError listing examples."""
    names = {n.name for n in model.graph.node}
    by_type: dict[str, list[str]] = {}
    for node in model.graph.node:
        by_type.setdefault(node.op_type, []).append(node.name)
    out: list[str] = []
    for item in items:
        if item in names:
            out.append(item)
        elif item in by_type:
            out.extend(by_type[item])
        else:
            examples = ", ".join(list(names)[:5])
            raise BadInputError(f"--exclude {item!r} matches no node name or op type of the model", path="--exclude",
                                hint=f"op types: {', '.join(sorted(by_type))}; names e.g. {examples}")
    return sorted(set(out))


# Ops that only move or select values: quantizing only these is not an INT8 model.
DATA_MOVEMENT_OPS = frozenset({
    "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "MaxPool", "Concat", "Split", "Slice", "Gather",
    "Resize", "Pad", "Identity", "Relu", "Clip", "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "ArgMax",
})


def has_int8_compute(nodes: Iterable[tuple[str, str]]) -> bool:
    """True when at least one arithmetic node (Conv, Gemm, MatMul, Add, pooling, ...) runs in INT8."""
    return any(op not in DATA_MOVEMENT_OPS for _, op in nodes)


def quantized_nodes(model_bytes: bytes) -> list[tuple[str, str]]:
    """(name, op_type) of the nodes that run in INT8: quantized weights, or quantized input and output.

    A float node downstream of a quantized tensor is fed by a DequantizeLinear too, so that alone
    does not count.
    """
    model = onnx.ModelProto.FromString(model_bytes)
    inits = {i.name for i in model.graph.initializer}
    dq_out, dq_weight_out = set(), set()
    q_inputs = set()
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            dq_out.update(n.output)
            if n.input[0] in inits:
                dq_weight_out.update(n.output)
        elif n.op_type == "QuantizeLinear":
            q_inputs.add(n.input[0])
    found = []
    for node in model.graph.node:
        if node.op_type in QUANT_OPS_QDQ:
            continue
        weights = any(i in dq_weight_out for i in node.input)
        through = any(i in dq_out for i in node.input) and any(o in q_inputs for o in node.output)
        if weights or through:
            found.append((node.name, node.op_type))
    return found
