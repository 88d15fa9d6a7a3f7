"""torch → ONNX, verified against torch on the same seeded input.

MODEL may be a zoo name (`zoo:resnet18`), `package.module:factory` (a callable returning an
nn.Module; naming it is the request to import and call it), a TorchScript file, a `torch.export`
`.pt2` file, a fully pickled module (only with `trust_pickle=True`: unpickling runs code), or an
nn.Module object. Weights (`weights=`) are always read with `torch.load(weights_only=True)`.

The ONNX file is written beside its destination under a temp name, run with onnxruntime, compared
with torch, and only then renamed: a failed export or a failed check leaves no output file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from edgekit.specs import TensorSpec, as_specs, split_trace_sizes

EXPORTERS = ("torchscript", "dynamo")
_TORCH_SUFFIXES = {".pt", ".pth", ".ts", ".torchscript", ".jit", ".pkl", ".pt2", ".bin"}


@dataclass(frozen=True)
class ExportOptions:
    """Everything that changes the exported file or its verdict (stored in the manifest)."""

    opset: int = 17
    dynamic_batch: bool = False
    exporter: str = "torchscript"
    atol: float = 1e-4
    rtol: float = 1e-3
    seed: int = 0
    trust_pickle: bool = False
    trace_sizes: dict[str, int] = field(default_factory=dict)  # dynamic dim name -> size traced and verified at


_DEFAULTS = ExportOptions()


@dataclass(frozen=True)
class ExportResult:
    """The written model, how it compared with torch, and its tensor specs."""

    artifact: Artifact
    comparison: Comparison
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    duration_s: float
    source: str
    options: ExportOptions = field(default_factory=ExportOptions)

    @property
    def path(self) -> Path:
        return self.artifact.path

    @property
    def specs(self) -> list[TensorSpec]:
        """Input specs of the written model (dynamic dims named)."""
        return self.inputs

    @property
    def duration(self) -> float:
        return self.duration_s

    def to_json(self) -> dict[str, Any]:
        from edgekit.artifact import to_jsonable

        return to_jsonable({
            "path": str(self.path), "manifest": str(self.artifact.manifest_path), "source": self.source,
            "sha256": self.artifact.manifest.files.get(self.path.name),
            "inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs],
            "duration_s": round(self.duration_s, 3), "options": dataclasses.asdict(self.options),
            "verification": comparison_json(self.comparison),
        })


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """A Comparison as plain data for manifests and --json (per-output max abs/rel, cosine, verdict)."""
    return {
        "passed": comparison.passed, "worst": comparison.worst, "atol": comparison.atol, "rtol": comparison.rtol,
        "max_abs": comparison.max_abs, "max_rel": comparison.max_rel, "notes": list(comparison.notes),
        "outputs": {o.name: {"shape": list(o.shape), "max_abs": o.max_abs, "max_rel": o.max_rel,
                             "cosine": o.cosine, "sqnr_db": o.sqnr_db, "within_tolerance": o.within_tolerance}
                    for o in comparison.outputs},
    }


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ToolchainMissingError("torch is not installed", path="export",
                                    hint="pip install torch==2.13.0 (CPU) before edgekit") from None
    return torch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress and deprecation warnings; a library stays silent."""
    sink = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ------------------------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class LoadedModel:
    module: Any  # torch.nn.Module (or ScriptModule)
    name: str  # default output stem
    source: str  # what the user passed, for the manifest
    source_sha256: dict[str, str]
    default_inputs: list[TensorSpec]
    output_names: list[str]
    zoo: str | None = None
    program: Any = None  # the torch.export ExportedProgram of a .pt2 file (exported with the dynamo exporter)


