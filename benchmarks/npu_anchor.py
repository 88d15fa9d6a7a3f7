"""Compare edgekit's Ascend 310 roofline estimate with a published measurement.

MMDeploy's benchmark table (docs/en/03-benchmark/benchmark.md) lists ResNet (mmpretrain
resnet50_8xb32_in1k, 224x224, batch 1) on Ascend310 at 2.49 ms. This script builds a ResNet-50 with the
same layer shapes in plain ONNX (random weights: latency does not depend on values), runs
`AscendAdapter.estimate` and prints the gap. Run: `python benchmarks/npu_anchor.py`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def resnet50_onnx(seed: int = 0) -> onnx.ModelProto:
    """ResNet-50 v1.5 (BN folded into conv, as torch.onnx exports in eval mode)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = [0]

    def conv(x: str, cin: int, cout: int, k: int, s: int, relu: bool = True) -> str:
        count[0] += 1
        i = count[0]
        w = numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * 0.01).astype(np.float32), f"w{i}")
        b = numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")
        inits.extend([w, b])
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}",
                                      kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4))
        if not relu:
            return f"c{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        return f"r{i}"

    x = conv("input", 3, 64, 7, 2)
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[1, 1, 1, 1]))
    x, cin = "pool", 64
    for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
        for b in range(blocks):
            stride = 2 if (b == 0 and stage > 0) else 1
            y = conv(x, cin, width, 1, 1)
            y = conv(y, width, width, 3, stride)
            y = conv(y, width, width * 4, 1, 1, relu=False)
            short = conv(x, cin, width * 4, 1, stride, relu=False) if b == 0 else x
            name = f"add{stage}_{b}"
            nodes.append(helper.make_node("Add", [y, short], [name], name=name))
            nodes.append(helper.make_node("Relu", [name], [name + "_r"], name=name + "_relu"))
            x, cin = name + "_r", width * 4
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits.append(numpy_helper.from_array((rng.standard_normal((1000, 2048)) * 0.01).astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "resnet50", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                 [1, 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def main() -> int:
    from edgekit.adapters.ascend import AscendAdapter
    from edgekit.adapters.npu.roofline import ANCHORS
    from edgekit.targets import get_profile

    anchor = ANCHORS["ascend310"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet50.onnx"
        onnx.save(resnet50_onnx(), str(path))
        estimate = AscendAdapter().estimate(path, get_profile("ascend310"))
    macs = sum(n["macs"] for n in estimate.per_node)
    gap = estimate.latency_ms / anchor["latency_ms"]
    print(f"ResNet-50 224, {macs / 1e9:.2f} GMACs")
    print(f"edgekit estimate (provenance {estimate.provenance.value}): {estimate.latency_ms:.2f} ms")
    print(f"published: {anchor['latency_ms']} ms ({anchor['source']})")
    print(f"estimate / published = {gap:.2f}x")
    for line in estimate.assumptions:
        print(f"  - {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
