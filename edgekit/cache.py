"""Content-addressed stage cache.

A stage's key is the sha256 of what went in (input artifact hashes), its options (JSON), the tool
versions that can change its result and the edgekit version. An entry is a directory holding the
stage's files plus `entry.json` with the sha256 of every file, so a corrupted entry is detected on
read and rebuilt. Entries are built in a temp directory and renamed into place: a reader never sees
half an entry, and when two runs build the same entry at once the first rename wins and the
second run uses the winner (both built the same content from the same key).
Temp folders carry the builder's PID, so those a killed builder left are removed by the next build.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifact import hash_tree, scratch_name, sweep_dead_scratch, to_jsonable, tool_versions

ENTRY_FILE = "entry.json"
CACHE_LAYOUT = "v1"


def default_cache_dir() -> Path:
    """`$EDGEKIT_CACHE_DIR`, else the platform's user cache dir (e.g. ~/.cache/edgekit)."""
    env = os.environ.get("EDGEKIT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("edgekit"))


@functools.cache
def _tools() -> dict[str, str]:
    """Tool versions, read once per process (importlib.metadata parses files on every call)."""
    return tool_versions()


def _edgekit_version() -> str:
    from edgekit import __version__

    return __version__


def stage_key(stage: str, *, inputs: Any, options: Any, tools: dict[str, str] | None = None) -> str:
    """sha256 over (stage, input hashes, options JSON, tool versions, edgekit version)."""
    payload = {
        "layout": CACHE_LAYOUT,
        "stage": stage,
        "inputs": to_jsonable(inputs),
        "options": to_jsonable(options),
        "tools": tools if tools is not None else _tools(),
        "edgekit": _edgekit_version(),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CacheEntry:
    """One stage result: its directory of files and the JSON metadata the stage returned."""

    stage: str
    key: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    hit: bool = False  # True when read from the cache, False when just built

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def digest(self) -> str:
        """Content hash of the entry's files (what the next stage keys on)."""
        return str(self.meta.get("_content_sha256", self.key))


@dataclass
class CacheStats:
    hits: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)


class StageCache:
    """Stage results by key under `root` (`enabled=False`: build every time into a private temp dir)."""

    def __init__(self, root: str | Path | None = None, *, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            self.root = Path(root) if root is not None else default_cache_dir()
            self._private: Path | None = None
        else:
            # --no-cache: entries live in a private temp dir removed by close().
            self._private = Path(tempfile.mkdtemp(prefix="edgekit-nocache-"))
            self.root = self._private
        self.stats = CacheStats()

    def close(self) -> None:
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)

    def __enter__(self) -> StageCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _entry_dir(self, stage: str, key: str) -> Path:
        return self.root / CACHE_LAYOUT / stage / key[:2] / key

    def get(self, stage: str, key: str) -> CacheEntry | None:
        """The verified entry, or None when absent or corrupted (a corrupted one is moved aside)."""
        if not self.enabled:
            return None
        path = self._entry_dir(stage, key)
        entry = self._read_valid(stage, key, path)
        if entry is None and path.exists():
            self.stats.corrupted.append(f"{stage}:{key[:12]}")
            self._discard(path)
        return entry

    def _read_valid(self, stage: str, key: str, path: Path) -> CacheEntry | None:
        try:
            record = json.loads((path / ENTRY_FILE).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict) or record.get("key") != key or not isinstance(record.get("files"), dict):
            return None
        try:
            if hash_tree(path, exclude=(ENTRY_FILE,)) != record["files"]:
                return None
        except OSError:
            return None
        return CacheEntry(stage, key, path, dict(record.get("meta", {})), hit=True)

    def _discard(self, path: Path) -> None:
        trash = path.with_name(f"{scratch_name(path.name, 'bad')}{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(OSError):
            os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any] | None]) -> CacheEntry:
        """Return the cached entry or run `build(tmp_dir)` (writes files, returns JSON metadata) and store it."""
        found = self.get(stage, key)
        if found is not None:
            self.stats.hits.append(stage)
            return found
        self.stats.misses.append(stage)
        return self._build(stage, key, build)

    def _build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any] | None]) -> CacheEntry:
        final = self._entry_dir(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_scratch(final.parent)  # what builders killed mid-way (SIGKILL) left behind
        tmp = Path(tempfile.mkdtemp(prefix=scratch_name(key[:12], "tmp"), dir=final.parent))
        try:
            meta = to_jsonable(build(tmp) or {})
            files = hash_tree(tmp, exclude=(ENTRY_FILE,))
            meta["_content_sha256"] = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
            record = {
                "key": key,
                "stage": stage,
                "files": files,
                "meta": meta,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
            (tmp / ENTRY_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
            for _attempt in range(3):
                try:
                    os.rename(tmp, final)  # atomic; fails if another run already placed the entry
                    return CacheEntry(stage, key, final, meta, hit=False)
                except OSError:
                    existing = self._read_valid(stage, key, final)
                    if existing is not None:  # another run won the race with the same content
                        existing.hit = False
                        return existing
                    if final.exists():
                        self._discard(final)  # a corrupted entry is in the way: replace it
            # The destination kept changing under us: use our private copy (still correct).
            keep = final.with_name(f"{final.name}.{uuid.uuid4().hex[:8]}")
            os.rename(tmp, keep)
            return CacheEntry(stage, key, keep, meta, hit=False)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
