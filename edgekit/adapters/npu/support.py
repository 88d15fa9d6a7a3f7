"""Operator support of a model on an NPU profile: the vendor rule engine per node, and the NPU/host partition.

Lives with the NPU pieces (adapters may not import checks): NPU adapters' `check` and the
`edgekit check` preflight (checks/support.py) both call `check_npu`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.adapters.base import NodeVerdict, SupportReport
from edgekit.adapters.npu.partition import partition
from edgekit.adapters.npu.profile import npu_profile
from edgekit.adapters.npu.rules import GraphFacts, evaluate_model, get_rule_set
from edgekit.graph import node_costs
from edgekit.onnxio import input_specs, load_onnx

if TYPE_CHECKING:
    from edgekit.specs import TensorSpec
    from edgekit.targets import TargetProfile

_ORDER = {"unsupported": 0, "unknown": 1, "cpu-fallback": 2, "npu": 3, "supported": 3}


def simplify_command(model: str | Path, specs: list[TensorSpec]) -> str:
    """The exact `edgekit simplify` command that fixes the dynamic dims (batch -> 1, others named)."""
    model = Path(model)
    out = model.with_name(f"{model.stem}.static.onnx")
    shapes = []
    for spec in specs:
        if spec.is_static:
            continue
        dims = []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int) and dim > 0:
                dims.append(str(dim))
            else:
                dims.append("1" if axis == 0 else f"<{dim}>")
        shapes.append(f"--input-shape {spec.name}:{','.join(dims)}")
    return f"edgekit simplify {model} -o {out} {' '.join(shapes)}".strip()


def op_table(verdicts: list[NodeVerdict]) -> list[dict[str, Any]]:
    """One row per op type: node count, the worst verdict, counts per verdict, reasons and sources."""
    rows: dict[str, dict[str, Any]] = {}
    for v in verdicts:
        row = rows.setdefault(v.op_type, {"op_type": v.op_type, "count": 0, "verdicts": Counter(),
                                          "reasons": [], "sources": []})
        row["count"] += 1
        row["verdicts"][v.verdict] += 1
        if v.reason and v.reason not in row["reasons"]:
            row["reasons"].append(v.reason)
        if v.source and v.source not in row["sources"]:
            row["sources"].append(v.source)
    table = []
    for row in rows.values():
        worst = min(row["verdicts"], key=lambda k: _ORDER.get(k, 1))
        table.append({**row, "verdict": worst, "verdicts": dict(row["verdicts"])})
    return sorted(table, key=lambda r: (_ORDER.get(r["verdict"], 1), -r["count"], r["op_type"]))


def check_npu(model: str | Path, target: TargetProfile, *, adapter: str | None = None) -> SupportReport:
    """Rule engine + partition for an NPU profile."""
    profile = npu_profile(target)
    proto = load_onnx(model)
    rules = get_rule_set(profile.rules, profile.rule_overrides)
    facts = GraphFacts.of(proto)
    verdicts = evaluate_model(proto, rules, facts)
    specs = input_specs(proto)
    costs = node_costs(proto)
    part = partition(proto, verdicts, [c.macs for c in costs], facts)
    dynamic = {s.name: s.dynamic_dims for s in specs if not s.is_static}
    details: dict[str, Any] = {
        "rule_set": rules.name, "rule_set_title": rules.title, "opset": facts.opset,
        "vendor": profile.vendor, "chip": profile.chip, "compiler": profile.compiler,
        "soc_version": profile.soc_version,
        "op_table": op_table(verdicts),
        "partition": part.to_json(),
        "counts": dict(Counter(v.verdict for v in verdicts)),
    }
    if dynamic:
        details["dynamic_fix"] = {
            "command": simplify_command(model, specs),
            "why": f"{profile.compiler} builds static shapes; dynamic dims only through preset mechanisms "
                   f"({', '.join(profile.dynamic_shapes)}: {profile.dynamic_shapes_source})",
            "note": "MACs and partition were computed with dynamic dims set to 1",
        }
    name = adapter or (target.adapters[0] if target.adapters else "")
    return SupportReport(target.name, name, verdicts, dynamic, details)
