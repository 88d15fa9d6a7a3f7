"""Compile an ONNX model for a target: adapter → bundle, verified against the ONNX reference.

Every compile runs the compiled model on seeded inputs and compares it with onnxruntime CPU on
the same inputs (dtype-aware: FP32 elementwise, FP16/BF16 elementwise or high SQNR, INT8 by
cosine/SQNR); a mismatch fails the compile and nothing is written. `backend="auto"` builds every
available adapter of the target, times the passing ones side by side (interleaved rounds,
medians) and keeps the fastest, recording every candidate and why it lost in the manifest.

Bundle layout: `manifest.json` (sha256 of every other file), `source.onnx` (the ONNX the
bundle was compiled from), and the adapter's files; the file list is signed with the user's local key
(edgekit.bundle). `edgekit.adapters.loading.load_bundle` refuses a tampered bundle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.adapters.base import SOURCE_MODEL, CompiledModel, CompileOptions, Provenance, Runner, TargetAdapter
from edgekit.artifact import check_replaceable, scratch_dir
from edgekit.bundle import check_threads, sign
from edgekit.errors import (
    BadInputError,
    CheckFailedError,
    EdgekitError,
    ToolchainMissingError,
    UnsupportedError,
    raise_if_interrupted,
    watch_interrupts,
)
from edgekit.progress import step
from edgekit.specs import COMPILE_PRECISIONS, Preprocess, normalize_precision, resolve_precision
from edgekit.stages.calibration import load_arrays, open_source
from edgekit.stages.quantize import quantize_onnx
from edgekit.timing import statistic_value, time_side_by_side

if TYPE_CHECKING:
    from edgekit.artifact import Artifact
    from edgekit.checks.numerics import Comparison
    from edgekit.specs import TensorSpec
    from edgekit.targets import TargetProfile

PRECISIONS = COMPILE_PRECISIONS  # the one vocabulary lives in edgekit.specs


# ---------------------------------------------------------------------------------------------
# Verification policy


@dataclass(frozen=True)
class Thresholds:
    """When a compiled model agrees with the reference. Defaults in one place, stored in the manifest.

    fp32: elementwise |ref-got| <= atol + rtol*|ref| (`tolerance_for`), or SQNR >= `fp32_sqnr_db`
    (accumulation-order noise on large outputs). fp16/bf16: elementwise, or cosine >= `float_cosine`
    and SQNR >= `float_sqnr_db`. int8: cosine >= `int8_cosine` and SQNR >= `int8_sqnr_db`.
    """

    fp32_sqnr_db: float = 60.0
    float_cosine: float = 0.999
    float_sqnr_db: float = 25.0
    int8_cosine: float = 0.98
    int8_sqnr_db: float = 12.0


def judge(comparison: Comparison, precision: str, thresholds: Thresholds = Thresholds()) -> tuple[bool, str]:
    """(passed, why) for a comparison of compiled outputs against the reference.

    The reason opens with the verdict and the rule that decided it, so a figure beyond a tolerance
    is never printed next to a pass without saying which (looser) rule the pass rests on.
    """
    cos, sqnr = comparison.min_cosine, comparison.min_sqnr_db
    summary = f"cosine {cos:.6f}, SQNR {sqnr:.1f} dB, max abs {comparison.max_abs:.3g}"
    if comparison.notes and any("missing" in n or "shape" in n or "NaN" in n for n in comparison.notes):
        return False, "; ".join(comparison.notes)
    if comparison.dead:  # constant/zero where the reference varies: never a pass, whatever the thresholds
        return False, "the compiled model no longer works: " + "; ".join(comparison.dead)
    if precision == "int8":
        ok = cos >= thresholds.int8_cosine and sqnr >= thresholds.int8_sqnr_db
        rule = f"cosine >= {thresholds.int8_cosine}, SQNR >= {thresholds.int8_sqnr_db} dB"
        return ok, f"{'passed' if ok else 'failed'} the int8 rule: {summary} ({rule})"
    elementwise = f"elementwise tolerance (atol {comparison.atol:g}, rtol {comparison.rtol:g})"
    if comparison.passed:
        return True, f"passed: every element within the {elementwise}; {summary}"
    if precision == "fp32":
        ok = sqnr >= thresholds.fp32_sqnr_db
        rule = f"SQNR >= {thresholds.fp32_sqnr_db} dB"
    else:
        ok = cos >= thresholds.float_cosine and sqnr >= thresholds.float_sqnr_db
        rule = f"cosine >= {thresholds.float_cosine}, SQNR >= {thresholds.float_sqnr_db} dB"
    if ok:
        return True, (f"passed on the {precision} rule: {summary} ({rule}); the {elementwise} is not met, "
                      f"as {precision} rounding allows")
    return False, f"failed the {precision} rule: {summary} ({rule}); the {elementwise} is not met either"


def _concat(batches: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join several runs' outputs along axis 0, so one comparison covers every sample."""
    out: dict[str, np.ndarray] = {}
    for name in batches[0]:
        arrays = [np.asarray(b[name]) for b in batches if name in b]
        out[name] = np.concatenate(arrays, axis=0) if arrays[0].ndim else np.stack(arrays)
    return out


