"""The vocabulary of NPU operator rules: verdicts, one op's rule, a vendor's rule set (plain data).

Below rules.py (the engine) and each vendor's table (rknn_rules.py), so a table never imports the engine
that looks it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NPU, CPU_FALLBACK, UNSUPPORTED, UNKNOWN = "npu", "cpu-fallback", "unsupported", "unknown"
VERDICTS = (NPU, CPU_FALLBACK, UNSUPPORTED, UNKNOWN)


@dataclass(frozen=True)
class OpRule:
    """How one op type maps onto the NPU; `checks` refine the verdict per node."""

    op_type: str
    verdict: str
    source: str
    reason: str = ""
    opsets: tuple[int, int] | None = None
    checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleSet:
    name: str
    title: str
    default: OpRule  # verdict for op types the set does not list
    opsets: tuple[int, int] | None
    opset_source: str
    rules: dict[str, OpRule] = field(default_factory=dict)
    generic_checks: tuple[str, ...] = ("zero_dims",)

    def rule_for(self, op_type: str, domain: str = "") -> OpRule:
        if domain not in ("", "ai.onnx"):
            return OpRule(op_type, UNSUPPORTED, self.default.source,
                          f"custom-domain op ({domain}) is not an ONNX standard op")
        return self.rules.get(op_type, OpRule(op_type, self.default.verdict, self.default.source,
                                              self.default.reason))
