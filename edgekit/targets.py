"""Device profiles from `targets/*.toml` (shipped inside the wheel).

A profile names the adapters that serve it, its precisions and, for NPUs, peak figures with their
sources and operator rules (read by `adapters/npu`). Plugins may add profiles through the
`edgekit.targets` entry-point group (edgekit/plugins.py); `registered_profile` adds one for a while
(tests, notebooks). This module never imports the adapter registry: the registry imports it.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from edgekit import plugins
from edgekit.errors import BadInputError


def data_dir(name: str) -> Path:
    """`targets` or `recipes`: inside the installed wheel, or at the repo root in a checkout."""
    packaged = Path(__file__).parent / "_data" / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    kind: str  # cpu | gpu | npu
    adapters: tuple[str, ...]
    precisions: tuple[str, ...]
    source_file: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def section(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key, {})
        return value if isinstance(value, dict) else {}


def parse_profile(data: dict[str, Any], *, source: str) -> TargetProfile:
    for key in ("name", "kind", "adapters"):
        if key not in data:
            raise BadInputError(f"target profile lacks required key {key!r}", path=source)
    return TargetProfile(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        kind=str(data["kind"]),
        adapters=tuple(data["adapters"]),
        precisions=tuple(data.get("precisions", ("fp32",))),
        source_file=source,
        raw=data,
    )


def load_profile_file(path: Path) -> TargetProfile:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"invalid TOML ({exc})", path=path) from None
    return parse_profile(data, source=str(path))


# Profiles registered in this process (`registered_profile`), by name: they shadow built-ins while registered.
_REGISTERED: dict[str, TargetProfile] = {}


@cache
def builtin_profiles() -> dict[str, TargetProfile]:
    profiles = {}
    for path in sorted(data_dir("targets").glob("*.toml")):
        profile = load_profile_file(path)
        profiles[profile.name] = profile
    return profiles


def plugin_profiles() -> list[TargetProfile]:
    """Target profiles contributed by plugin adapters' `profiles()` classmethods."""
    return [parse_profile(data, source=f"plugin {name}") for name, data in plugins.profile_dicts()]


def all_profiles() -> dict[str, TargetProfile]:
    """Registered profiles, then built-ins, then those contributed by plugins (which never shadow the others)."""
    profiles = {**builtin_profiles(), **_REGISTERED}
    for profile in plugin_profiles():
        profiles.setdefault(profile.name, profile)
    return profiles


@contextlib.contextmanager
def registered_profile(profile: TargetProfile) -> Iterator[TargetProfile]:
    """`profile` is known (by `get_profile`, `all_profiles`) inside the with block, and forgotten after it."""
    previous = _REGISTERED.get(profile.name)
    _REGISTERED[profile.name] = profile
    try:
        yield profile
    finally:
        if previous is None:
            _REGISTERED.pop(profile.name, None)
        else:
            _REGISTERED[profile.name] = previous


def get_profile(name: str) -> TargetProfile:
    profiles = all_profiles()
    if name not in profiles:
        raise BadInputError(f"unknown target {name!r}", path="--target",
                            hint=f"available: {', '.join(sorted(profiles))}")
    return profiles[name]