def verify_runner(
    runner: Runner,
    reference: Path,
    feeds: Sequence[Mapping[str, np.ndarray]],
    precision: str,
    thresholds: Thresholds = Thresholds(),
    *,
    inputs_note: str = "",
    threads: int | None = None,
) -> dict[str, Any]:
    """Run `runner` and the onnxruntime CPU reference on `feeds`; return the recorded verification."""
    from edgekit.checks.numerics import compare_outputs, tolerance_for
    from edgekit.onnxio import run_reference

    ref = _concat([run_reference(reference, f, threads=threads) for f in feeds])
    got_runs = []
    for f in feeds:
        got = runner.run(f)
        got_runs.append({k: v for k, v in got.items() if k in ref})
    atol, rtol = tolerance_for(precision)
    comparison = compare_outputs(ref, _concat(got_runs), atol=min(atol, 1e30), rtol=min(rtol, 1e30))
    passed, why = judge(comparison, precision, thresholds)
    return {
        "status": "passed" if passed else "failed",
        "passed": passed,
        "reason": why,
        "reference": "onnxruntime CPU (ORT_ENABLE_ALL) on the model given to compile",
        "inputs": inputs_note or f"{len(feeds)} seeded random sample(s)",
        "precision": precision,
        "min_cosine": comparison.min_cosine,
        "min_sqnr_db": comparison.min_sqnr_db,
        "max_abs": comparison.max_abs,
        "max_rel": comparison.max_rel,
        "outputs": [_output_json(o) for o in comparison.outputs],
        "notes": list(comparison.notes),
        "provenance": str(getattr(runner, "provenance", Provenance.MEASURED)),
    }


def _output_json(o: Any) -> dict[str, Any]:
    from edgekit.artifact import to_jsonable

    return to_jsonable(o)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Candidate:
    """One adapter tried by compile/auto/compare, and what became of it."""

    adapter: str
    precision: str
    status: str  # chosen | passed | rejected | failed | unavailable
    reason: str = ""
    precision_used: str | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    runs: int = 0
    timing_provenance: str = "not-run"
    numerics_provenance: str = "not-run"  # how min_cosine/SQNR/max_abs were obtained (measured | emulated)
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    max_abs: float | None = None
    compile_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass
class CompileResult:
    bundle: Artifact
    adapter: str
    precision_used: str
    verification: dict[str, Any]
    candidates: list[Candidate] = field(default_factory=list)
    timed_shapes: dict[str, list[int]] = field(default_factory=dict)  # backend auto: the shapes timed side by side

    def to_json(self) -> dict[str, Any]:
        info = self.bundle.manifest.info
        return {
            "bundle": str(self.bundle.path), "target": info.get("target"), "adapter": self.adapter,
            "precision": info.get("precision"), "precision_used": self.precision_used,
            "run_provenance": info.get("run_provenance"), "verification": self.verification,
            "candidates": [c.to_json() for c in self.candidates], "timed_shapes": self.timed_shapes,
            "files": self.bundle.manifest.files,
        }


# ---------------------------------------------------------------------------------------------
# Building blocks


@dataclass
class _Built:
    compiled: CompiledModel
    runner: Runner
    verification: dict[str, Any]
    compile_s: float
    source: Path  # model handed to the adapter


MODEL_SUFFIXES = (".onnx", ".om", ".mlu", ".mm", ".rknn", ".engine", ".xml", ".so")


def check_bundle_path(output: Path) -> None:
    """A bundle is a folder: `-o net.onnx` would make a folder named like a model file, so it is refused."""
    if output.suffix.lower() in MODEL_SUFFIXES:
        raise BadInputError(f"a bundle is a folder, but this names a {output.suffix} file", path=output,
                            hint=f"give a folder, e.g. -o {output.with_suffix('').name}.bundle/")


def _as_model_path(model: str | Path | Artifact) -> tuple[Path, Artifact | None]:
    from edgekit.artifact import Artifact

    if isinstance(model, Artifact):
        return Path(model.path), model
    path = Path(model)
    if path.is_dir():
        raise BadInputError("is a directory (a bundle?), expected an .onnx model", path=path,
                            hint="compile takes the ONNX model; `edgekit.load` opens bundles")
    return path, None