def load_model(model: Any, *, weights: str | Path | None = None, trust_pickle: bool = False) -> LoadedModel:
    """Resolve any accepted MODEL form to an nn.Module in eval mode (BadInputError naming MODEL otherwise)."""
    torch = _torch()
    if isinstance(model, torch.nn.Module):
        loaded = LoadedModel(model, type(model).__name__.lower(), f"python:{type(model).__qualname__}", {}, [], [])
    elif not isinstance(model, (str, Path)):
        raise BadInputError(f"cannot export a {type(model).__name__}", path="MODEL",
                            hint="pass zoo:NAME, package.module:factory, a TorchScript/.pt2 file or an nn.Module")
    else:
        text = str(model)
        if text.startswith("zoo:"):
            loaded = _load_zoo(text)
        elif Path(text).exists():
            loaded = _load_file(Path(text), trust_pickle=trust_pickle)
        elif re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", text):
            loaded = _load_factory(text)
        elif Path(text).suffix.lower() in _TORCH_SUFFIXES | {".onnx"} or "/" in text:
            raise BadInputError("no such file", path=text, hint="check the path")
        else:
            raise BadInputError(f"cannot tell what model {text!r} is", path="MODEL",
                                hint="use zoo:NAME (see `edgekit zoo`), package.module:factory or a model file")
    module = loaded.module
    if weights is not None:
        _load_weights(module, Path(weights))
        loaded = dataclasses.replace(loaded, source_sha256={**loaded.source_sha256,
                                                             Path(weights).name: sha256_file(weights)})
    if hasattr(module, "eval"):
        with contextlib.suppress(NotImplementedError):  # an ExportedProgram's module() refuses eval()
            module.eval()
    return loaded


def _load_zoo(text: str) -> LoadedModel:
    from edgekit import zoo

    entry = zoo.get_entry(text)
    return LoadedModel(zoo.create(entry.name), entry.name, f"zoo:{entry.name}", {}, list(entry.inputs),
                       list(entry.outputs), zoo=entry.name)


def _load_file(path: Path, *, trust_pickle: bool) -> LoadedModel:
    torch = _torch()
    if path.is_dir():
        raise BadInputError("is a directory, expected a model file", path=path)
    if path.stat().st_size == 0:
        raise BadInputError("file is empty", path=path)
    if path.suffix.lower() == ".onnx":
        raise BadInputError("already an ONNX model", path=path, hint="use `edgekit simplify` or `edgekit inspect`")
    digest = {path.name: sha256_file(path)}
    name = path.stem
    if path.suffix.lower() == ".pt2":
        try:
            with _quiet():
                program = torch.export.load(str(path))
        except Exception as exc:
            raise BadInputError(f"not a torch.export .pt2 file ({_first_line(exc)})", path=path,
                                hint="save it with torch.export.save(torch.export.export(model, args), path)") from None
        return LoadedModel(program.module(), name, str(path), digest, [], [], program=program)
    with contextlib.suppress(Exception), _quiet():
        return LoadedModel(torch.jit.load(str(path), map_location="cpu"), name, str(path), digest, [], [])
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if "unsupported global" not in str(exc).lower():  # anything else: not a torch file at all
            raise BadInputError(f"not a TorchScript, .pt2 or torch file ({_first_line(exc)})", path=path,
                                hint="pass zoo:NAME, package.module:factory, a TorchScript or a .pt2 file") from None
        if not trust_pickle:
            raise BadInputError("holds a pickled Python object; loading it runs code from the file", path=path,
                                hint="pass --trust-pickle only if you trust its author, or export TorchScript/.pt2 "
                                     "or use package.module:factory with --weights") from None
        try:
            with _quiet():
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise BadInputError(f"cannot unpickle ({_first_line(exc2)})", path=path,
                                hint="the classes it needs must be importable here") from None
    if isinstance(obj, torch.nn.Module):
        return LoadedModel(obj, name, str(path), digest, [], [])
    if isinstance(obj, dict):
        raise BadInputError("holds a state_dict (weights only), not a model", path=path,
                            hint="pass package.module:factory as MODEL and this file as --weights")
    raise BadInputError(f"holds a {type(obj).__name__}, not an nn.Module", path=path)


