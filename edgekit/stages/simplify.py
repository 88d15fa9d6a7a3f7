"""Simplify an ONNX model: fix dynamic dims, onnxsim (falling back to onnxslim), verify numerics.

NPU compilers want static shapes and folded constants; `--input-shape` fixes dynamic dims first.
onnxsim is tried first; when it raises (unsupported op, shape inference failure) or its own check
fails, onnxslim runs instead and the reason is recorded. The result is compared with the input
model on the same seeded random inputs (onnxruntime both sides) before it is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgekit import onnxio
from edgekit.artifact import (
    Artifact,
    Manifest,
    StageRecord,
    atomic_path,
    manifest_path_for,
    sha256_file,
    write_text_atomic,
)
from edgekit.checks.numerics import Comparison, compare_outputs
from edgekit.errors import BadInputError, CheckFailedError, ToolchainMissingError, UnsupportedError
from edgekit.specs import TensorSpec, as_specs

TOOLS = ("auto", "onnxsim", "onnxslim")


@dataclass(frozen=True)
class SimplifyOptions:
    tool: str = "auto"  # auto = onnxsim, then onnxslim if onnxsim fails
    input_shapes: tuple[str, ...] = ()
    verify: bool = True
    atol: float = 1e-4
    rtol: float = 1e-3
    seed: int = 0


_DEFAULTS = SimplifyOptions()


@dataclass(frozen=True)
class GraphSummary:
    node_count: int
    op_histogram: dict[str, int]
    inputs: list[TensorSpec]


@dataclass(frozen=True)
class SimplifyResult:
    artifact: Artifact
    tool: str  # which simplifier produced the output
    fallback_reason: str | None  # why onnxsim was not used, when it was not
    before: GraphSummary
    after: GraphSummary
    comparison: Comparison | None  # None when verify=False
    fixed_shapes: dict[str, list[int | str]]  # a dim given as a name stays dynamic
    duration_s: float
    options: SimplifyOptions = field(default_factory=SimplifyOptions)

    @property
    def path(self) -> Path:
        return self.artifact.path

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable
        from edgekit.stages.export import comparison_json

        return to_jsonable({
            "path": str(self.path), "manifest": str(self.artifact.manifest_path),
            "sha256": self.artifact.manifest.files.get(self.path.name), "tool": self.tool,
            "fallback_reason": self.fallback_reason, "fixed_shapes": self.fixed_shapes,
            "before": {"node_count": self.before.node_count, "op_histogram": self.before.op_histogram,
                       "inputs": [s.to_json() for s in self.before.inputs]},
            "after": {"node_count": self.after.node_count, "op_histogram": self.after.op_histogram,
                      "inputs": [s.to_json() for s in self.after.inputs]},
            "verification": comparison_json(self.comparison) if self.comparison else None,
            "duration_s": round(self.duration_s, 3), "options": dataclasses.asdict(self.options),
        })


def _summary(model: onnx.ModelProto) -> GraphSummary:
    return GraphSummary(len(model.graph.node), onnxio.op_histogram(model), onnxio.input_specs(model))


def _run_onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxsim
    except ImportError:
        raise ToolchainMissingError("onnxsim is not installed", path="--tool", hint="pip install onnxsim") from None
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's own output check failed")
    return simplified


def _run_onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxslim
    except ImportError:
        raise ToolchainMissingError("onnxslim is not installed", path="--tool", hint="pip install onnxslim") from None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return onnxslim.slim(copy)


def _quietly(func: Any, model: onnx.ModelProto) -> onnx.ModelProto:
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        return func(model)


def simplify(
    model: str | Path,
    output: str | Path,
    *,
    input_shapes: Sequence[TensorSpec | str] | None = None,
    verify: bool = _DEFAULTS.verify,
    tool: str = _DEFAULTS.tool,
    atol: float = _DEFAULTS.atol,
    rtol: float = _DEFAULTS.rtol,
    seed: int = _DEFAULTS.seed,
) -> SimplifyResult:
    """Simplify the ONNX file `model` into `output` (with a manifest carrying the input's history)."""
    started = time.perf_counter()
    if tool not in TOOLS:
        raise BadInputError(f"unknown tool {tool!r}", path="--tool", hint=f"one of {', '.join(TOOLS)}")
    specs = as_specs(list(input_shapes or []))
    options = SimplifyOptions(tool=tool, input_shapes=tuple(str(s) for s in specs), verify=verify, atol=atol,
                              rtol=rtol, seed=seed)
    src = Path(model)
    dest = Path(output)
    if dest.resolve() == src.resolve():
        raise BadInputError("output would overwrite the input", path=dest, hint="give another -o path")
    if dest.is_dir():
        raise BadInputError("is a directory", path=dest, hint="give a file name ending in .onnx")
    original = onnxio.load_onnx(src)
    source_artifact = Artifact.open(src)
    before = _summary(original)
    fixed_model = onnxio.fix_input_dims(original, specs)  # the one fixer (rank, fixed dims, size checked)
    fixed = {spec.name: list(spec.shape) for spec in specs}

    fallback_reason: str | None = None
    used = tool
    if tool in ("auto", "onnxsim"):
        try:
            simplified = _quietly(_run_onnxsim, fixed_model)
            used = "onnxsim"
        except ToolchainMissingError:
            if tool == "onnxsim":
                raise
            fallback_reason, used = "onnxsim is not installed", "onnxslim"
        except Exception as exc:
            if tool == "onnxsim":
                raise UnsupportedError(f"onnxsim failed: {_first_line(exc)}", path=src,
                                       hint="try --tool onnxslim") from None
            fallback_reason, used = f"onnxsim failed: {_first_line(exc)}", "onnxslim"
    if used == "onnxslim":
        try:
            simplified = _quietly(_run_onnxslim, fixed_model)
        except ToolchainMissingError:
            raise
        except Exception as exc:
            why = f" (after {fallback_reason})" if fallback_reason else ""
            raise UnsupportedError(f"onnxslim failed: {_first_line(exc)}{why}", path=src,
                                   hint="the model may use ops neither simplifier knows; use it unsimplified") from None
    after = _summary(simplified)

    with atomic_path(dest) as tmp:
        onnx.save(simplified, str(tmp))
        onnxio.load_onnx(tmp)  # the checker must accept what we write
        comparison = None
        if verify:
            comparison = _verify(fixed_model, tmp, atol=atol, rtol=rtol, seed=seed)
            if not comparison.passed:
                worst = comparison.by_name().get(comparison.worst or "")
                detail = f"max abs {worst.max_abs:.3g}" if worst else "; ".join(comparison.notes)
                raise CheckFailedError(
                    f"simplified output {comparison.worst!r} differs from the input model ({detail})", path=src,
                    hint="try --tool onnxslim, or --no-verify to keep it anyway")
        digest = sha256_file(tmp)
    duration = time.perf_counter() - started
    from edgekit.stages.export import comparison_json

    manifest = source_artifact.manifest
    manifest = Manifest(kind="onnx", inputs=onnxio.input_specs(simplified), outputs=onnxio.output_specs(simplified),
                        files={dest.name: digest}, history=list(manifest.history), metrics=dict(manifest.metrics),
                        info=dict(manifest.info))
    manifest.add_stage(StageRecord(
        stage="simplify",
        options=dataclasses.asdict(options),
        inputs={src.name: source_artifact.sha256},
        outputs={dest.name: digest},
        metrics={
            "tool": used, "fallback_reason": fallback_reason, "nodes_before": before.node_count,
            "nodes_after": after.node_count, "fixed_shapes": fixed,
            **({"max_abs": comparison.max_abs, "max_rel": comparison.max_rel, "passed": comparison.passed,
                "per_output": comparison_json(comparison)["outputs"]} if comparison else {"verified": False}),
        },
        provenance="measured" if comparison else "not-run",
        duration_s=round(duration, 3),
    ))
    write_text_atomic(manifest_path_for(dest), manifest.dumps())
    return SimplifyResult(Artifact(dest, manifest), used, fallback_reason, before, after, comparison, fixed, duration,
                          options)


def _verify(reference_model: onnx.ModelProto, candidate: Path, *, atol: float, rtol: float, seed: int) -> Comparison:
    """Same seeded inputs through the (shape-fixed) input model and the candidate; dims still dynamic -> 1."""
    feeds = onnxio.random_inputs(onnxio.input_specs(reference_model), seed=seed)
    try:
        reference = onnxio.run_reference(reference_model.SerializeToString(), feeds)
    except Exception as exc:
        raise BadInputError(f"onnxruntime cannot run the input model ({_first_line(exc)[:200]})", path="MODEL",
                            hint="check it with `edgekit inspect`; pass --no-verify to skip the check") from None
    try:
        got = onnxio.run_reference(candidate, feeds)
    except Exception as exc:
        raise UnsupportedError(f"onnxruntime cannot run the simplified model ({_first_line(exc)[:200]})",
                               path=candidate, hint="try --tool onnxslim") from None
    return compare_outputs(reference, got, atol=atol, rtol=rtol)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
