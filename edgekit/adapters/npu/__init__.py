"""Shared NPU logic for vendor adapters we cannot run here (Ascend ATC, Cambricon MagicMind).

profile: the `[npu]` section of a target profile, every figure with its source or marked assumed.
rules: per-ONNX-op verdicts (npu / cpu-fallback / unsupported / unknown), each naming its source.
partition: NPU subgraphs, CPU fallbacks, MAC share on the NPU, host<->device copies.
emulate: the vendor's numeric scheme (fp16, INT8) reproduced on the host with onnxruntime.
roofline: a labelled latency estimate. vendor_output: parsers for ais_bench / mm_run output.
Nothing here imports torch.
"""