def _load_factory(text: str) -> LoadedModel:
    torch = _torch()
    module_name, _, attr = text.rpartition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)  # `mymodels:build` from the current folder, like uvicorn
    importlib.invalidate_caches()  # a module file created a moment ago must be found
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise BadInputError(f"cannot import module {module_name!r} ({exc})", path=text,
                                hint="check the spelling and that the package is installed or in this folder") from None
        except Exception as exc:
            raise BadInputError(f"importing {module_name!r} raised {type(exc).__name__}: {_first_line(exc)}",
                                path=text, hint="fix the module, or run with --debug for the traceback") from exc
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise BadInputError(f"module {module_name!r} has no attribute {attr!r}", path=text,
                                hint="name a function or class that returns an nn.Module")
        target = getattr(target, part)
    if isinstance(target, torch.nn.Module):
        built = target
    elif callable(target):
        try:
            built = target()
        except Exception as exc:
            raise BadInputError(f"factory raised {type(exc).__name__}: {_first_line(exc)}", path=text,
                                hint="fix the factory, or run with --debug for the traceback") from exc
    else:
        raise BadInputError(f"{attr!r} is not callable", path=text, hint="name a function returning an nn.Module")
    if not isinstance(built, torch.nn.Module):
        raise BadInputError(f"factory returned a {type(built).__name__}, not an nn.Module", path=text)
    return LoadedModel(built, attr.split(".")[-1], text, {}, [], [])


def _load_weights(module: Any, path: Path) -> None:
    torch = _torch()
    if not path.is_file():
        raise BadInputError("no such file", path=path, hint="--weights takes a state_dict saved with torch.save")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInputError(f"cannot read weights safely ({type(exc).__name__}: {_first_line(exc)})", path=path,
                            hint="save a plain state_dict: torch.save(model.state_dict(), path)") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BadInputError(f"holds a {type(state).__name__}, not a state_dict", path=path)
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        # all lines: the first one only says "Error(s) in loading state_dict", the keys follow
        detail = " ".join(str(exc).split())[:400]
        raise BadInputError(f"weights do not fit the model ({detail})", path=path,
                            hint="the factory must build the same architecture the weights were saved from") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


# ------------------------------------------------------------------------------------------ export


def default_output(name: str) -> Path:
    """`./<name>.onnx`: the file a user running `edgekit export MODEL` in a folder expects to find."""
    return Path.cwd() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.onnx"


def _flatten_outputs(result: Any) -> list[Any]:
    torch = _torch()
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [t for v in result.values() for t in _flatten_outputs(v)]
    if isinstance(result, (list, tuple)):
        return [t for v in result for t in _flatten_outputs(v)]
    raise UnsupportedError(f"model returned a {type(result).__name__}; only tensors (or tuples/dicts) export",
                           path="MODEL")