def _open_calibration(calib: Any, specs: list[TensorSpec], *, allow_code: bool, limit: int | None,
                      preprocess: Preprocess | None = None) -> Any:
    if calib is None or not isinstance(calib, (str, Path)):
        return calib  # a reader (any re-iterable of input dicts) or nothing
    return open_source(str(calib), specs, preprocess=preprocess, allow_code=allow_code, limit=limit)


def _calibration_json(calib: Any, reader: Any) -> dict[str, Any]:
    if reader is None:
        return {}
    synthetic = bool(getattr(reader, "synthetic", False))
    data = {"source": str(calib) if isinstance(calib, (str, Path)) else type(calib).__name__,
            "description": str(getattr(reader, "description", "")), "synthetic": synthetic}
    with contextlib.suppress(TypeError):
        data["samples"] = len(reader)
    if synthetic:
        data["note"] = "synthetic calibration: int8 accuracy figures are not valid for real data"
    return data


def _quantize(model: Path, calib: Any, work: Path, calib_samples: int) -> Path:
    """QDQ model by the quantize stage's bare step (no accuracy report: compile verifies on its own)."""
    import onnx

    out = work / "model.int8.onnx"
    onnx.save(quantize_onnx(model, calib, calib_samples=calib_samples), str(out))
    return out


def _feeds(specs: list[TensorSpec], *, seed: int, samples: int, reader: Any = None) -> tuple[list[dict], str]:
    from edgekit.onnxio import sample_feeds

    return sample_feeds(specs, reader, count=samples, seed=seed)


