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

import importlib
import importlib.util
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError, ToolchainMissingError

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


def load_user_callable(ref: str, *, argument: str) -> Any:
    """`py:module:function` or `py:path/file.py:function` -> the callable (runs user code: callers check trust).

    One loader for user data sources and user metrics; errors are one-line BadInputErrors naming `argument`.
    """
    body = ref[len("py:"):] if ref.startswith("py:") else ref
    module_ref, sep, attr = body.rpartition(":")
    if not sep or not module_ref or not attr:
        raise BadInputError(f"cannot parse {ref!r}", path=argument,
                            hint="use py:module:function or py:file.py:function")
    try:
        if module_ref.endswith(".py"):
            file = Path(module_ref)
            if not file.is_file():
                raise BadInputError("no such file", path=file)
            spec = importlib.util.spec_from_file_location(f"edgekit_user_{file.stem}", file)
            if spec is None or spec.loader is None:
                raise BadInputError("cannot import", path=file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(module_ref)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"importing {module_ref!r} failed ({type(exc).__name__}: {exc})", path=ref) from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise BadInputError(f"{module_ref!r} has no callable {attr!r}", path=ref)
    return func