def export(
    model: Any,
    input_shapes: Sequence[TensorSpec | str] | None = None,
    output: str | Path | None = None,
    *,
    opset: int = _DEFAULTS.opset,
    dynamic_batch: bool = _DEFAULTS.dynamic_batch,
    exporter: str = _DEFAULTS.exporter,
    weights: str | Path | None = None,
    trust_pickle: bool = _DEFAULTS.trust_pickle,
    atol: float = _DEFAULTS.atol,
    rtol: float = _DEFAULTS.rtol,
    seed: int = _DEFAULTS.seed,
    output_names: Sequence[str] | None = None,
    trace_sizes: Mapping[str, int] | None = None,
) -> ExportResult:
    """Export MODEL to ONNX, verify it with onnxruntime against torch, write it with a manifest.

    `input_shapes`: `NAME:1,3,224,224` strings or TensorSpecs (zoo models default to their own);
    a named dim (`input:batch,3,224,224`) stays dynamic and is traced at size 1, or at the size given
    as `NAME=SIZE` (`input:1,3,h=12,w=12`, or `trace_sizes={"h": 12}`). Output defaults to `./<model-name>.onnx`.
    Raises BadInputError (exit 2) for bad MODEL/shapes, CheckFailedError (exit 1) when ONNX and torch
    disagree beyond atol + rtol * |ref| (naming the worst output), UnsupportedError (exit 3) when the
    exporter cannot convert the model.
    """
    started = time.perf_counter()
    if exporter not in EXPORTERS:
        raise BadInputError(f"unknown exporter {exporter!r}", path="--exporter", hint=f"one of {', '.join(EXPORTERS)}")
    if not 7 <= opset <= 23:
        raise BadInputError(f"opset {opset} is out of range", path="--opset", hint="use 13..21 (default 17)")
    given = list(input_shapes or [])
    texts, sizes = split_trace_sizes([str(s) for s in given if not isinstance(s, TensorSpec)])
    plain = iter(as_specs(texts))
    specs = [s if isinstance(s, TensorSpec) else next(plain) for s in given]  # in the order given
    sizes = {**sizes, **dict(trace_sizes or {})}
    loaded = load_model(model, weights=weights, trust_pickle=trust_pickle)
    if loaded.program is not None:  # a .pt2 is already a torch.export program: only the dynamo exporter takes it
        if dynamic_batch:
            raise BadInputError("a .pt2 program's shapes were fixed when it was exported", path="--dynamic-batch",
                                hint="export the .pt2 with dynamic_shapes, or pass package.module:factory")
        exporter = "dynamo"
    options = ExportOptions(opset=opset, dynamic_batch=dynamic_batch, exporter=exporter, atol=atol, rtol=rtol,
                            seed=seed, trust_pickle=trust_pickle, trace_sizes=sizes)
    if not specs:
        if not loaded.default_inputs:
            raise BadInputError("input shapes are needed for this model", path="--input-shape",
                                hint="e.g. --input-shape input:1,3,224,224 (one per model input)")
        specs = list(loaded.default_inputs)
    if loaded.default_inputs:
        _check_against_zoo(specs, loaded)
    torch = _torch()
    _check_trace_sizes(specs, sizes)
    feeds = onnxio.random_inputs(specs, seed=seed, dims=sizes)
    args = tuple(torch.from_numpy(feeds[s.name]) for s in specs)
    reference_tensors = _forward(loaded.module, args, specs, sizes)
    names = list(output_names or loaded.output_names or [])
    if len(names) != len(reference_tensors):
        names = ["output"] if len(reference_tensors) == 1 else [f"output{i}" for i in range(len(reference_tensors))]
    reference = {n: t.detach().cpu().numpy() for n, t in zip(names, reference_tensors, strict=True)}

    dest = Path(output) if output is not None else default_output(loaded.name)
    if dest.is_dir():
        raise BadInputError("is a directory", path=dest, hint="give a file name ending in .onnx")
    with atomic_path(dest) as tmp:
        _run_exporter(loaded.program if loaded.program is not None else loaded.module, args, tmp, specs, names,
                      options)
        try:
            got = onnxio.run_reference(tmp, feeds)
        except Exception as exc:
            raise UnsupportedError(f"onnxruntime cannot run the exported model ({_first_line(exc)[:300]})",
                                   path=dest, hint="try another --opset or --exporter") from None
        comparison = compare_outputs(reference, got, atol=atol, rtol=rtol)
        if not comparison.passed:
            worst = comparison.by_name().get(comparison.worst or "")
            detail = f"max abs {worst.max_abs:.3g}, max rel {worst.max_rel:.3g}" if worst else "; ".join(
                comparison.notes)
            raise CheckFailedError(
                f"ONNX output {comparison.worst!r} differs from torch ({detail}) beyond atol={atol:g}, rtol={rtol:g}",
                path=dest, hint="try --exporter dynamo or another --opset; raise --atol/--rtol only if you accept it")
        batch_check = _check_other_batch(loaded.module, tmp, specs, names, options) if dynamic_batch else None
        digest = sha256_file(tmp)
        exported = onnxio.load_onnx(tmp, load_weights=False)
    in_specs, out_specs = onnxio.input_specs(exported), onnxio.output_specs(exported)
    duration = time.perf_counter() - started
    record = StageRecord(
        stage="export",
        options={**dataclasses.asdict(options), "source": loaded.source, "weights": str(weights) if weights else None,
                 "input_shapes": [str(s) for s in specs]},
        inputs=dict(loaded.source_sha256),
        outputs={dest.name: digest},
        metrics={"max_abs": comparison.max_abs, "max_rel": comparison.max_rel, "passed": comparison.passed,
                 "per_output": comparison_json(comparison)["outputs"],
                 **({"batch_check": batch_check} if batch_check else {})},
        provenance="measured",
        duration_s=round(duration, 3),
    )
    manifest = Manifest(kind="onnx", inputs=in_specs, outputs=out_specs, files={dest.name: digest},
                        info={"source": loaded.source, **({"zoo": loaded.zoo} if loaded.zoo else {})})
    manifest.add_stage(record)
    write_text_atomic(manifest_path_for(dest), manifest.dumps())
    return ExportResult(Artifact(dest, manifest), comparison, in_specs, out_specs, duration, loaded.source, options)


