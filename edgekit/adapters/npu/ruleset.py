"""The vocabulary of NPU operator rules: verdicts, one op's rule, a vendor's rule set (plain data).

Below rules.py (the engine) and each vendor's table (rknn_rules.py), so a table never imports the engine
that looks it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NPU, CPU_FALLBACK, UNSUPPORTED, UNKNOWN = "npu", "cpu-fallback", "unsupported", "unknown"
VERDICTS = (NPU, CPU_FALLBACK, UNSUPPORTED, UNKNOWN)


@dataclass(frozen=True)
class Limit:
    """One limit a vendor table states for an op, in the form the engine checks on every node.

    Why: a limit that is shown next to a verdict must be the limit that decided it (rk3588 once
    printed Softmax "axis 1" and passed Softmax on axes 2 and 3).

    `what`: batch | channel | height | width (dims of input 0, NCHW) | spatial (H and W) |
    attr (attribute `name`, every element) | input_values (constant input `index`, every value) |
    const_input (input `index` is a constant) | cast_to (Cast's `to`). Numbers are checked against
    [low, high] or, when `values` is given, membership. A node outside the limit gets `verdict`;
    one whose value the graph does not tell (dynamic shape, run-time input) gets `unknown`.
    """

    what: str
    text: str  # the vendor's words, shown in the reason
    low: float | None = None
    high: float | None = None
    values: tuple[int | str, ...] = ()
    name: str = ""
    index: int = 0
    verdict: str = UNSUPPORTED


@dataclass(frozen=True)
class OpRule:
    """How one op type maps onto the NPU; `checks` and `limits` refine the verdict per node."""

    op_type: str
    verdict: str
    source: str
    reason: str = ""
    opsets: tuple[int, int] | None = None
    checks: tuple[str, ...] = ()
    limits: tuple[Limit, ...] = ()


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
