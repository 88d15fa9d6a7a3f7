"""The `[npu]` section of a target profile as typed data.

Every peak figure carries either a public `source` or `assumed = true` with a `basis`, so a roofline
estimate can list exactly what it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgekit.errors import BadInputError
from edgekit.targets import TargetProfile


@dataclass(frozen=True)
class SourcedFigure:
    """A published (or assumed) number: `source` when published, `basis` when assumed."""

    value: float
    unit: str
    source: str = ""
    assumed: bool = False
    basis: str = ""

    def describe(self) -> str:
        label = f"{self.value:g} {self.unit}"
        if self.assumed:
            return f"{label} (assumed: {self.basis or 'no public figure'})"
        return f"{label} (source: {self.source})"

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "source": self.source, "assumed": self.assumed,
                "basis": self.basis}


@dataclass(frozen=True)
class Efficiency:
    compute: float = 0.5
    memory: float = 0.7
    cpu_fallback_ms: float = 0.5
    copy_overhead_ms: float = 0.05
    basis: str = "assumed"


@dataclass(frozen=True)
class NpuProfile:
    """What the NPU adapters need to know about one device."""

    target: str
    vendor: str
    chip: str
    compiler: str
    soc_version: str  # ATC --soc_version, or MagicMind arch (e.g. mtp_220)
    rules: str
    layout: str
    precisions: tuple[str, ...]
    peak_int8: SourcedFigure
    peak_fp16: SourcedFigure
    bandwidth: SourcedFigure
    host_link: SourcedFigure
    efficiency: Efficiency
    dynamic_shapes: tuple[str, ...] = ()
    dynamic_shapes_source: str = ""
    default_precision_mode: str = ""
    runtime_modules: tuple[str, ...] = ()
    rule_overrides: dict[str, dict[str, Any]] | None = None

    def peak_ops_per_s(self, precision: str) -> tuple[float, SourcedFigure]:
        """Peak ops/s for the precision the NPU computes in (fp32 requests run in fp16 on these NPUs)."""
        figure = self.peak_int8 if precision == "int8" else self.peak_fp16
        scale = 1e12  # TOPS / TFLOPS
        return figure.value * scale, figure

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target, "vendor": self.vendor, "chip": self.chip, "compiler": self.compiler,
            "soc_version": self.soc_version, "layout": self.layout, "precisions": list(self.precisions),
            "peak_int8": self.peak_int8.to_json(), "peak_fp16": self.peak_fp16.to_json(),
            "bandwidth": self.bandwidth.to_json(), "host_link": self.host_link.to_json(),
            "dynamic_shapes": list(self.dynamic_shapes),
        }


def _figure(section: dict[str, Any], key: str, path: str) -> SourcedFigure:
    data = section.get(key)
    if not isinstance(data, dict) or "value" not in data:
        raise BadInputError(f"NPU profile lacks [{key}] with a value", path=path)
    assumed = bool(data.get("assumed", False))
    source = str(data.get("source", ""))
    if not assumed and not source:
        raise BadInputError(f"NPU figure {key!r} has neither a source nor assumed = true", path=path,
                            hint="every peak figure must cite a source or be marked assumed")
    return SourcedFigure(float(data["value"]), str(data.get("unit", "")), source, assumed, str(data.get("basis", "")))


def is_npu(target: TargetProfile) -> bool:
    return target.kind == "npu" and isinstance(target.raw.get("npu"), dict)


def npu_profile(target: TargetProfile) -> NpuProfile:
    """Parse the `[npu]` section of a target profile (BadInputError naming the file when malformed)."""
    if not is_npu(target):
        raise BadInputError(f"target {target.name!r} is not an NPU profile", path=target.source_file or "--target")
    npu = target.section("npu")
    path = target.source_file or target.name
    peak = npu.get("peak", {})
    eff = npu.get("efficiency", {})
    soc = str(npu.get("soc_version") or npu.get("arch") or "")
    if not soc:
        raise BadInputError("NPU profile lacks soc_version/arch", path=path)
    return NpuProfile(
        target=target.name,
        vendor=str(npu.get("vendor", "")),
        chip=str(npu.get("chip", "")),
        compiler=str(npu.get("compiler", "")),
        soc_version=soc,
        rules=str(npu.get("rules", "")),
        layout=str(npu.get("layout", "NCHW")),
        precisions=tuple(target.precisions),
        peak_int8=_figure(peak, "int8", path),
        peak_fp16=_figure(peak, "fp16", path),
        bandwidth=_figure(npu, "bandwidth", path),
        host_link=_figure(npu, "host_link", path),
        efficiency=Efficiency(
            compute=float(eff.get("compute", 0.5)), memory=float(eff.get("memory", 0.7)),
            cpu_fallback_ms=float(eff.get("cpu_fallback_ms", 0.5)),
            copy_overhead_ms=float(eff.get("copy_overhead_ms", 0.05)),
            basis=str(eff.get("basis", "assumed")),
        ),
        dynamic_shapes=tuple(npu.get("dynamic_shapes", ())),
        dynamic_shapes_source=str(npu.get("dynamic_shapes_source", "")),
        default_precision_mode=str(npu.get("default_precision_mode", "")),
        runtime_modules=tuple(npu.get("runtime_modules", ())),
        rule_overrides=dict(npu.get("rule_overrides", {})) or None,
    )
