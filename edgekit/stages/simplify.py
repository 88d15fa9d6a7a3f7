"""Simplify an ONNX model: fix dynamic dims, onnxsim (falling back to onnxslim), verify numerics.

NPU compilers want static shapes and folded constants; `--input-shape` fixes dynamic dims first.
onnxsim is tried first; when it raises (unsupported op, shape inference failure), its own check
fails or the ONNX checker rejects its output, onnxslim runs instead and the reason is recorded. A
simplifier's failure is never reported as bad input (exit 3, naming each tool and its cause). The
result is compared with the input model on the same seeded random inputs (onnxruntime both sides)
before it is written.
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

    simplified, used, fallback_reason = _simplified(fixed_model, tool, src)
    after = _summary(simplified)

    with atomic_path(dest) as tmp:
        onnx.save(simplified, str(tmp))  # checked by _simplified already: never blame the user for our scratch file
        comparison = None
        if verify:
            comparison = _verify(fixed_model, tmp, used, src, atol=atol, rtol=rtol, seed=seed)
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


def _simplified(model: onnx.ModelProto, tool: str, src: Path) -> tuple[onnx.ModelProto, str, str | None]:
    """(simplified model, the tool that made it, why an earlier tool was not used).

    A simplifier that raises, or whose output the ONNX checker rejects, failed on its own: the
    input model was valid. `auto` then tries the next tool; when none is left the error names each
    tool and its cause (exit 3, the input file, never our scratch file).
    """
    reasons: list[str] = []
    for name in ("onnxsim", "onnxslim") if tool == "auto" else (tool,):
        runner = _run_onnxsim if name == "onnxsim" else _run_onnxslim
        try:
            out = _quietly(runner, model)
        except ToolchainMissingError:
            if tool != "auto":
                raise
            reasons.append(f"{name} is not installed")
            continue
        except Exception as exc:
            reasons.append(f"{name} failed: {_first_line(exc)}")
            continue
        try:
            onnx.checker.check_model(out)
        except Exception as exc:
            reasons.append(f"{name} produced an invalid model: {_first_line(exc)}")
            continue
        return out, name, "; ".join(reasons) or None
    if tool == "auto" and all(r.endswith("is not installed") for r in reasons):
        raise ToolchainMissingError("neither onnxsim nor onnxslim is installed", path="--tool",
                                    hint="pip install onnxsim onnxslim")
    others = [t for t in TOOLS[1:] if t != tool] if tool != "auto" else []
    hint = (f"try --tool {others[0]}, or " if others else "") + "use the model unsimplified: it is valid as given"
    raise UnsupportedError(f"simplify failed in the simplifier, not the model: {'; '.join(reasons)}", path=src,
                           hint=hint)


def _verify(reference_model: onnx.ModelProto, candidate: Path, tool: str, src: Path, *, atol: float, rtol: float,
            seed: int) -> Comparison:
    """Same seeded inputs through the (shape-fixed) input model and the candidate; dims still dynamic -> 1."""
    feeds = onnxio.random_inputs(onnxio.input_specs(reference_model), seed=seed)
    with onnxio.ort_errors("MODEL", hint="check it with `edgekit inspect`; pass --no-verify to skip the check"):
        reference = onnxio.run_reference(reference_model.SerializeToString(), feeds)
    try:
        got = onnxio.run_reference(candidate, feeds)
    except Exception as exc:
        raise UnsupportedError(f"onnxruntime cannot run {tool}'s output ({_first_line(exc)[:200]})",
                               path=src, hint="try another --tool, or use the model unsimplified") from None
    return compare_outputs(reference, got, atol=atol, rtol=rtol)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