def _check_other_batch(module: Any, onnx_path: Path, specs: list[TensorSpec], names: list[str],
                       options: ExportOptions) -> dict[str, Any]:
    """--dynamic-batch: run batch 2 through torch and onnxruntime, so a batch baked in at trace time is caught."""
    torch = _torch()
    batch = 2
    specs2 = [dataclasses.replace(s, shape=(batch, *s.shape[1:])) for s in specs]
    feeds = onnxio.random_inputs(specs2, seed=options.seed + 1, dims=options.trace_sizes)
    reference_tensors = _forward(module, tuple(torch.from_numpy(feeds[s.name]) for s in specs2), specs2,
                                 options.trace_sizes)
    reference = {n: t.detach().cpu().numpy() for n, t in zip(names, reference_tensors, strict=True)}
    try:
        got = onnxio.run_reference(onnx_path, feeds)
    except Exception as exc:
        raise CheckFailedError(f"--dynamic-batch: the ONNX model fails at batch {batch} ({_first_line(exc)[:200]})",
                               path="--dynamic-batch", hint="the model bakes in batch 1 (e.g. x.view(1, -1)); use "
                                                            "x.flatten(1) or export without --dynamic-batch") from None
    comparison = compare_outputs(reference, got, atol=options.atol, rtol=options.rtol)
    if not comparison.passed:
        raise CheckFailedError(f"--dynamic-batch: output {comparison.worst!r} is wrong at batch {batch}",
                               path="--dynamic-batch", hint="the model bakes in batch 1 (e.g. x.view(1, -1)); use "
                                                            "x.flatten(1) or export without --dynamic-batch")
    return {"batch": batch, "max_abs": comparison.max_abs, "passed": True}


def _check_against_zoo(specs: list[TensorSpec], loaded: LoadedModel) -> None:
    """Zoo models know their inputs: catch a wrong name or rank before torch gives a cryptic error."""
    expected = {s.name: s for s in loaded.default_inputs}
    if len(specs) != len(expected):
        raise BadInputError(f"{loaded.name} takes {len(expected)} input(s), got {len(specs)}", path="--input-shape",
                            hint="expected " + " ".join(str(s) for s in loaded.default_inputs))
    for spec in specs:
        ref = expected.get(spec.name)
        if ref is None:
            raise BadInputError(f"{loaded.name} has no input {spec.name!r}", path="--input-shape",
                                hint="expected " + " ".join(str(s) for s in loaded.default_inputs))
        if len(spec.shape) != len(ref.shape):
            raise BadInputError(f"input {spec.name!r} has rank {len(spec.shape)}, {loaded.name} expects "
                                f"{len(ref.shape)}", path="--input-shape", hint=f"e.g. {ref}")


