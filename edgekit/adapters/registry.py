"""Adapter registry: built-ins by name plus third-party adapters from entry points.

Nothing is imported until asked for (tinygrad's `ops_*` habit): listing adapters reads names,
and availability is checked only when shown. An unknown name answers with the known ones.

A plugin declares, in its pyproject:
    [project.entry-points."edgekit.targets"]
    myaccel = "myaccel_edgekit:MyAccelAdapter"
The class subclasses `edgekit.adapters.base.TargetAdapter`; if it has a `profiles()` classmethod
returning profile dicts (same keys as targets/*.toml), those targets are added too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInputError

if TYPE_CHECKING:
    from edgekit.adapters.base import Availability, TargetAdapter
    from edgekit.targets import TargetProfile

ENTRY_POINT_GROUP = "edgekit.targets"

BUILTIN_ADAPTERS: dict[str, str] = {
    "null": "edgekit.adapters.null:NullAdapter",
    "onnxruntime": "edgekit.adapters.onnxruntime:OnnxRuntimeAdapter",
    "openvino": "edgekit.adapters.openvino:OpenVinoAdapter",
    "tvm": "edgekit.adapters.tvm:TvmAdapter",
    "ascend-atc": "edgekit.adapters.ascend:AscendAdapter",
    "magicmind": "edgekit.adapters.cambricon:MagicMindAdapter",
    "rknn": "edgekit.adapters.rknn:RknnAdapter",
}


@cache
def _plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def adapter_names() -> list[str]:
    """Every registered adapter: built-ins first, then plugins (a plugin cannot shadow a built-in)."""
    names = [n for n in BUILTIN_ADAPTERS if _module_exists(BUILTIN_ADAPTERS[n])]
    names += [n for n in _plugin_entry_points() if n not in BUILTIN_ADAPTERS]
    return names


def _module_exists(target: str) -> bool:
    import importlib.util

    module = target.split(":")[0]
    return importlib.util.find_spec(module) is not None


def adapter_origin(name: str) -> str:
    if name in BUILTIN_ADAPTERS:
        return "built-in"
    ep = _plugin_entry_points().get(name)
    return f"plugin ({ep.value})" if ep else "unknown"


@cache
def _adapter_class(name: str) -> type[TargetAdapter]:
    from edgekit.adapters.base import TargetAdapter

    if name in BUILTIN_ADAPTERS:
        module_name, _, attr = BUILTIN_ADAPTERS[name].partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    elif name in _plugin_entry_points():
        try:
            cls = _plugin_entry_points()[name].load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            from edgekit.errors import ToolchainMissingError

            raise ToolchainMissingError(f"plugin adapter {name!r} failed to import ({type(exc).__name__}: {exc})",
                                        path=ENTRY_POINT_GROUP, hint="reinstall or fix the plugin package") from None
    else:
        raise BadInputError(f"unknown backend {name!r}", path="--backend",
                            hint=f"available: {', '.join(adapter_names())}")
    if not (isinstance(cls, type) and issubclass(cls, TargetAdapter)):
        raise BadInputError(f"entry point {name!r} does not name a TargetAdapter subclass", path=ENTRY_POINT_GROUP)
    return cls


def get_adapter(name: str) -> TargetAdapter:
    """An adapter instance by name (imports its module now)."""
    return _adapter_class(name)()


def plugin_profiles() -> list[TargetProfile]:
    """Target profiles contributed by plugin adapters' `profiles()` classmethods."""
    from edgekit.targets import parse_profile

    found: list[TargetProfile] = []
    for name in _plugin_entry_points():
        if name in BUILTIN_ADAPTERS:
            continue
        cls = _adapter_class(name)
        for data in getattr(cls, "profiles", lambda: [])():
            found.append(parse_profile(dict(data), source=f"plugin {name}"))
    return found


def refresh() -> None:
    """Forget cached entry points and classes (after installing a plugin in this process)."""
    _plugin_entry_points.cache_clear()
    _adapter_class.cache_clear()
    from edgekit.targets import builtin_profiles

    builtin_profiles.cache_clear()


def adapter_availability(name: str, target: TargetProfile) -> Availability:
    """Whether adapter `name` can serve `target` here, never raising: the reason when not."""
    from edgekit.adapters.base import Availability
    from edgekit.errors import EdgekitError

    try:
        adapter = get_adapter(name)
    except EdgekitError as exc:
        return Availability.no(exc.message)
    except ImportError as exc:
        return Availability.no(f"adapter module failed to import: {exc}")
    try:
        return adapter.availability(target)
    except Exception as exc:  # capabilities probes run foreign code; report, never crash a listing
        return Availability.no(f"capabilities check failed: {type(exc).__name__}: {exc}")


def adapters_for(target: TargetProfile) -> list[str]:
    """Adapters named by a profile that are registered here (null is never listed: it is explicit-only)."""
    known = set(adapter_names())
    return [name for name in target.adapters if name in known and name != "null"]


@dataclass(frozen=True)
class AdapterStatus:
    """One adapter as seen from one target: usable here or why not (for `edgekit targets`)."""

    name: str
    origin: str
    description: str
    available: bool
    reason: str
    precisions: tuple[str, ...] = ()
    run_provenance: str = "not-run"


def adapter_status(name: str, target: TargetProfile) -> AdapterStatus:
    """Never raises: a missing module, a broken plugin or a failing probe becomes the reason."""
    avail = adapter_availability(name, target)
    if name not in adapter_names():
        return AdapterStatus(name, "missing", "", False, "adapter not installed in this edgekit")
    description, precisions, provenance = "", (), "not-run"
    try:
        adapter = get_adapter(name)
        description = adapter.description
        caps = adapter.capabilities(target)
        precisions, provenance = caps.precisions, caps.run_provenance.value
    except Exception:  # reported through `avail`
        pass
    return AdapterStatus(name, adapter_origin(name), description, avail.available, avail.reason, precisions,
                         provenance)


def describe_target(target: TargetProfile) -> dict[str, Any]:
    """A profile with the status of each adapter it names (plain data, for the CLI and JSON)."""
    from edgekit.artifact import to_jsonable

    return {
        "name": target.name, "description": target.description, "kind": target.kind,
        "precisions": list(target.precisions), "source": target.source_file,
        "adapters": [to_jsonable(adapter_status(n, target)) for n in target.adapters],
        "sections": {k: v for k, v in target.raw.items() if isinstance(v, dict)},
    }


def describe_all() -> dict[str, Any]:
    """Every profile with adapter availability, and every registered adapter with its origin."""
    from edgekit.targets import all_profiles

    profiles = all_profiles()
    return {
        "targets": [describe_target(p) for p in profiles.values()],
        "adapters": [{"name": n, "origin": adapter_origin(n),
                      "targets": [p.name for p in profiles.values() if n in p.adapters]} for n in adapter_names()],
    }
