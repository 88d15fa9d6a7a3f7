"""Third-party adapters and target profiles from the `edgekit.targets` entry-point group.

A plugin declares, in its pyproject:
    [project.entry-points."edgekit.targets"]
    myaccel = "myaccel_edgekit:MyAccelAdapter"
The class subclasses `edgekit.adapters.base.TargetAdapter`; if it has a `profiles()` classmethod
returning profile dicts (same keys as targets/*.toml), those targets are added too.

Its own small core module so that `targets` (profiles) and `adapters.registry` (classes) both read
plugins without importing each other. The registry checks that a loaded object is an adapter class.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from typing import Any

from edgekit.errors import ToolchainMissingError

ENTRY_POINT_GROUP = "edgekit.targets"


@cache
def entry_points() -> dict[str, metadata.EntryPoint]:
    """Installed plugin entry points by name (read once; `refresh()` forgets them)."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def names() -> list[str]:
    return list(entry_points())


def origin(name: str) -> str:
    """`plugin (module:attr)` for a plugin, "" when no plugin has that name."""
    ep = entry_points().get(name)
    return f"plugin ({ep.value})" if ep else ""


@cache
def load(name: str) -> Any:
    """The object a plugin's entry point names; a broken plugin is a missing toolchain, not a traceback."""
    ep = entry_points().get(name)
    if ep is None:
        raise KeyError(name)
    try:
        return ep.load()
    except Exception as exc:  # a broken plugin must not take the whole CLI down
        raise ToolchainMissingError(f"plugin adapter {name!r} failed to import ({type(exc).__name__}: {exc})",
                                    path=ENTRY_POINT_GROUP, hint="reinstall or fix the plugin package") from None


def profile_dicts() -> list[tuple[str, dict[str, Any]]]:
    """(plugin name, profile dict) from each plugin class's `profiles()` classmethod."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name in entry_points():
        for data in getattr(load(name), "profiles", lambda: [])():
            found.append((name, dict(data)))
    return found


def refresh() -> None:
    """Forget cached entry points and loaded objects (after installing a plugin in this process)."""
    entry_points.cache_clear()
    load.cache_clear()
