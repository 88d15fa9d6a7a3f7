"""Tiny ONNX models for adapter and compile tests, built in code (nothing checked in)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_conv_model(path: Path, *, channels: int = 4, size: int = 8, seed: int = 0, dynamic_batch: bool = False,
                    opset: int = 17) -> Path:
    """Conv → Relu → GlobalAveragePool → Flatten → Gemm: a 5-node classifier, [N,3,size,size] → [N,10]."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(channels).astype(np.float32) * 0.1
    fc = rng.standard_normal((10, channels)).astype(np.float32) * 0.5
    fcb = rng.standard_normal(10).astype(np.float32) * 0.1
    batch: int | str = "batch" if dynamic_batch else 1
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fcb, "fcb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgekit-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def qdq_model(float_model: Path, path: Path, *, samples: int = 8, seed: int = 0) -> Path:
    """A QDQ int8 version of `float_model`, calibrated on seeded random data (onnxruntime quantize_static)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from edgekit.onnxio import input_specs, load_onnx, random_inputs

    specs = input_specs(load_onnx(float_model))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([random_inputs(specs, seed=seed + i) for i in range(samples)])

        def get_next(self):  # ORT CalibrationDataReader protocol
            return next(self._it, None)

    quantize_static(str(float_model), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False)
    return path


PLUGIN_SRC = Path(__file__).parent / "plugin_pkg"


def install_toy_plugin(dest: Path) -> Path:
    """Install tests/plugin_pkg into `dest` (a folder to put on sys.path / PYTHONPATH), offline.

    A real `pip install --no-deps --no-build-isolation --no-index --target` (hatchling from this venv);
    if pip cannot build here, the package and its dist-info (with the entry point) are written by hand,
    which is exactly what importlib.metadata reads.
    """
    import shutil
    import subprocess
    import sys

    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "--target", str(dest), str(PLUGIN_SRC)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode == 0 and (dest / "edgekit_toyaccel").is_dir():
        for build_dir in ("build", "dist"):
            shutil.rmtree(PLUGIN_SRC / build_dir, ignore_errors=True)
        return dest
    shutil.copytree(PLUGIN_SRC / "edgekit_toyaccel", dest / "edgekit_toyaccel", dirs_exist_ok=True)
    info = dest / "edgekit_toyaccel-0.1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgekit-toyaccel\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[edgekit.targets]\ntoyaccel = edgekit_toyaccel:ToyAccelAdapter\n")
    return dest


class WrongAdapter:
    """Built lazily (imports edgekit) by `wrong_adapter_class`: compiles fine, computes the wrong answer."""


def wrong_adapter_class(offset: float = 1.0, name: str = "wrong", crash: bool = False):
    from collections.abc import Mapping

    from edgekit.adapters.base import Availability, Capabilities, CompiledModel, Runner, TargetAdapter
    from edgekit.onnxio import ort_session

    class _Runner(Runner):
        def __init__(self, path, specs, names):
            super().__init__(specs, names)
            self._session = ort_session(path)

        def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            if crash:
                raise RuntimeError("device fell over")
            outs = self._session.run(self.output_names, dict(inputs))
            return {n: o + np.float32(offset) for n, o in zip(self.output_names, outs, strict=True)}

    class _Wrong(TargetAdapter):
        description = "test adapter whose outputs are off by a constant"

        def capabilities(self, target):
            return Capabilities(("fp32", "int8"), True, Availability.yes("test"), Availability.yes("test"))

        def compile(self, model, target, options, out_dir):
            return CompiledModel(Path(out_dir), self.name, target.name, options.precision)

        def load(self, compiled, *, threads=None):
            return _Runner(compiled.source_path, compiled.input_specs(), compiled.output_names())

    _Wrong.name = name
    return _Wrong