def _check_trace_sizes(specs: list[TensorSpec], sizes: Mapping[str, int]) -> None:
    """A trace size for a dim no input has is a typo, not something to ignore."""
    named = {str(d) for s in specs for d in s.dynamic_dims.values()}
    unknown = sorted(set(sizes) - named)
    if unknown:
        raise BadInputError(f"trace size for {', '.join(map(repr, unknown))}, which names no dynamic dim",
                            path="--input-shape", hint="name the dim in the shape: input:1,3,h=12,w=12")
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise BadInputError(f"trace size {name}={size!r} is not an integer >= 1", path="--input-shape")


def _forward(module: Any, args: tuple[Any, ...], specs: list[TensorSpec], sizes: Mapping[str, int]) -> list[Any]:
    torch = _torch()
    try:
        with torch.no_grad(), _quiet():
            result = module(*args)
    except Exception as exc:
        shapes = " ".join(str(s) for s in specs)
        hint = "check the number, names, rank and sizes of the inputs"
        untraced = [s for s in specs if any(d not in sizes for d in s.dynamic_dims.values())]
        if untraced:  # a named dim without a size ran at 1: a 3x3 conv on a 1x1 image fails
            example = " ".join(f"{s.name}:" + ",".join(f"{d}={sizes.get(str(d), 12)}" if not isinstance(d, int)
                                                       else str(d) for d in s.shape) for s in untraced)
            hint = f"dynamic dims are traced at 1 unless given a size: {example}"
        raise BadInputError(f"the model's forward failed on {shapes}: {type(exc).__name__}: {_first_line(exc)[:200]}",
                            path="--input-shape", hint=hint) from exc
    return _flatten_outputs(result)


def _run_exporter(module: Any, args: tuple[Any, ...], dest: Path, specs: list[TensorSpec], output_names: list[str],
                  options: ExportOptions) -> None:
    torch = _torch()
    dynamic: dict[str, dict[int, str]] = {}
    for spec in specs:
        dims = dict(spec.dynamic_dims)
        if options.dynamic_batch:
            dims[0] = "batch"
        if dims:
            dynamic[spec.name] = dims
    if options.dynamic_batch:
        for name in output_names:
            dynamic[name] = {0: "batch"}
    try:
        with torch.no_grad(), _quiet():
            if options.exporter == "torchscript":
                torch.onnx.export(module, args, str(dest), input_names=[s.name for s in specs],
                                  output_names=output_names, opset_version=options.opset,
                                  dynamic_axes=dynamic or None, dynamo=False, do_constant_folding=True)
            else:
                _export_dynamo(torch, module, args, dest, specs, output_names, options, dynamic)
    except ImportError as exc:
        raise ToolchainMissingError(f"the dynamo exporter needs {exc.name or 'onnxscript'}", path="--exporter",
                                    hint="pip install onnxscript, or use --exporter torchscript") from None
    except Exception as exc:
        raise UnsupportedError(f"{options.exporter} exporter failed: {type(exc).__name__}: {_first_line(exc)[:300]}",
                               path="MODEL", hint="try the other --exporter or another --opset; --debug shows the "
                                                  "traceback") from exc


def _export_dynamo(torch: Any, module: Any, args: tuple[Any, ...], dest: Path, specs: list[TensorSpec],
                   output_names: list[str], options: ExportOptions, dynamic: dict[str, dict[int, str]]) -> None:
    dynamic_shapes = None
    if any(s.name in dynamic for s in specs):
        dims: dict[str, Any] = {}
        shapes = []
        for spec in specs:
            axes = dynamic.get(spec.name, {})
            shapes.append({axis: dims.setdefault(name, torch.export.Dim(name)) for axis, name in axes.items()} or None)
        dynamic_shapes = tuple(shapes)
    program = torch.onnx.export(module, args, None, input_names=[s.name for s in specs], output_names=output_names,
                                opset_version=options.opset, dynamo=True, dynamic_shapes=dynamic_shapes,
                                external_data=False)
    program.save(str(dest), external_data=False)

