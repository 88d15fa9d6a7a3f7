"""Adapter registry: built-ins by name, adapters registered in-process, and plugins from entry points.

Nothing heavy is imported until asked for (tinygrad's `ops_*` habit): listing adapters reads names,
and availability is checked only when shown. An unknown name answers with the known ones.

`plan_adapters` is the one answer to "which adapters serve this target, in order, and why each one
cannot"; compile, compare, check, the pipeline and `edgekit targets` all ask it. Plugins are found by
edgekit/plugins.py (group `edgekit.targets`); `registered(...)` adds an adapter and/or a profile for the
duration of a with block (tests use it instead of patching this module).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edgekit import plugins
from edgekit.adapters.base import Availability, Capabilities, TargetAdapter
from edgekit.errors import BadInputError, EdgekitError, ToolchainMissingError, UnsupportedError
from edgekit.progress import emit
from edgekit.targets import TargetProfile, all_profiles, builtin_profiles, registered_profile

ENTRY_POINT_GROUP = plugins.ENTRY_POINT_GROUP

BUILTIN_ADAPTERS: dict[str, str] = {
    "null": "edgekit.adapters.null:NullAdapter",
    "onnxruntime": "edgekit.adapters.onnxruntime:OnnxRuntimeAdapter",
    "openvino": "edgekit.adapters.openvino:OpenVinoAdapter",
    "tvm": "edgekit.adapters.tvm:TvmAdapter",
    "ascend-atc": "edgekit.adapters.ascend:AscendAdapter",
    "magicmind": "edgekit.adapters.cambricon:MagicMindAdapter",
    "rknn": "edgekit.adapters.rknn:RknnAdapter",
}

# Adapter classes registered in this process by `registered(...)`, by name (they shadow built-ins while registered).
_REGISTERED: dict[str, type[TargetAdapter]] = {}


def adapter_names() -> list[str]:
    """Every adapter: built-ins first, then registered ones, then plugins (a plugin cannot shadow either)."""
    names = list(BUILTIN_ADAPTERS)
    names += [n for n in _REGISTERED if n not in names]
    names += [n for n in plugins.names() if n not in names]
    return names


def adapter_origin(name: str) -> str:
    if name in _REGISTERED:
        return "registered"
    if name in BUILTIN_ADAPTERS:
        return "built-in"
    return plugins.origin(name) or "unknown"


def _adapter_class(name: str) -> type[TargetAdapter]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN_ADAPTERS:
        module_name, _, attr = BUILTIN_ADAPTERS[name].partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    elif name in plugins.entry_points():
        cls = plugins.load(name)
    else:
        raise BadInputError(f"unknown backend {name!r}", path="--backend",
                            hint=f"available: {', '.join(adapter_names())}")
    if not (isinstance(cls, type) and issubclass(cls, TargetAdapter)):
        raise BadInputError(f"entry point {name!r} does not name a TargetAdapter subclass", path=ENTRY_POINT_GROUP)
    return cls


def get_adapter(name: str) -> TargetAdapter:
    """An adapter instance by name (imports its module now)."""
    return _adapter_class(name)()


def refresh() -> None:
    """Forget cached entry points, plugin classes and built-in profiles (after installing a plugin in-process)."""
    plugins.refresh()
    builtin_profiles.cache_clear()


@contextlib.contextmanager
def registered(adapter_cls: type[TargetAdapter] | None = None, *, name: str | None = None,
               profile: TargetProfile | None = None) -> Iterator[None]:
    """Register an adapter class and/or a target profile for the duration of a with block.

    `name` defaults to the class's `name`; a different one registers a subclass carrying that name, so
    `adapter.name` and the registry agree. Both shadow a built-in of the same name while registered.
    """
    if adapter_cls is None and profile is None:
        raise BadInputError("registered() needs an adapter class, a profile or both", path="registered")
    with contextlib.ExitStack() as stack:
        if adapter_cls is not None:
            if not (isinstance(adapter_cls, type) and issubclass(adapter_cls, TargetAdapter)):
                raise BadInputError(f"{adapter_cls!r} is not a TargetAdapter subclass", path="registered")
            key = name or getattr(adapter_cls, "name", "")
            if not key:
                raise BadInputError(f"{adapter_cls.__name__} has no `name`", path="registered",
                                    hint="set the class attribute `name` or pass name=...")
            if getattr(adapter_cls, "name", None) != key:
                adapter_cls = type(adapter_cls.__name__, (adapter_cls,), {"name": key})
            previous = _REGISTERED.get(key)
            _REGISTERED[key] = adapter_cls
            stack.callback(_restore, key, previous)
        if profile is not None:
            stack.enter_context(registered_profile(profile))
        yield


def _restore(key: str, previous: type[TargetAdapter] | None) -> None:
    if previous is None:
        _REGISTERED.pop(key, None)
    else:
        _REGISTERED[key] = previous


# --- which adapters serve a target, and why not --------------------------------------------------------------


@dataclass(frozen=True)
class AdapterChoice:
    """One adapter as seen from one target and precision: usable here, or why not.

    `reason` is "" when usable (`detail` then says what was found); `error` is the exception an explicit
    request for this adapter raises (ToolchainMissingError: not installed or unavailable, exit 4;
    UnsupportedError: precision not offered, exit 3). `adapter` is the instance (None when not installed).
    """

    name: str
    usable: bool
    reason: str = ""
    origin: str = ""
    description: str = ""
    detail: str = ""
    capabilities: Capabilities | None = None
    adapter: TargetAdapter | None = field(default=None, compare=False, repr=False)
    error: EdgekitError | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        caps = self.capabilities
        return {"name": self.name, "origin": self.origin, "description": self.description,
                "available": self.usable, "reason": self.reason or self.detail,
                "precisions": list(caps.precisions) if caps else [],
                "run_provenance": caps.run_provenance.value if caps else "not-run"}


def unusable_reason(adapter: TargetAdapter, profile: TargetProfile, precision: str | None) -> str:
    """Why `adapter` cannot build `precision` for `profile` here ("" when it can). Probe errors propagate."""
    return _why(adapter.availability(profile), adapter.capabilities(profile), profile, precision)


def _why(avail: Availability, caps: Capabilities, profile: TargetProfile, precision: str | None) -> str:
    if not avail.available:
        return avail.reason
    if precision is not None and precision not in caps.precisions:
        return f"{precision} not offered on {profile.name} (offers {', '.join(caps.precisions)})"
    return ""


def _choice(name: str, profile: TargetProfile, precision: str | None, option: str) -> AdapterChoice:
    """The status of one adapter name for `profile`; never raises."""
    if name not in adapter_names():
        why = "adapter not installed in this edgekit"
        installed = [a for a in profile.adapters if a in adapter_names()]
        return AdapterChoice(name, False, why, "missing", error=ToolchainMissingError(
            f"backend {name!r} is named by target {profile.name} but not installed here", path=option,
            hint=f"installed: {', '.join([*installed, 'null'])}"))
    origin = adapter_origin(name)
    try:
        adapter = get_adapter(name)
    except EdgekitError as exc:
        return AdapterChoice(name, False, exc.message, origin, error=exc)
    except ImportError as exc:
        why = f"adapter module failed to import: {exc}"
        return AdapterChoice(name, False, why, origin, error=ToolchainMissingError(f"backend {name}: {why}",
                                                                                   path=option))
    unavailable = f"see `edgekit targets show {profile.name}`"
    try:
        caps = adapter.capabilities(profile)
        avail = adapter.availability(profile)
        why = _why(avail, caps, profile, precision)
    except Exception as exc:  # capabilities probes run foreign code; report, never crash a listing
        why = f"capabilities check failed: {type(exc).__name__}: {exc}"
        return AdapterChoice(name, False, why, origin, adapter.description, adapter=adapter,
                             error=ToolchainMissingError(f"backend {name} is unavailable for {profile.name}: {why}",
                                                         path=option, hint=unavailable))
    if not why:
        return AdapterChoice(name, True, "", origin, adapter.description, avail.reason, caps, adapter)
    error: EdgekitError = (
        ToolchainMissingError(f"backend {name} is unavailable for {profile.name}: {why}", path=option, hint=unavailable)
        if not avail.available else UnsupportedError(f"backend {name}: {why}", path="--precision"))
    return AdapterChoice(name, False, why, origin, adapter.description, "", caps, adapter, error)


def _requested(profile: TargetProfile, backend: str, option: str) -> list[str]:
    """Adapter names for a backend request: `auto` (the profile's, in order, without null) or `a` / `a,b`."""
    if backend == "auto":
        return list(dict.fromkeys(a for a in profile.adapters if a != "null"))
    names = list(dict.fromkeys(b.strip() for b in backend.split(",") if b.strip()))
    installed = adapter_names()
    serving = [a for a in profile.adapters if a in installed and a != "null"]
    choices = ", ".join([*(["auto"] if option == "--backend" else []), *serving, "null"])
    if not names:
        raise BadInputError("no backend given", path=option, hint=f"available for {profile.name}: {choices}")
    for name in names:
        if name not in installed and name not in profile.adapters:
            raise BadInputError(f"unknown backend {name!r}", path=option,
                                hint=f"available for {profile.name}: {choices}")
        if name != "null" and name not in profile.adapters:
            raise BadInputError(f"backend {name!r} does not serve target {profile.name}", path=option,
                                hint=f"available for {profile.name}: {choices}")
    return names


def plan_adapters(profile: TargetProfile, backend: str = "auto", precision: str | None = "fp32", *,
                  option: str = "--backend") -> list[AdapterChoice]:
    """Which adapters serve `profile` for this request, in order, and why each one cannot.

    `backend`: "auto" (every adapter the profile names, in profile order; `null` is explicit-only),
    "name" or "a,b" (those, in that order). `precision` None skips the precision check. An explicit name
    that is unknown or does not serve the profile is the user's mistake: BadInputError (exit 2), with
    `option` (the flag it came from) in the message. Everything else is data: nothing else raises.
    """
    names = _requested(profile, backend, option)
    choices = []
    for i, name in enumerate(names, 1):
        emit("checking adapters", i, len(names), f"{name} for {profile.name}")  # a probe can take seconds (CUDA)
        choices.append(_choice(name, profile, precision, option))
    return choices


def adapter_availability(name: str, target: TargetProfile) -> Availability:
    """Whether adapter `name` can serve `target` here (any precision), never raising: the reason when not."""
    choice = _choice(name, target, None, "--backend")
    return Availability(choice.usable, choice.reason or choice.detail)


def describe_target(target: TargetProfile) -> dict[str, Any]:
    """A profile with the status of each adapter it names (plain data, for the CLI and JSON)."""
    adapters = []
    for i, name in enumerate(target.adapters, 1):
        emit("checking adapters", i, len(target.adapters), f"{name} for {target.name}")  # a probe can take seconds
        adapters.append(_choice(name, target, None, "--backend").to_json())
    return {
        "name": target.name, "description": target.description, "kind": target.kind,
        "precisions": list(target.precisions), "source": target.source_file,
        "adapters": adapters,
        "sections": {k: v for k, v in target.raw.items() if isinstance(v, dict)},
    }


def describe_all() -> dict[str, Any]:
    """Every profile with adapter availability, and every registered adapter with its origin."""
    profiles = all_profiles()
    return {
        "targets": [describe_target(p) for p in profiles.values()],
        "adapters": [{"name": n, "origin": adapter_origin(n),
                      "targets": [p.name for p in profiles.values() if n in p.adapters]} for n in adapter_names()],
    }