def _build(
    adapter: TargetAdapter, profile: TargetProfile, source: Path, options: CompileOptions, out_dir: Path,
    *, reference: Path, feeds: list[dict], inputs_note: str, thresholds: Thresholds, verify: bool = True,
) -> _Built:
    """source.onnx + adapter.compile + load + verify, inside `out_dir`."""
    from edgekit.artifact import Manifest
    from edgekit.onnxio import input_specs, load_onnx, output_specs

    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_dir / SOURCE_MODEL)
    proto = load_onnx(source, load_weights=False)
    caps = adapter.capabilities(profile)
    t0 = time.perf_counter()
    try:
        with watch_interrupts():  # Ctrl-C inside a toolchain (TVM wraps it in a RuntimeError) stays an interrupt
            compiled = adapter.compile(source, profile, options, out_dir)
    except EdgekitError:
        raise
    except Exception as exc:  # a backend crashing on a model is "unsupported", with the backend's words
        raise_if_interrupted(exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise UnsupportedError(f"{adapter.name} failed to compile: {type(exc).__name__}: {first}",
                               path=source, hint="try another --backend, or --debug for the traceback") from exc
    compile_s = time.perf_counter() - t0
    compiled.path = out_dir
    compiled.info.setdefault("precision_used", options.precision)
    compiled.info.setdefault("run_provenance", caps.run_provenance.value)
    compiled.manifest = Manifest(kind="bundle", inputs=input_specs(proto), outputs=output_specs(proto),
                                 info=dict(compiled.info))
    try:
        runner = adapter.load(compiled, threads=options.threads)
    except EdgekitError:
        raise
    except Exception as exc:
        raise_if_interrupted(exc)
        raise UnsupportedError(f"{adapter.name} compiled but failed to load: {type(exc).__name__}: {exc}",
                               path=source) from exc
    if verify:
        try:
            verification = verify_runner(runner, reference, feeds, judged_precision(options.precision, compiled.info),
                                         thresholds, inputs_note=inputs_note, threads=options.threads)
        except EdgekitError:
            runner.close()
            raise
        except Exception as exc:  # the backend crashed while running: unsupported, in its own words
            runner.close()
            raise_if_interrupted(exc)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise UnsupportedError(f"{adapter.name} compiled but failed to run: {type(exc).__name__}: {first}",
                                   path=source) from exc
    else:
        verification = {"status": "not-run", "passed": None, "reason": "verification skipped"}
    return _Built(compiled, runner, verification, compile_s, source)


def judged_precision(requested: str, info: Mapping[str, Any]) -> str:
    """The rule to judge by: int8 if either side is int8, else what the backend really computed in.

    OpenVINO may compute FP32 requests in bf16 and Ascend in fp16; the bundle records that as
    `precision_used`, and the numbers are judged by it (the user sees both in the manifest).
    """
    used = str(info.get("precision_used", requested))
    if "int8" in (requested, used) or used == "mixed":
        return "int8"
    return used if used in PRECISIONS else requested


def options_for(adapter: str, adapter_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """`adapter_options` for one adapter: plain keys go to every adapter, `name.key` only to `name`.

    So `--backend auto -O tvm.trials=64 -O tune=true` tunes TVM without ORT rejecting `trials`.
    """
    chosen: dict[str, Any] = {}
    for key, value in (adapter_options or {}).items():
        owner, dot, rest = str(key).partition(".")
        if not dot:
            chosen.setdefault(key, value)
        elif owner == adapter:
            chosen[rest] = value
    return chosen


def _resolve_adapter(profile: TargetProfile, name: str, *, option: str = "--backend") -> TargetAdapter:
    """An explicitly named backend: unknown (exit 2), not serving this target (2), not installed (4).

    `option` is the CLI option the name came from (`--backends` for compare: its hint offers no `auto`).
    """
    from edgekit.adapters.registry import plan_adapters

    choice = plan_adapters(profile, name, None, option=option)[0]
    if choice.adapter is None:
        raise choice.error or ToolchainMissingError(f"backend {name!r}: {choice.reason}", path=option)
    return choice.adapter


def _adapters_to_try(
    profile: TargetProfile, backend: str, precision: str
) -> tuple[list[TargetAdapter], list[Candidate]]:
    """The explicit backend, or (auto) every adapter the profile names; those not installed as candidates."""
    from edgekit.adapters.registry import plan_adapters

    if backend != "auto":
        return [_resolve_adapter(profile, backend)], []
    plan = plan_adapters(profile, "auto", precision)
    adapters = [c.adapter for c in plan if c.adapter is not None]
    missing = [Candidate(c.name, precision, "unavailable", c.reason) for c in plan if c.adapter is None]
    if not adapters:
        reasons = "; ".join(f"{c.adapter}: {c.reason}" for c in missing) or "profile names no adapter"
        raise ToolchainMissingError(f"no adapter can serve target {profile.name} ({reasons})",
                                    hint=f"see `edgekit targets show {profile.name}`")
    return adapters, missing


def _unavailable_reason(adapter: TargetAdapter, profile: TargetProfile, precision: str) -> str:
    from edgekit.adapters.registry import unusable_reason

    return unusable_reason(adapter, profile, precision)


def _unavailable_error(adapter: TargetAdapter, profile: TargetProfile, why: str) -> EdgekitError:
    """The error an explicit `--backend NAME` would raise for this unavailable candidate."""
    try:
        available = adapter.availability(profile).available
    except Exception:  # the probe itself failed: treat as a missing toolchain
        available = False
    if not available:
        return ToolchainMissingError(f"backend {adapter.name} is unavailable for {profile.name}: {why}",
                                     path="--backend", hint=f"see `edgekit targets show {profile.name}`")
    return UnsupportedError(f"backend {adapter.name}: {why}", path="--precision")


# Which failure tells the user most, when every auto candidate failed: a mistake of theirs (bad option),
# then a check that ran and failed, then "cannot compile/run this", then a missing toolchain.
_ERROR_RANK = {BadInputError: 0, CheckFailedError: 1, UnsupportedError: 2, ToolchainMissingError: 3}


def _error_rank(exc: EdgekitError) -> int:
    return next((rank for cls, rank in _ERROR_RANK.items() if isinstance(exc, cls)), 4)


def _auto_failure(candidates: list[Candidate], errors: Mapping[str, EdgekitError], profile: TargetProfile,
                  precision: str, adapters: Sequence[TargetAdapter], model_path: Path) -> EdgekitError:
    """The error for `--backend auto` when no candidate passed, with the exit code of its real cause.

    A single candidate's own error is re-raised as is (same message and exit code as `--backend NAME`);
    a precision that no adapter of the target offers is UnsupportedError (3) listing what is offered;
    otherwise the most informative candidate error keeps its class and lists the other candidates.
    """
    reasons = "; ".join(f"{c.adapter}: {c.reason}" for c in candidates) or "no candidates"
    if any(c.status == "rejected" for c in candidates):
        return CheckFailedError(f"no backend passed the numerics check ({reasons})", path=model_path)
    offered: list[str] = []
    for adapter in adapters:
        try:
            offered.extend(p for p in adapter.capabilities(profile).precisions if p not in offered)
        except Exception:  # a foreign probe failing says nothing about precisions
            offered = []
            break
    if adapters and offered and precision not in offered:
        return UnsupportedError(f"{precision} is not offered on {profile.name} by any of its backends "
                                f"({', '.join(a.name for a in adapters)})", path="--precision",
                                hint=f"offered: {', '.join(offered)}")
    if all(isinstance(e, ToolchainMissingError) for e in errors.values()):  # nothing here can build it
        return ToolchainMissingError(f"no backend available for {profile.name} ({reasons})",
                                     hint=f"see `edgekit targets show {profile.name}`")
    if len(candidates) == 1 and len(errors) == 1:
        return next(iter(errors.values()))
    name, best = min(errors.items(), key=lambda item: _error_rank(item[1]))
    others = "; ".join(f"{c.adapter}: {c.reason}" for c in candidates if c.adapter != name)
    hint = "; ".join(h for h in (best.hint, f"other candidates: {others}" if others else "") if h) or None
    return type(best)(best.message, path=best.path, hint=hint)


# ---------------------------------------------------------------------------------------------
# compile


def compile(
    model: str | Path | Artifact,
    *,
    output: str | Path,
    target: str = "cpu",
    backend: str = "auto",
    precision: str | None = None,
    threads: int | None = None,
    calib: Any = None,
    input_shapes: Sequence[TensorSpec | str] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    adapter_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    verify_samples: int = 2,
    thresholds: Thresholds = Thresholds(),
    allow_code: bool = False,
    calib_samples: int = 100,
    preprocess: Preprocess | None = None,
    auto_rounds: int = 5,
    on_progress: Callable[[str], None] | None = None,
) -> CompileResult:
    """Compile `model` for `target` with `backend` (or the fastest passing one) into bundle dir `output`.

    `calib` (int8 on a float model): a calibration source string (dir of .npy/.npz, image folder,
    `synthetic` — flagged as not valid for accuracy, `py:module:function` with allow_code) or a
    reader. `precision` None: what the model is (int8 for a QDQ model, else fp32); a float precision
    on a quantized model is a contradiction (BadInputError). Raises BadInputError (2),
    ToolchainMissingError (4), UnsupportedError (3) or CheckFailedError (1, numerics off) and writes
    nothing on failure.
    """
    from edgekit.onnxio import fix_input_dims_file, input_specs, load_onnx, quantization_info
    from edgekit.specs import as_specs
    from edgekit.targets import get_profile

    note = on_progress or (lambda _msg: None)
    model_path, model_artifact = _as_model_path(model)
    output = Path(output)
    if precision is not None:
        precision = normalize_precision(precision, allowed=PRECISIONS)  # a typo fails before any work
    if verify_samples < 1:
        raise BadInputError("must be >= 1", path="verify_samples")
    check_bundle_path(output)
    check_replaceable(output)  # a folder of the user's files is refused before any work
    threads = check_threads(threads)
    profile = get_profile(target)
    proto = load_onnx(model_path)
    qinfo = quantization_info(proto)
    precision = resolve_precision(precision, qinfo.quantized)  # None -> what the model is (QDQ -> int8)
    chosen_adapters, missing = _adapters_to_try(profile, backend, precision)
    specs = as_specs(list(input_shapes))
    if qinfo.format not in (None, "QDQ"):
        note(f"model is quantized in {qinfo.format} format; only QDQ is portable across backends")

    started = time.perf_counter()
    with scratch_dir(output) as work:  # beside the output; a killed run's is removed by the next run
        source = fix_input_dims_file(model_path, specs, work / "input.fixed.onnx") if specs else model_path
        src_specs = input_specs(load_onnx(source, load_weights=False))
        reader = None
        calibration: dict[str, Any] = {}
        float_model_int8 = precision == "int8" and not qinfo.quantized
        if float_model_int8:
            if calib is None:
                raise BadInputError(
                    "int8 needs calibration data for a float model", path="--calib",
                    hint="pass --calib DIR_OF_NPY|IMAGE_DIR (or `synthetic`: flagged, not valid for accuracy), "
                         "or compile a model made by `edgekit quantize`")
            if preprocess is None and (mean is not None or std is not None):
                # image-folder calibration normalizes with the same mean/std as quantize and recipes
                preprocess = Preprocess(mean=tuple(mean) if mean is not None else Preprocess.mean,
                                        std=tuple(std) if std is not None else Preprocess.std)
            reader = _open_calibration(calib, src_specs, allow_code=allow_code, limit=calib_samples,
                                       preprocess=preprocess)
            calibration = _calibration_json(calib, reader)
        n_verify = max(verify_samples, 4) if reader is not None else verify_samples
        feeds, inputs_note = _feeds(src_specs, seed=seed, samples=n_verify, reader=reader)
        base_options = CompileOptions(
            precision=precision, threads=threads if backend != "auto" else (threads or os.cpu_count()),
            input_shapes=tuple(specs), calibration=reader,
            mean=tuple(mean) if mean is not None else None, std=tuple(std) if std is not None else None,
            adapter_options=dict(adapter_options or {}),
        )
        qdq_model: Path | None = None

        def source_for(adapter: TargetAdapter) -> Path:
            nonlocal qdq_model
            if not float_model_int8 or adapter.native_int8:
                return source
            if qdq_model is None:
                note("quantizing (QDQ) for int8 ...")
                with step("quantize (QDQ) for int8"):
                    qdq_model = _quantize(source, reader, work, calib_samples)
            return qdq_model

        candidates: list[Candidate] = []
        built: dict[str, _Built] = {}
        errors: dict[str, EdgekitError] = {}  # auto: why each candidate failed, to re-raise the best one
        for number, adapter in enumerate(chosen_adapters, 1):
            try:
                why = _unavailable_reason(adapter, profile, precision)
            except Exception as exc:  # a probe of foreign code failing: report it as the reason
                raise_if_interrupted(exc)
                if backend != "auto":
                    raise
                why = f"capabilities check failed: {type(exc).__name__}: {exc}"
            skip = "" if why or backend != "auto" else adapter.skip_in_auto(options_for(adapter.name, adapter_options))
            if skip:  # e.g. untuned TVM: minutes of building and timing for a candidate that cannot win
                candidates.append(Candidate(adapter.name, precision, "skipped", skip))
                continue
            if why:
                if backend != "auto":
                    if not adapter.availability(profile).available:
                        raise ToolchainMissingError(f"backend {adapter.name} is unavailable for {profile.name}: {why}",
                                                    path="--backend", hint=f"see `edgekit targets show {profile.name}`")
                    raise UnsupportedError(f"backend {adapter.name}: {why}", path="--precision")
                candidates.append(Candidate(adapter.name, precision, "unavailable", why))
                errors[adapter.name] = _unavailable_error(adapter, profile, why)
                continue
            note(f"compiling with {adapter.name} ({precision}) ...")
            options = replace(base_options, adapter_options=options_for(adapter.name, adapter_options))
            try:
                with step(f"compile {adapter.name} · {precision}", f"candidate {number}/{len(chosen_adapters)}"):
                    b = _build(adapter, profile, source_for(adapter), options, work / f"cand-{adapter.name}",
                               reference=source, feeds=feeds, inputs_note=inputs_note, thresholds=thresholds)
            except EdgekitError as exc:
                if backend != "auto":
                    raise
                candidates.append(Candidate(adapter.name, precision, "failed", exc.one_line()))
                errors[adapter.name] = exc
                continue
            v = b.verification
            cand = Candidate(adapter.name, precision, "passed" if v["passed"] else "rejected",
                             "" if v["passed"] else f"numerics: {v['reason']}",
                             precision_used=str(b.compiled.info.get("precision_used", precision)),
                             min_cosine=v["min_cosine"], min_sqnr_db=v["min_sqnr_db"], max_abs=v["max_abs"],
                             compile_s=round(b.compile_s, 3),
                             numerics_provenance=str(v.get("provenance", Provenance.MEASURED.value)))
            candidates.append(cand)
            if v["passed"]:
                built[adapter.name] = b
            else:
                b.runner.close()
                if backend != "auto":
                    raise CheckFailedError(f"{adapter.name} output disagrees with the ONNX reference: {v['reason']}",
                                           path=model_path, hint="try another backend or precision")

        candidates.extend(missing)
        if not built:
            raise _auto_failure(candidates, errors, profile, precision, chosen_adapters, model_path)

        winner = _pick(built, candidates, feeds[0], auto_rounds, note) if backend == "auto" else next(iter(built))
        for b in built.values():
            b.runner.close()
        best = built[winner]
        stage_options = {
            "target": profile.name, "backend": backend, "adapter": winner, "precision": precision,
            "threads": base_options.threads, "input_shapes": [str(sp) for sp in specs],
            "mean": base_options.mean, "std": base_options.std,
            "adapter_options": options_for(winner, adapter_options), "seed": seed,
            "verify_samples": verify_samples, "thresholds": thresholds,
            "calib": calibration.get("source"), "calib_samples": calib_samples,
        }
        extra: dict[str, Any] = {"threads": base_options.threads}
        if calibration:
            extra["calibration"] = calibration
        if float_model_int8:
            extra["quantized_by"] = "adapter (native int8)" if best.source == source else "edgekit quantize (QDQ)"
        timed_shapes: dict[str, list[int]] = {}
        if backend == "auto":
            # a figure is its value and what it was measured on: the shapes the candidates were timed at
            timed_shapes = {k: [int(d) for d in np.shape(v)] for k, v in feeds[0].items()}
            dynamic = [f"{sp.name}[{axis}]={name!r}" for sp in src_specs for axis, name in sp.dynamic_dims.items()]
            extra["auto"] = {"candidates": [c.to_json() for c in candidates], "chosen": winner,
                             "timing": "interleaved rounds, same inputs and threads; median ms",
                             "input_shapes": timed_shapes,
                             "note": (f"dynamic dims {', '.join(dynamic)} were timed at 1; give --input-shape to "
                                      "time the size you deploy") if dynamic else ""}
        bundle = _write_bundle(output, best, profile, precision, extra, stage_options, model_path,
                               list(model_artifact.manifest.history) if model_artifact else [], started)
    return CompileResult(bundle, winner, bundle.manifest.info["precision_used"], best.verification, candidates,
                         timed_shapes)


def _write_bundle(output: Path, best: _Built, profile: TargetProfile, precision: str, extra: dict[str, Any],
                  stage_options: dict[str, Any], model_path: Path, history: list[Any], started: float) -> Artifact:
    """Copy the winner's files, add manifest.json (sha256 of every file), rename into place atomically."""
    from edgekit.artifact import Artifact, Manifest, StageRecord, atomic_dir, hash_tree, sha256_file, tool_versions

    compiled = best.compiled
    adapter = get_adapter_by_name(compiled.adapter)
    run_provenance = str(compiled.info.get("run_provenance", adapter.capabilities(profile).run_provenance.value))
    with atomic_dir(output) as final:
        shutil.copytree(compiled.path, final, dirs_exist_ok=True)
        info: dict[str, Any] = dict(compiled.info)
        info.update({
            "target": profile.name, "adapter": compiled.adapter, "precision": precision,
            "precision_used": str(compiled.info.get("precision_used", precision)),
            "source_model": SOURCE_MODEL, "run_provenance": run_provenance, "verification": best.verification,
            **extra,
        })
        estimate = None
        with contextlib.suppress(Exception):  # an estimate is optional; never fail a verified compile on it
            estimate = adapter.estimate(final / SOURCE_MODEL, profile)
        if estimate is not None:
            info["estimate"] = estimate
        files = hash_tree(final)
        v = best.verification
        record = StageRecord(
            stage="compile", options=stage_options, inputs={model_path.name: sha256_file(model_path)},
            outputs=files, metrics={"min_cosine": v["min_cosine"], "min_sqnr_db": v["min_sqnr_db"],
                                    "max_abs": v["max_abs"], "compile_s": round(best.compile_s, 3)},
            provenance=run_provenance, tool_versions=tool_versions(),
            duration_s=round(time.perf_counter() - started, 3),
        )
        manifest = Manifest(kind="bundle", inputs=compiled.manifest.inputs if compiled.manifest else [],
                            outputs=compiled.manifest.outputs if compiled.manifest else [],
                            files=files, history=[*history, record], info=info)
        manifest.metrics["compile"] = record.metrics
        sign(manifest)  # with this user's local key: their own TVM bundles load without --trust-bundle
        (final / "manifest.json").write_text(manifest.dumps())
    return Artifact(output, manifest)


def get_adapter_by_name(name: str) -> TargetAdapter:
    from edgekit.adapters.registry import get_adapter

    return get_adapter(name)


def _pick(built: dict[str, _Built], candidates: list[Candidate], feed: dict, rounds: int,
          note: Callable[[str], None]) -> str:
    """Time the passing candidates side by side and keep the fastest measured one."""
    by_name = {c.adapter: c for c in candidates}
    measured = {n: b for n, b in built.items() if str(b.runner.provenance) == Provenance.MEASURED.value}
    for name in set(built) - set(measured):
        by_name[name].reason = f"not timed: runs are {built[name].runner.provenance}, not measured on the device"
    if not measured:
        winner = next(iter(built))
        by_name[winner].status = "chosen"
        by_name[winner].reason = "no candidate can be measured here; first passing in profile order"
        return winner
    note(f"timing {', '.join(measured)} side by side ...")
    # feed validated once per runner; timed calls go straight to the backend (as bench does)
    timed = time_side_by_side({n: b.runner for n, b in measured.items()}, {n: feed for n in measured}, rounds=rounds)
    for name, t in timed.items():
        samples = t.samples or ([t.warm_ms] if t.rejected and t.warm_ms is not None else [])  # rejected: warm-up
        cand = by_name[name]
        cand.median_ms, cand.p90_ms = statistic_value(samples, "p50"), statistic_value(samples, "p90")
        cand.runs = len(samples)
        cand.timing_provenance = Provenance.MEASURED.value
        if t.rejected:  # passed numerics, lost on speed before the timed rounds
            cand.status, cand.reason = "passed", t.rejected
    ranked = sorted((n for n in timed if not timed[n].rejected), key=lambda n: by_name[n].median_ms or float("inf"))
    winner = ranked[0]
    best = by_name[winner]
    best.status = "chosen"
    best.reason = "fastest median among candidates that passed the numerics check"
    for name in ranked[1:]:
        c = by_name[name]
        c.status = "passed"
        c.reason = f"{(c.median_ms or 0) / (best.median_ms or 1):.2f}x the median of {winner}"
    return winner


# ---------------------------------------------------------------------------------------------
# compare


@dataclass
class BackendComparison:
    backend: str
    status: str  # ok | mismatch | failed | unavailable
    reason: str = ""
    precision_used: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    max_abs: float | None = None

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass
class CompareResult:
    model: str
    reference: str
    inputs: str
    precision: str
    backends: list[BackendComparison]

    @property
    def passed(self) -> bool:
        return all(b.status in ("ok", "unavailable") for b in self.backends)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "reference": self.reference, "inputs": self.inputs, "precision": self.precision,
                "passed": self.passed, "backends": [b.to_json() for b in self.backends]}


def _load_inputs(inputs: Any, specs: list[TensorSpec]) -> list[dict[str, np.ndarray]]:
    if isinstance(inputs, Mapping):
        return [{k: np.asarray(v) for k, v in inputs.items()}]
    path = Path(inputs)
    if path.suffix == ".npz" and path.is_file():
        return [load_arrays(path)]
    if path.suffix == ".npy" and path.is_file() and len(specs) == 1:
        return [{specs[0].name: load_arrays(path)[""]}]
    raise BadInputError("expected a .npz with one array per input (or .npy for one input)", path=path)


def compare(
    model: str | Path,
    backends: Iterable[str],
    *,
    target: str = "cpu",
    precision: str = "fp32",
    inputs: Mapping[str, np.ndarray] | str | Path | None = None,
    seed: int = 0,
    samples: int = 1,
    threads: int | None = None,
    adapter_options: Mapping[str, Any] | None = None,
    thresholds: Thresholds = Thresholds(),
) -> CompareResult:
    """Run the same inputs through each backend; per-output cosine/SQNR/max-abs vs onnxruntime CPU.

    Like Polygraphy's `run --onnxrt --trt`: a table of differences, not a pass/fail gate (each row
    still says whether it is within the compile tolerance for `precision`). `adapter_options` as in
    `compile` (`key` for all, `name.key` for one backend). Nothing is written.
    """
    from edgekit.onnxio import input_specs, load_onnx, quantization_info
    from edgekit.targets import get_profile

    model = Path(model)
    threads = check_threads(threads)
    proto = load_onnx(model)
    profile = get_profile(target)
    names = [b.strip() for b in backends if b.strip()]
    if not names:
        raise BadInputError("no backends given", path="--backends", hint="e.g. onnxruntime,openvino,tvm")
    if precision == "int8" and not quantization_info(proto).quantized:
        raise BadInputError("compare --precision int8 needs a QDQ model", path=model,
                            hint="run `edgekit quantize` first")
    specs = input_specs(proto)
    if inputs is not None:
        feeds, note = _load_inputs(inputs, specs), "given inputs"
    else:
        feeds, note = _feeds(specs, seed=seed, samples=samples)
    rows: list[BackendComparison] = []
    adapters = {name: _resolve_adapter(profile, name, option="--backends") for name in names}
    with tempfile.TemporaryDirectory(prefix="edgekit-compare-") as work:
        for name in names:
            adapter = adapters[name]
            why = _unavailable_reason(adapter, profile, precision)
            if why:
                rows.append(BackendComparison(name, "unavailable", why))
                continue
            opts = CompileOptions(precision=precision, threads=threads,
                                  adapter_options=options_for(name, adapter_options))
            try:
                with step(f"compare {name} · {precision}", f"backend {names.index(name) + 1}/{len(names)}"):
                    b = _build(adapter, profile, model, opts, Path(work) / name, reference=model, feeds=feeds,
                               inputs_note=note, thresholds=thresholds)
            except EdgekitError as exc:
                rows.append(BackendComparison(name, "failed", exc.one_line()))
                continue
            v = b.verification
            b.runner.close()
            rows.append(BackendComparison(name, "ok" if v["passed"] else "mismatch", v["reason"],
                                          str(b.compiled.info.get("precision_used", precision)), v["outputs"],
                                          v["min_cosine"], v["min_sqnr_db"], v["max_abs"]))
    return CompareResult(str(model), "onnxruntime CPU (ORT_ENABLE_ALL)", note, precision, rows)


__all__ = [
    "BackendComparison", "Candidate", "CompareResult", "CompileResult", "Thresholds", "compare", "compile",
    "judge", "verify_runner",
]
