"""Reading ONNX files and running the reference (onnxruntime CPU) with clear errors.

Every stage that touches an .onnx goes through `load_onnx`, so a missing, truncated or non-ONNX
file gives the same one-line error everywhere.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from edgekit.errors import BadInputError, EdgekitError, raise_if_interrupted
from edgekit.specs import DEFAULT_DTYPE, DTYPES, TensorSpec

if TYPE_CHECKING:
    import onnxruntime

_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
}
QUANT_OPS_QDQ = {"QuantizeLinear", "DequantizeLinear"}
QUANT_OPS_OPERATOR = {
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QGemm",
}
QUANT_OPS_INTEGER = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}


def load_onnx(path: str | Path, *, load_weights: bool = True, check: bool = True) -> onnx.ModelProto:
    """Load and structurally check an ONNX file, or raise BadInputError naming it.

    `check=False` skips onnx.checker (~65 ms for ResNet-18): only where the caller reads the graph's
    inputs and nothing runs the model from this proto (a bundle's source.onnx at load).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError("no such file", path=path)
    if path.is_dir():
        raise BadInputError("is a directory, expected an .onnx file", path=path)
    if path.stat().st_size == 0:
        raise BadInputError("file is empty, not an ONNX model", path=path)
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # protobuf raises DecodeError, others raise OSError/ValueError
        reason = type(exc).__name__
        missing = _missing_external_data(path) if load_weights else []
        if missing:  # the .onnx itself is fine: its weights file is not beside it
            raise BadInputError(f"external data file(s) not found: {', '.join(missing)}", path=path,
                                hint="keep the .onnx and its external data files in the same folder") from None
        raise BadInputError(f"not a valid ONNX file ({reason}: truncated or not a model)", path=path) from None
    if not model.graph.node and not model.graph.output:
        raise BadInputError("parsed as ONNX but holds no graph (not a model file?)", path=path)
    if not check:
        return model
    try:
        onnx.checker.check_model(model if load_weights else str(path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"ONNX checker rejected the model: {first}", path=path) from None
    return model


def _missing_external_data(path: Path) -> list[str]:
    """Locations of external-data files the model names that do not exist beside it."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    missing: set[str] = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location and not (path.parent / location).is_file():
                missing.add(location)
    return sorted(missing)


def _spec_from_value_info(value: onnx.ValueInfoProto) -> TensorSpec:
    ttype = value.type.tensor_type
    dims: list[int | str] = []
    for i, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or f"{value.name}_dim{i}")
    return TensorSpec(value.name, tuple(dims), _ONNX_DTYPES.get(ttype.elem_type, "float32"))


def input_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Graph inputs that are real inputs (initializers listed as inputs are weights, not inputs)."""
    weights = {init.name for init in model.graph.initializer}
    return [_spec_from_value_info(v) for v in model.graph.input if v.name not in weights]


def output_specs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [_spec_from_value_info(v) for v in model.graph.output]


def opset_version(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter(node.op_type for node in model.graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class QuantizationInfo:
    """How (if at all) a model is already quantized."""

    format: str | None  # "QDQ", "QOperator", "Integer" or None
    ops: dict[str, int]

    @property
    def quantized(self) -> bool:
        return self.format is not None


def quantization_info(model: onnx.ModelProto) -> QuantizationInfo:
    hist = op_histogram(model)
    found = {op: n for op, n in hist.items() if op in QUANT_OPS_QDQ | QUANT_OPS_OPERATOR | QUANT_OPS_INTEGER}
    if any(op in QUANT_OPS_OPERATOR for op in found):
        fmt = "QOperator"
    elif any(op in QUANT_OPS_INTEGER for op in found):
        fmt = "Integer"
    elif "DequantizeLinear" in found:
        fmt = "QDQ"
    else:
        fmt = None
    return QuantizationInfo(fmt, found)


def random_inputs(
    specs: list[TensorSpec], *, seed: int = 0, dims: Mapping[str, int] | None = None, strict: bool = False,
    argument: str = "--input-shape",
) -> dict[str, np.ndarray]:
    """Deterministic random inputs for the given specs (dynamic dims from `dims`).

    With `strict` (every latency figure), a dynamic dim `dims` does not size is an error naming
    `argument`; without it (numerics checks only) such a dim is 1.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BadInputError(f"seed must be an integer >= 0, got {seed!r}", path="--seed")
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    if strict:
        require_static([resolve_dims(s, dims) for s in specs], argument=argument)
    shapes = [spec.concrete_shape(dict(dims or {})) for spec in specs]
    for spec, shape in zip(specs, shapes, strict=True):  # every size checked before anything is allocated
        check_input_bytes(spec, shape, argument=argument)
    for spec, shape in zip(specs, shapes, strict=True):
        dtype = spec.numpy_dtype()
        if np.issubdtype(dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def sample_feeds(
    specs: list[TensorSpec], reader: Any = None, *, count: int, seed: int, random_count: int | None = None
) -> tuple[list[dict[str, np.ndarray]], str]:
    """Up to `count` samples from a calibration reader (in-distribution), else seeded random inputs.

    Returns the feeds and a short description of where they came from, so every verification
    says whether it ran on real, synthetic or random data.
    """
    if reader is not None:
        feeds: list[dict[str, np.ndarray]] = []
        for sample in reader:
            feeds.append({k: np.asarray(v) for k, v in sample.items()})
            if len(feeds) >= count:
                break
        if feeds:
            kind = "synthetic" if getattr(reader, "synthetic", False) else "real"
            return feeds, f"{len(feeds)} calibration sample(s) ({kind})"
    n = count if random_count is None else random_count
    return [random_inputs(specs, seed=seed + i) for i in range(n)], f"{n} seeded random sample(s) (seed {seed})"


def ort_session(
    model: str | Path | bytes,
    *,
    threads: int | None = None,
    providers: list[str] | None = None,
    optimization: str = "all",
    optimized_model_path: str | Path | None = None,
    profile_prefix: str | Path | None = None,
) -> onnxruntime.InferenceSession:
    """An onnxruntime session with explicit threads, so runs are comparable across backends.

    `profile_prefix`: ORT's profiler on, its trace written there (`session.end_profiling()` names the file).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers or ["CPUExecutionProvider"])


def run_reference(
    model: str | Path | bytes, inputs: Mapping[str, np.ndarray], **session_kw: Any
) -> dict[str, np.ndarray]:
    """Run the ONNX reference (onnxruntime CPU) and return outputs by name."""
    session = ort_session(model, **session_kw)
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, dict(inputs))
    return dict(zip(names, results, strict=True))


def is_ort_error(exc: BaseException) -> bool:
    """An exception onnxruntime raised about a model (Fail, InvalidArgument, InvalidGraph, NotImplemented, ...)."""
    return type(exc).__module__.startswith("onnxruntime.")


@contextlib.contextmanager
def ort_errors(model: str | Path, *, hint: str = "check it with `edgekit inspect`; it must run in onnxruntime"
               ) -> Iterator[None]:
    """onnxruntime refusing the user's own model becomes one line of bad input (exit 2) naming the model.

    Why: ORT raises its own types for a model it cannot run (an op of an unknown domain, opset 99, a
    zero-size dim, no outputs, string inputs); every stage that runs the reference maps them here, the
    same way. Anything else keeps its traceback (a bug), and Ctrl-C stays an interrupt.
    """
    try:
        yield
    except EdgekitError:
        raise
    except Exception as exc:
        raise_if_interrupted(exc)
        if not is_ort_error(exc):
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise BadInputError(f"onnxruntime cannot run the model ({first[:200]})", path=model, hint=hint) from None


def check_runs(model: str | Path | bytes, feeds: Mapping[str, np.ndarray], *, path: str | Path,
               threads: int | None = None) -> None:
    """Run `model` once on `feeds` in onnxruntime, or BadInputError naming `path` (see `ort_errors`)."""
    with ort_errors(path):
        run_reference(model, feeds, threads=threads)


# ---------------------------------------------------------------------------------------------
# Input dims: the one fixer (compile, simplify, inspect, recipes) and the one "no size given" check

MAX_INPUT_BYTES = 4 * 2**30  # one input larger than this is a typo (an extra digit), not a model input
MAX_DIM = 1 << 24


def resolve_dims(spec: TensorSpec, dims: Mapping[str, int] | None) -> TensorSpec:
    """`spec` with the dynamic dims that `dims` names (by dim name) set; the others stay dynamic."""
    dims = dict(dims or {})
    shape = tuple(dims.get(str(d), d) if not (isinstance(d, int) and d >= 0) else d for d in spec.shape)
    return TensorSpec(spec.name, shape, spec.dtype, spec.layout)


def require_static(specs: Sequence[TensorSpec], *, argument: str = "--input-shape") -> None:
    """Refuse (exit 2) any dynamic dim left: a figure taken at a size nobody chose is no figure.

    The message names every such dim and shows the flag (or recipe key) with a full example.
    """
    missing: list[str] = []
    examples: list[str] = []
    for spec in specs:
        dynamic = spec.dynamic_dims
        if not dynamic:
            continue
        missing += [f"input {spec.name!r} dim {axis} ({name!r})" for axis, name in dynamic.items()]
        example = ",".join(f"<{dynamic[i]}>" if i in dynamic else str(d) for i, d in enumerate(spec.shape))
        examples.append(f"{spec.name}:{example}")
    if missing:
        raise BadInputError(f"{'; '.join(missing)} {'has' if len(missing) == 1 else 'have'} no size",
                            path=argument, hint=f"give the size to measure at: {argument} {' '.join(examples)}")


def check_input_dims(spec: TensorSpec, current: TensorSpec, *, argument: str) -> None:
    """Rank, positive and bounded dims, fixed dims unchanged, and at most MAX_INPUT_BYTES per input."""
    if len(spec.shape) != len(current.shape):
        raise BadInputError(f"input {spec.name!r} has rank {len(current.shape)}, got {len(spec.shape)} dims ({spec})",
                            path=argument, hint=f"the model declares {current}")
    for axis, (old, new) in enumerate(zip(current.shape, spec.shape, strict=True)):
        if not isinstance(new, int):
            continue
        if new < 1 or new > MAX_DIM:
            raise BadInputError(f"input {spec.name!r} dim {axis} is {new}", path=argument,
                                hint=f"every dim must be between 1 and {MAX_DIM}")
        if isinstance(old, int) and old >= 0 and old != new:
            raise BadInputError(f"input {spec.name!r} dim {axis} is fixed at {old} in the model, cannot set {new}",
                                path=argument, hint="re-export the model at that shape")
    if spec.dtype != current.dtype and spec.dtype != DEFAULT_DTYPE:
        raise BadInputError(f"input {spec.name!r} is {current.dtype} in the model, cannot give it as {spec.dtype}",
                            path=argument, hint=f"leave the dtype out or give {current.dtype}: the model declares "
                                                f"{current}")
    check_input_bytes(TensorSpec(spec.name, spec.shape, current.dtype), [d for d in spec.shape if isinstance(d, int)],
                      argument=argument)


def check_input_bytes(spec: TensorSpec, shape: Sequence[int], *, argument: str) -> None:
    """Refuse an input of `shape` over MAX_INPUT_BYTES (or a dim out of 1..MAX_DIM) before anything is allocated.

    Why: a model (or `-s`) declaring 1x3x100000x100000 would otherwise be allocated by numpy and take the
    host down; sizes come from files and flags, so they are bounded like any other untrusted number.
    """
    for axis, dim in enumerate(shape):
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or not 1 <= dim <= MAX_DIM:
            raise BadInputError(f"input {spec.name!r} dim {axis} is {dim!r}", path=argument,
                                hint=f"every dim must be an integer between 1 and {MAX_DIM}")
    itemsize = np.dtype(_NUMPY_ITEMSIZE.get(spec.dtype, spec.dtype if spec.dtype in DTYPES else "float32")).itemsize
    total = math.prod(int(d) for d in shape) * itemsize
    if total > MAX_INPUT_BYTES:
        shown = TensorSpec(spec.name, tuple(int(d) for d in shape), spec.dtype)
        raise BadInputError(f"input {spec.name!r} at {shown} would be {total / 2**30:.1f} GiB",
                            path=argument,
                            hint=f"one input is limited to {MAX_INPUT_BYTES // 2**30} GiB: check the dims for a typo")


_NUMPY_ITEMSIZE = {"bfloat16": "float16"}  # same width, and numpy has no bfloat16 without ml_dtypes


def fix_input_dims(
    model: onnx.ModelProto, specs: Sequence[TensorSpec], *, argument: str = "--input-shape", fill: int | None = None
) -> onnx.ModelProto:
    """A copy of `model` whose graph inputs take their dims from `specs` (by input name).

    A spec dim given as a name leaves that dim dynamic. `fill` (inspect's cost estimate only) sets
    every dim still dynamic afterwards; figures never use it (see `require_static`). Unknown input
    names, a wrong rank, a changed fixed dim, a zero or huge dim are bad input naming `argument`.
    """
    current = {s.name: s for s in input_specs(model)}
    by_name: dict[str, TensorSpec] = {}
    for spec in specs:
        if spec.name not in current:
            raise BadInputError(f"the model has no input {spec.name!r}", path=argument,
                                hint="its inputs: " + " ".join(str(s) for s in current.values()))
        if spec.name in by_name:
            raise BadInputError(f"input {spec.name!r} given twice", path=argument)
        check_input_dims(spec, current[spec.name], argument=argument)
        by_name[spec.name] = spec
    if not by_name and fill is None:
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name not in current:
            continue  # an initializer listed as an input
        spec = by_name.get(value.name)
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            new = spec.shape[axis] if spec is not None else None
            if isinstance(new, int):
                dim.Clear()
                dim.dim_value = new
            elif fill is not None and not (dim.HasField("dim_value") and dim.dim_value > 0):
                dim.Clear()
                dim.dim_value = fill
    # stale intermediate shapes (e.g. with a symbolic batch) would stop inference from refining them
    del fixed.graph.value_info[:]
    for out in fixed.graph.output:
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    with contextlib.suppress(Exception):  # inference is a refinement; an op it does not know is no error
        fixed = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    return fixed


def fix_input_dims_file(
    source: str | Path, specs: Sequence[TensorSpec], output: str | Path, *, argument: str = "--input-shape"
) -> Path:
    """`fix_input_dims` from file to file (weights kept beside the model when it is over protobuf's 2 GiB)."""
    model = fix_input_dims(load_onnx(source), specs, argument=argument)
    output = Path(output)
    large = model.ByteSize() > 2**31 - 2**20
    onnx.save(model, str(output), save_as_external_data=large,
              location=f"{output.name}.data" if large else None)
    return output
