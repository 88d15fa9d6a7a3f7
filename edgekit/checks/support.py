"""Per-target operator support preflight: `edgekit check IN.onnx --target T`.

For NPU profiles the vendor rule engine decides each node (with its source) and the partition says how
the model would split between NPU and host (adapters/npu/support.py); other targets ask the `check` of
the first usable adapter the registry plans for the target, else of the first installed one. The report
is plain data (SupportReport); the CLI renders it and exits 3 when a node is unsupported.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.adapters.base import SupportReport
from edgekit.adapters.npu.profile import is_npu
from edgekit.adapters.npu.support import check_npu, op_table, simplify_command
from edgekit.adapters.registry import plan_adapters
from edgekit.errors import ToolchainMissingError
from edgekit.onnxio import input_specs, load_onnx
from edgekit.targets import TargetProfile, get_profile

__all__ = ["check", "check_npu", "op_table", "simplify_command"]


def check(model: str | Path, target: str | TargetProfile) -> SupportReport:
    """Support report of `model` on `target` (a name or profile). Never compiles anything."""
    profile = get_profile(target) if isinstance(target, str) else target
    if is_npu(profile):
        return check_npu(model, profile)
    plan = plan_adapters(profile, "auto", None)
    usable = [c.adapter for c in plan if c.usable and c.adapter is not None]
    installed = [c.adapter for c in plan if c.adapter is not None]
    adapter = next(iter(usable + installed), None)
    if adapter is None:
        raise ToolchainMissingError(f"no adapter installed for target {profile.name}",
                                    hint=f"see `edgekit targets show {profile.name}`")
    report = adapter.check(Path(model), profile)
    specs = input_specs(load_onnx(model, load_weights=False))
    report.dynamic_dims = report.dynamic_dims or {s.name: s.dynamic_dims for s in specs if not s.is_static}
    report.details.setdefault("op_table", op_table(report.verdicts))
    return report
