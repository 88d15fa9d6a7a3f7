"""Run a model with an NPU's numeric scheme on the host (onnxruntime): provenance `emulated`.

fp16 (`force_fp16`-style): every float weight and every float activation is rounded through float16
(Cast to fp16 and back after each node), while arithmetic stays fp32, as on NPUs that accumulate in
fp32. INT8: fake-quant QDQ models made by the quantize stage with the vendor's scheme
(Ascend AMCT-style: asymmetric activations, per-channel weights; MagicMind-style: symmetric
activations, per-tensor or per-axis weights). Emulation reproduces rounding, not the vendor kernels, so
accuracy figures are labelled `emulated`, never measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgekit.errors import BadInputError

_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE)


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
    from edgekit.onnxio import input_specs, random_inputs

    specs = input_specs(model)
    dims: dict[str, int] = {}
    for spec in specs:
        if shapes and spec.name in shapes:
            for axis, dim in spec.dynamic_dims.items():
                dims[dim] = int(shapes[spec.name][axis])
    return [random_inputs(specs, seed=i, dims=dims) for i in range(count)]


def quantize_like_vendor(model_path: Path, out_path: Path, scheme: EmulationScheme, calibration: Any,
                         input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """INT8 QDQ model with the vendor scheme, made by the quantize stage's `quantize_onnx`.

    `calibration` is a CalibrationReader (from the compile stage) or None: then seeded synthetic data is
    used and flagged (activation ranges from noise do not reflect real inputs).
    """
    synthetic = calibration is None or bool(getattr(calibration, "synthetic", False))
    try:
        from edgekit.stages.quantize import quantize_onnx
    except ImportError:  # minimal install without the quantize stage: same scheme through ORT directly
        quantize_onnx = None
    if quantize_onnx is not None:
        source = calibration if calibration is not None else "synthetic"
        quantized = quantize_onnx(model_path, source, method="minmax", per_channel=scheme.per_channel_weights,
                                  symmetric_activations=scheme.symmetric_activations, calib_samples=64)
        onnx.save(quantized, str(out_path))
        used = "edgekit.stages.quantize.quantize_onnx"
        samples = len(calibration) if calibration is not None and hasattr(calibration, "__len__") else None
    else:
        calib = list(calibration) if calibration is not None else _synthetic_reader(
            onnx.load(str(model_path)), 8, input_shapes)
        if not calib:
            raise BadInputError("calibration data is empty", path="--calib")
        _ort_quantize(model_path, out_path, calib, scheme)
        used = "onnxruntime.quantization.quantize_static (quantize stage not installed)"
        samples = len(calib)
    return {"quantizer": used, "calibration_samples": samples, "synthetic_calibration": synthetic}


def _ort_quantize(model_path: Path, out_path: Path, calib: list[dict[str, np.ndarray]],
                  scheme: EmulationScheme) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgekit.onnxio import opset_version

    model = onnx.load(str(model_path))
    if scheme.per_channel_weights and opset_version(model) < 13:
        model = onnx.version_converter.convert_version(model, 13)  # per-channel DQ axis needs opset >= 13
    src = out_path.with_suffix(".fp32.tmp.onnx")
    onnx.save(model, str(src))

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    try:
        quantize_static(
            str(src), str(out_path), _Reader(), quant_format=QuantFormat.QDQ, per_channel=scheme.per_channel_weights,
            activation_type=QuantType.QInt8 if scheme.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": scheme.symmetric_activations, "WeightSymmetric": True},
        )
    finally:
        src.unlink(missing_ok=True)


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


def emulated_accuracy(reference: Path, emulated: Path, feeds_list: list[dict[str, np.ndarray]],
                      precision: str) -> dict[str, Any]:
    """Emulated model vs the FP32 reference on the same inputs (provenance `emulated`)."""
    from edgekit.checks.numerics import compare_outputs, tolerance_for
    from edgekit.onnxio import ort_session

    ref_sess, emu_sess = ort_session(reference), ort_session(emulated)
    names = [o.name for o in ref_sess.get_outputs()]
    worst_cos, worst_sqnr, max_abs = 1.0, float("inf"), 0.0
    atol, rtol = tolerance_for(precision)
    passed = True
    for feeds in feeds_list:
        ref = dict(zip(names, ref_sess.run(names, feeds), strict=True))
        got = dict(zip(names, emu_sess.run(names, feeds), strict=True))
        cmp = compare_outputs(ref, got, atol=atol, rtol=rtol)
        worst_cos = min(worst_cos, cmp.min_cosine)
        worst_sqnr = min(worst_sqnr, cmp.min_sqnr_db)
        max_abs = max(max_abs, cmp.max_abs)
        passed = passed and cmp.passed
    return {"provenance": "emulated", "samples": len(feeds_list), "min_cosine": worst_cos,
            "min_sqnr_db": worst_sqnr, "max_abs": max_abs, "within_tolerance": passed,
            "tolerance": {"atol": atol, "rtol": rtol}}
