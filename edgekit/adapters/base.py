"""The adapter contract.

An adapter compiles an ONNX model for a target profile and loads the result as a Runner. Every
figure it returns carries a Provenance, so a number from an NPU we do not have can never be
mistaken for a measurement. Runners follow Polygraphy's shape: the public `run` checks inputs
once; each adapter fills in a short `_run_impl`.
"""

from __future__ import annotations

import enum
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgekit.bundle import SOURCE_MODEL
from edgekit.errors import BadInputError, UnsupportedError
from edgekit.specs import TensorSpec, check_normalization

if TYPE_CHECKING:
    from edgekit.artifact import Manifest
    from edgekit.targets import TargetProfile

COMMON_OPTION_KEYS = frozenset({"tune"})  # adapter_options every adapter accepts (see CompileOptions)
MAX_STREAMS = 64  # parallel requests in throughput mode: more is a typo (and threads that hang a small host)
GENERIC_THROUGHPUT = "generic: threads calling runner.run (not the backend's own async machinery)"


class Provenance(enum.StrEnum):
    """Where a figure came from. Reports and budgets always show it."""

    MEASURED = "measured"  # run on this device
    EMULATED = "emulated"  # numerics reproduced on the host (simulator, fake-quant)
    ESTIMATED = "estimated"  # cost model (roofline)
    NOT_RUN = "not-run"


@dataclass(frozen=True)
class Figure:
    """A number with its unit, provenance and, when not measured, the basis it rests on."""

    value: float
    unit: str
    provenance: Provenance
    basis: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "provenance": self.provenance.value, "basis": self.basis}


@dataclass(frozen=True)
class Availability:
    """Whether something is usable here and, when not, why (shown to the user verbatim)."""

    available: bool
    reason: str = ""

    @classmethod
    def yes(cls, detail: str = "") -> Availability:
        return cls(True, detail)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)


@dataclass(frozen=True)
class Capabilities:
    precisions: tuple[str, ...]  # fp32, fp16, bf16, int8, mixed
    dynamic_shapes: bool
    toolchain: Availability  # compiler / python package present?
    device: Availability  # can we execute on the real device here?
    run_provenance: Provenance = Provenance.MEASURED  # what running a compiled model here gives
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeVerdict:
    """Support of one node on a target: `npu`/`supported`, `cpu-fallback`, `unsupported`, `unknown`."""

    node: str
    op_type: str
    verdict: str
    reason: str = ""
    source: str = ""


@dataclass
class SupportReport:
    target: str
    adapter: str
    verdicts: list[NodeVerdict] = field(default_factory=list)
    dynamic_dims: dict[str, dict[int, str]] = field(default_factory=dict)  # input -> axis -> dim name
    details: dict[str, Any] = field(default_factory=dict)  # partition, MAC share, ...

    @property
    def unsupported(self) -> list[NodeVerdict]:
        return [v for v in self.verdicts if v.verdict == "unsupported"]

    @property
    def ok(self) -> bool:
        return not self.unsupported


@dataclass(frozen=True)
class CompileOptions:
    """Options common to every adapter; adapter-specific knobs go in `adapter_options`.

    Each adapter documents and validates the keys of `adapter_options` it accepts and rejects
    unknown ones with BadInputError (`check_adapter_options`), so a typo never passes silently.

    Conventions shared by adapters (so tests and `--backend auto` can pass them to any adapter):
    - `precision`: what the user asked for. For `int8` on a float model the compile stage hands the
      adapter a QDQ model made by the quantize stage, unless the adapter sets `native_int8 = True`;
      then it gets the float model and `calibration` (a re-iterable of input dicts) and quantizes
      itself (OpenVINO NNCF). Record the precision actually computed in `CompiledModel.info
      ["precision_used"]`.
    - `adapter_options["tune"] = False` means "no (long) tuning": the conformance suite and quick
      compiles pass it; adapters that do not tune accept and ignore it (listed in `COMMON_OPTION_KEYS`).
    """

    precision: str = "fp32"  # fp32 | fp16 | bf16 | int8 | mixed
    threads: int | None = None
    input_shapes: tuple[TensorSpec, ...] = ()  # fix dynamic dims for targets that need it
    calibration: Any = None  # a calibration reader (iterable of input dicts) for int8 builds
    mean: tuple[float, ...] | None = None  # preprocessing the vendor fuses (AIPP, RKNN, MagicMind)
    std: tuple[float, ...] | None = None
    adapter_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_normalization(self.mean, self.std)  # before any adapter divides by std


