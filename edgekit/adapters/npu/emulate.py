"""Run a model with an NPU's numeric scheme on the host (onnxruntime): provenance `emulated`.

fp16 (`force_fp16`-style): every float weight and every float activation is rounded through float16
(Cast to fp16 and back after each node), while arithmetic stays fp32, as on NPUs that accumulate in
fp32. INT8: fake-quant QDQ models made by the quantize stage's QDQ steps (edgekit.qdq) with the vendor's scheme
(Ascend AMCT-style: asymmetric activations, per-channel weights; MagicMind-style: symmetric
activations, per-tensor or per-axis weights). Emulation reproduces rounding, not the vendor kernels, so
accuracy figures are labelled `emulated`, never measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.onnxio import input_specs, load_onnx, random_inputs
from edgekit.qdq import QdqSettings, calibrate, check_loads, prepare_model, quantize_qdq

_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE)
CALIB_SAMPLES = 64  # calibration samples for the emulated INT8 model (ranges settle long before this)


@dataclass(frozen=True)
class EmulationScheme:
    """The vendor numeric scheme we reproduce."""

    precision: str  # fp16 | int8
    style: str  # "ATC force_fp16", "AMCT-style", "MagicMind-style"
    symmetric_activations: bool = False
    per_channel_weights: bool = True

    def describe(self) -> str:
        if self.precision == "fp16":
            return f"{self.style}: weights and activations rounded through float16, fp32 accumulation"
        acts = "symmetric" if self.symmetric_activations else "asymmetric"
        weights = "per-channel" if self.per_channel_weights else "per-tensor"
        return f"{self.style}: INT8 {acts} activations, {weights} symmetric weights (QDQ fake-quant)"

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "style": self.style, "symmetric_activations": self.symmetric_activations,
                "per_channel_weights": self.per_channel_weights, "description": self.describe()}


def scheme_for(compiler: str, precision: str, *, weight_granularity: str = "per_axis") -> EmulationScheme:
    """The scheme a vendor compiler applies for a requested precision (fp32/mixed emulate as fp16)."""
    if precision == "int8":
        if compiler == "atc":
            return EmulationScheme("int8", "AMCT-style", symmetric_activations=False, per_channel_weights=True)
        return EmulationScheme("int8", "MagicMind-style", symmetric_activations=True,
                               per_channel_weights=weight_granularity == "per_axis")
    if compiler == "atc":
        return EmulationScheme("fp16", "ATC force_fp16")
    return EmulationScheme("fp16", "MagicMind force_float16")


def fp16_roundtrip_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose float weights are fp16-rounded and whose float activations pass through fp16."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    for init in graph.initializer:
        if init.data_type in _FLOAT_TYPES:
            array = numpy_helper.to_array(init)
            rounded = array.astype(np.float16).astype(array.dtype)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    float_values = {
        v.name for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
        if v.type.tensor_type.elem_type == TensorProto.FLOAT
    }
    outputs = {o.name for o in graph.output}
    new_nodes: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    for node in graph.node:
        node = onnx.NodeProto.FromString(node.SerializeToString())
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        new_nodes.append(node)
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out not in float_values:
                continue
            half, back = f"{out}__fp16", f"{out}__fp16rt"
            new_nodes.append(helper.make_node("Cast", [out], [half], to=TensorProto.FLOAT16, name=f"{out}__to_fp16"))
            new_nodes.append(helper.make_node("Cast", [half], [back], to=TensorProto.FLOAT, name=f"{out}__to_fp32"))
            rename[out] = back
    # graph outputs keep their names: route the rounded value into an Identity named as the output
    final: list[onnx.NodeProto] = []
    for node in new_nodes:
        final.append(node)
    for out in outputs:
        if out in rename:
            for node in final:
                for i, name in enumerate(node.output):
                    if name == out:
                        node.output[i] = f"{out}__raw"
                for i, name in enumerate(node.input):
                    if name == out:
                        node.input[i] = f"{out}__raw"
            final.append(helper.make_node("Identity", [rename[out]], [out], name=f"{out}__emulated"))
    del graph.node[:]
    graph.node.extend(final)
    return model


def _synthetic_reader(model: onnx.ModelProto, count: int, shapes: Mapping[str, tuple[int, ...]] | None) -> list[dict]:
    specs = input_specs(model)
    dims: dict[str, int] = {}
    for spec in specs:
        if shapes and spec.name in shapes:
            for axis, dim in spec.dynamic_dims.items():
                dims[dim] = int(shapes[spec.name][axis])
    return [random_inputs(specs, seed=i, dims=dims) for i in range(count)]


def quantize_like_vendor(model_path: Path, out_path: Path, scheme: EmulationScheme, calibration: Any,
                         input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """INT8 QDQ model with the vendor scheme, made by the same ORT QDQ steps as the quantize stage (edgekit.qdq).

    `calibration` is a CalibrationReader (from the compile stage) or None: then seeded synthetic data is
    used and flagged (activation ranges from noise do not reflect real inputs). At most CALIB_SAMPLES are read.
    """
    synthetic = calibration is None or bool(getattr(calibration, "synthetic", False))
    model = load_onnx(model_path)
    source = calibration if calibration is not None else _synthetic_reader(model, CALIB_SAMPLES, input_shapes)
    seen = [0]

    def samples() -> Iterator[dict[str, np.ndarray]]:
        for sample in islice(source, CALIB_SAMPLES):
            seen[0] += 1
            yield sample

    settings = QdqSettings("minmax", scheme.per_channel_weights, scheme.symmetric_activations)
    with tempfile.TemporaryDirectory(prefix="edgekit-emulate-") as tmp:
        work = Path(tmp)
        prepared = prepare_model(model, work, per_channel=scheme.per_channel_weights, source=model_path)
        ranges = calibrate(prepared, samples(), work, method="minmax", symmetric=scheme.symmetric_activations)
        data = quantize_qdq(prepared, ranges, settings, workdir=work)
    check_loads(data, what="emulated INT8 model")
    out_path.write_bytes(data)
    return {"quantizer": "edgekit.qdq (onnxruntime QDQ, minmax)", "calibration_samples": seen[0],
            "synthetic_calibration": synthetic}


def emulate(model_path: Path, out_path: Path, scheme: EmulationScheme, *,
            calibration: Any = None,
            input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """Write the emulated model to `out_path`; returns what was done (for the manifest)."""
    if scheme.precision == "int8":
        info = quantize_like_vendor(model_path, out_path, scheme, calibration, input_shapes)
    else:
        onnx.save(fp16_roundtrip_model(onnx.load(str(model_path))), str(out_path))
        info = {}
    return {"scheme": scheme.to_json(), "model": out_path.name, **info}
