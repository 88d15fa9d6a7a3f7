"""Emulated NPU accuracy on real data: LeNet-5 trained on scikit-learn digits, compiled for ascend310 and
mlu220 at fp16 and int8 (calibrated on 100 train images), top-1 on the 360-image test split.

Every accuracy printed is provenance `emulated` (vendor numerics reproduced with onnxruntime), never
measured on an NPU. Run: `python benchmarks/npu_emulation_digits.py` (~1 min on 2 cores).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    import edgekit
    from edgekit.artifact import to_jsonable
    from edgekit.onnxio import ort_session
    from edgekit.zoo.digits import export_onnx, load_digits_dataset, trained_lenet5, write_calibration_and_eval

    x_test, y_test = load_digits_dataset("test")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = export_onnx(trained_lenet5(), work / "lenet5_digits.onnx")
        calib, _ = write_calibration_and_eval(work / "data", calib_samples=100, fmt="npy")

        def top1(path: Path) -> float:
            session = ort_session(path)
            logits = np.concatenate([session.run(None, {"input": x[None]})[0] for x in x_test])
            return float(np.mean(logits.argmax(-1) == y_test))

        print(f"fp32 onnxruntime reference: top-1 {top1(model):.4f} (measured on this host)")
        for target, backend in (("ascend310", "ascend-atc"), ("mlu220", "magicmind")):
            for precision in ("fp16", "int8"):
                result = edgekit.compile(model, output=work / f"{target}-{precision}", target=target,
                                         backend=backend, precision=precision,
                                         calib=str(calib) if precision == "int8" else None)
                info = to_jsonable(result.bundle.manifest.info)
                emulated = result.bundle.path / info["emulation"]["path"]
                print(f"{target} {precision} ({info['emulation']['scheme'].get('style', '')}): top-1 "
                      f"{top1(emulated):.4f} [emulated]; cosine vs fp32 {info['verification']['min_cosine']:.6f}; "
                      f"estimate {info['estimate']['latency_ms']:.4f} ms [estimated]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