@dataclass
class CompiledModel:
    """A bundle directory written by an adapter: its files plus manifest info it wants recorded."""

    path: Path
    adapter: str
    target: str
    precision: str
    files: list[str] = field(default_factory=list)  # relative paths the adapter wrote
    info: dict[str, Any] = field(default_factory=dict)  # precision actually used, tuned, vendor cmd
    manifest: Manifest | None = None

    # When the compile stage calls `adapter.load`, `manifest` is set (inputs/outputs, info) and the
    # bundle holds `source.onnx`; these helpers read the tensor specs from whichever is available.
    def input_specs(self) -> list[TensorSpec]:
        if self.manifest is not None and self.manifest.inputs:
            return list(self.manifest.inputs)
        from edgekit.onnxio import input_specs, load_onnx

        return input_specs(load_onnx(self.source_path, load_weights=False))

    def output_names(self) -> list[str]:
        if self.manifest is not None and self.manifest.outputs:
            return [s.name for s in self.manifest.outputs]
        from edgekit.onnxio import load_onnx, output_specs

        return [s.name for s in output_specs(load_onnx(self.source_path, load_weights=False))]

    @property
    def source_path(self) -> Path:
        """The ONNX the bundle was compiled from (always present in a bundle)."""
        return self.path / SOURCE_MODEL


@dataclass(frozen=True)
class LatencyEstimate:
    """A modelled latency; always provenance `estimated`, with every assumption listed."""

    latency_ms: float
    assumptions: tuple[str, ...]
    per_node: tuple[dict[str, Any], ...] = ()
    provenance: Provenance = Provenance.ESTIMATED


@dataclass(frozen=True)
class ThroughputRun:
    """What a throughput run did: `calls` requests of `items_per_call` items each finished in `seconds`
    by `streams` requests in flight, with each request's latency. `method` says whose machinery ran them
    (the backend's own async queue, parallel sessions, or the generic threads) so the figure is labelled."""

    calls: int
    items_per_call: int
    seconds: float
    latencies_ms: tuple[float, ...]
    streams: int
    method: str
    threads_per_stream: int | None = None  # backend threads each request uses (None: the backend decides)
    details: Mapping[str, Any] = field(default_factory=dict)  # backend facts (OpenVINO's streams, requests)

    @property
    def items_per_s(self) -> float:
        return self.calls * self.items_per_call / self.seconds if self.seconds > 0 else 0.0


