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
from functools import cache
from importlib import metadata
from typing import TYPE_CHECKING

from edgekit.errors import BadInputError

if TYPE_CHECKING:
    from edgekit.adapters.base import TargetAdapter
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
        cls = _plugin_entry_points()[name].load()
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