def check_streams(value: Any, *, source: str = "--streams") -> int | None:
    """`value` as a number of parallel requests (None = the backend's choice), or exit 2 outside 1..MAX_STREAMS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"streams must be an integer, got {value!r}", path=source,
                            hint=f"1..{MAX_STREAMS}, or leave it out for the backend's choice")
    if not 1 <= value <= MAX_STREAMS:
        raise BadInputError(f"streams {value} is outside 1..{MAX_STREAMS}", path=source,
                            hint="about one stream per core is the usual optimum")
    return value


def run_streams(
    calls: Sequence[Callable[[], Any]], seconds: float, *, clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[list[float], int, float]:
    """Each callable on its own thread, back to back until `seconds` have passed (each finishes its last call).

    Returns (latency of every call in ms, calls done, wall seconds). Backends whose calls release the
    GIL (ONNX Runtime, OpenVINO) run them truly in parallel; that is the point of a throughput figure.
    """
    latencies: list[list[float]] = [[] for _ in calls]
    errors: list[BaseException] = []
    start = clock()
    deadline = start + int(seconds * 1e9)

    def loop(index: int, call: Callable[[], Any]) -> None:
        try:
            while clock() < deadline:
                t0 = clock()
                call()
                latencies[index].append((clock() - t0) / 1e6)
        except BaseException as exc:  # re-raised on the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = (clock() - start) / 1e9
    if errors:
        raise errors[0]
    flat = [x for per in latencies for x in per]
    return flat, len(flat), wall


class Runner(ABC):
    """Runs a compiled model. `run` validates inputs; subclasses implement `_run_impl`."""

    provenance: Provenance = Provenance.MEASURED
    # True when `run` may be called from several threads at once (the generic throughput mode needs it;
    # a runner holding one infer request must say False, its default)
    concurrent_run: ClassVar[bool] = False

    def __init__(self, input_specs: list[TensorSpec], output_names: list[str]):
        self.input_specs = list(input_specs)
        self.output_names = list(output_names)

    def run(self, inputs: Mapping[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        """Outputs by name. `check_inputs=False` skips the name/shape check: for timing loops that
        checked the same inputs once already (the check is edgekit's cost, not the model's)."""
        if not check_inputs:
            return self._run_impl(inputs)
        expected = {s.name: s for s in self.input_specs}
        missing = sorted(set(expected) - set(inputs))
        extra = sorted(set(inputs) - set(expected))
        if missing or extra:
            raise BadInputError(f"inputs do not match the model: missing {missing}, unexpected {extra}")
        for name, spec in expected.items():
            array = inputs[name]
            if array.ndim != len(spec.shape) or any(
                isinstance(d, int) and d != a for d, a in zip(spec.shape, array.shape, strict=True)
            ):
                raise BadInputError(f"input {name!r} has shape {tuple(array.shape)}, expected {spec.shape}")
        return self._run_impl(inputs)

    @abstractmethod
    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def throughput(
        self, feed: Mapping[str, np.ndarray], *, streams: int | None = None, seconds: float = 10.0,
        items_per_call: int = 1,
    ) -> ThroughputRun:
        """Items per second with `streams` requests in flight for `seconds` (feed checked by the caller).

        The default: `streams` threads calling `run` on this one runner, labelled generic; only one
        thread unless the runner declares `concurrent_run` (more is UnsupportedError, exit 3). Adapters
        with their own async machinery (OpenVINO's AsyncInferQueue, ONNX Runtime sessions) override
        this; the caller times the cold run, this the warm-up and the steady state.
        """
        count = check_streams(streams) or (2 if self.concurrent_run else 1)
        if count > 1 and not self.concurrent_run:
            raise UnsupportedError(f"{type(self).__name__}.run cannot be called from {count} threads at once",
                                   path="--streams", hint="this backend has no throughput mode of its own: "
                                                          "use --streams 1 (sequential) or --mode latency")
        for _ in range(count):  # warm-up: every thread's first call out of the figure
            self._run_impl(feed)
        latencies, calls, wall = run_streams([lambda: self._run_impl(feed)] * count, seconds)
        return ThroughputRun(calls, items_per_call, wall, tuple(latencies), count, GENERIC_THROUGHPUT)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources (sessions, simulator processes)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TargetAdapter(ABC):
    """One compiler/runtime that serves one or more target profiles."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # True: for int8 on a float model, give me the float model plus `CompileOptions.calibration`
    # (I quantize myself, e.g. NNCF); False: give me a QDQ model from the quantize stage.
    native_int8: ClassVar[bool] = False
    # True when `load` runs code from the bundle (a TVM `.so`): the loader then requires trust
    # (a bundle signed with the user's key, or --trust-bundle; see edgekit.bundle.require_trust).
    loads_native_code: ClassVar[bool] = False

    @abstractmethod
    def capabilities(self, target: TargetProfile) -> Capabilities: ...

    def availability(self, target: TargetProfile) -> Availability:
        """Toolchain and device together: usable here, or the first reason why not."""
        caps = self.capabilities(target)
        for part in (caps.toolchain, caps.device):
            if not part.available:
                return part
        return Availability.yes(caps.toolchain.reason)

    def check(self, model: Path, target: TargetProfile) -> SupportReport:
        """Per-node support; the default: standard ONNX ops are supported, custom-domain ops unknown."""
        import onnx

        from edgekit.onnxio import load_onnx

        verdicts = []
        for n in load_onnx(model).graph.node:
            domain = "" if n.domain in ("", "ai.onnx") else n.domain
            if domain in ("", "ai.onnx.ml") and onnx.defs.has(n.op_type, domain):
                verdicts.append(NodeVerdict(n.name, n.op_type, "supported", "executes the standard ONNX op"))
            elif domain == "":
                verdicts.append(NodeVerdict(n.name, n.op_type, "unsupported", f"'{n.op_type}' is not an ONNX operator"))
            else:  # e.g. com.microsoft contrib ops, or a user's custom op: only where a kernel is registered
                reason = f"custom-domain op ({domain}): runs only where a kernel for it is registered"
                verdicts.append(NodeVerdict(n.name, n.op_type, "unknown", reason))
        return SupportReport(target.name, self.name, verdicts)

    @abstractmethod
    def compile(self, model: Path, target: TargetProfile, options: CompileOptions, out_dir: Path) -> CompiledModel:
        """Write backend files into `out_dir` (a temp dir owned by the compile stage)."""

    @abstractmethod
    def load(self, compiled: CompiledModel, *, threads: int | None = None) -> Runner: ...

    def estimate(self, model: Path, target: TargetProfile) -> LatencyEstimate | None:
        """A labelled latency estimate, for targets we cannot measure here. None = no model."""
        return None

    def skip_in_auto(self, adapter_options: Mapping[str, Any]) -> str:
        """Why `--backend auto` should not try this adapter unasked ("" = try it). Naming it always works."""
        return ""

    def mixed_float_options(self, target: TargetProfile) -> dict[str, Any]:
        """adapter_options that run the float-kept part of a mixed INT8 model in a faster float precision
        (OpenVINO: bf16 on a CPU that has it). {} = the float part stays fp32. Precision auto tries them first
        and keeps them only when the build still meets the accuracy budget."""
        return {}


def check_adapter_options(
    adapter: str, options: Mapping[str, Any], allowed: Mapping[str, type | tuple[type, ...]]
) -> None:
    """Reject unknown or mistyped `adapter_options` keys (a typo must never pass silently)."""
    for key, value in options.items():
        if key in COMMON_OPTION_KEYS and key not in allowed:
            continue
        if key not in allowed:
            known = sorted(set(allowed) | COMMON_OPTION_KEYS)
            raise BadInputError(f"unknown option {key!r} for adapter {adapter}", path="adapter_options",
                                hint=f"known: {', '.join(known)}")
        if not isinstance(value, allowed[key]):
            raise BadInputError(f"option {key!r} for adapter {adapter} has type {type(value).__name__}",
                                path="adapter_options", hint=f"expected {allowed[key]}")


def require_available(adapter: TargetAdapter, target: TargetProfile) -> Capabilities:
    """Capabilities, or ToolchainMissingError with the reason when toolchain or device is absent."""
    from edgekit.errors import ToolchainMissingError

    caps = adapter.capabilities(target)
    for part in (caps.toolchain, caps.device):
        if not part.available:
            raise ToolchainMissingError(f"adapter {adapter.name} cannot serve target {target.name}: {part.reason}",
                                        hint="see `edgekit targets show " + target.name + "`")
    return caps
