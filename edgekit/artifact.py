"""Artifact = files on disk + Manifest (JSON).

Every stage returns an Artifact and appends a StageRecord to its manifest: what ran, with which
options and tool versions, the sha256 of what went in and came out, and the metrics it measured.
Outputs are written to a temp path beside the destination and renamed, so an interrupted stage
never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec

SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
BUNDLE_MANIFEST = "manifest.json"

# Distributions whose versions go into every manifest when installed (queried without importing).
TRACKED_TOOLS = (
    "edgekit", "torch", "onnx", "onnxruntime", "onnxsim", "onnxslim", "openvino", "nncf",
    "apache-tvm", "apache-tvm-ffi", "numpy",
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def tool_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the tools that can change a result; absent tools are left out."""
    versions: dict[str, str] = {}
    for dist in TRACKED_TOOLS + extra:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths, tuples and numpy scalars -> plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_json"):
            return to_jsonable(value.to_json())
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value") and type(value).__module__ != "builtins" and hasattr(type(value), "__members__"):
        return value.value  # Enum
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # JSON has no NaN/Inf
    return value


@dataclass
class StageRecord:
    """One step of a model's history."""

    stage: str
    options: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    outputs: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: str = "measured"  # measured | emulated | estimated | not-run
    tool_versions: dict[str, str] = field(default_factory=tool_versions)
    started_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    duration_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return to_jsonable({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Manifest:
    """What an artifact is and how it was made. Serialized as versioned JSON."""

    kind: str  # "onnx" (one model file) or "bundle" (a compiled directory)
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    history: list[StageRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # latest figures, keyed by stage or check
    info: dict[str, Any] = field(default_factory=dict)  # target, adapter, precision, budgets, ...
    schema_version: int = SCHEMA_VERSION

    def add_stage(self, record: StageRecord) -> None:
        self.history.append(record)
        if record.metrics:
            self.metrics[record.stage] = record.metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "edgekit.manifest",
            "schema_version": self.schema_version,
            "kind": self.kind,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "files": dict(self.files),
            "history": [r.to_json() for r in self.history],
            "metrics": to_jsonable(self.metrics),
            "info": to_jsonable(self.info),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, path: str | Path | None = None) -> Manifest:
        if data.get("schema") != "edgekit.manifest":
            raise BadInputError("not an edgekit manifest", path=path)
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise BadInputError(
                f"manifest schema version {version!r} is newer than this edgekit ({SCHEMA_VERSION})",
                path=path, hint="upgrade edgekit",
            )
        return cls(
            kind=data["kind"],
            inputs=[TensorSpec.from_json(s) for s in data.get("inputs", [])],
            outputs=[TensorSpec.from_json(s) for s in data.get("outputs", [])],
            files=dict(data.get("files", {})),
            history=[StageRecord.from_json(r) for r in data.get("history", [])],
            metrics=dict(data.get("metrics", {})),
            info=dict(data.get("info", {})),
            schema_version=version,
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BadInputError("no manifest here", path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"manifest is not valid JSON ({exc})", path=path) from None
        return cls.from_json(data, path=path)


def manifest_path_for(model_path: str | Path) -> Path:
    """`out.onnx` -> `out.onnx.manifest.json` (kept beside the model it describes)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + MANIFEST_SUFFIX)


@dataclass
class Artifact:
    """A model on disk with its manifest: a single file (kind "onnx") or a bundle directory."""

    path: Path
    manifest: Manifest

    @property
    def manifest_path(self) -> Path:
        if self.manifest.kind == "bundle":
            return self.path / BUNDLE_MANIFEST
        return manifest_path_for(self.path)

    @property
    def sha256(self) -> str:
        if self.path.is_dir():
            return sha256_bytes(json.dumps(self.manifest.files, sort_keys=True).encode())
        return sha256_file(self.path)

    @classmethod
    def open(cls, path: str | Path) -> Artifact:
        """An existing model file or bundle; a model without a manifest gets a fresh one."""
        path = Path(path)
        if path.is_dir():
            return cls(path, Manifest.read(path / BUNDLE_MANIFEST))
        if not path.exists():
            raise BadInputError("no such file", path=path)
        mpath = manifest_path_for(path)
        if mpath.exists():
            manifest = Manifest.read(mpath)
            if manifest.files.get(path.name) not in (None, sha256_file(path)):
                manifest = Manifest(kind="onnx", info={"note": "manifest did not match the model; history dropped"})
            return cls(path, manifest)
        return cls(path, Manifest(kind="onnx"))


def _unwritable(dest: Path, exc: OSError) -> BadInputError:
    """An output folder that cannot be created or written is bad input (exit 2), not a traceback."""
    return BadInputError(f"cannot write here ({exc.strerror or type(exc).__name__})", path=dest,
                         hint="choose an output path in a writable folder")


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    if dest.is_dir():  # os.replace(file, dir) fails only after the work is done
        raise BadInputError("is a directory, expected a file path", path=dest, hint="give a file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600; give the file the mode a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a temp directory beside `dest`; it replaces `dest` only if the block succeeds."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; use the mode mkdir would
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(dest: str | Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def save_model_artifact(model_bytes_or_path: bytes | Path, dest: str | Path, manifest: Manifest) -> Artifact:
    """Write a model file and its manifest atomically (model first, then the manifest naming its hash)."""
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if isinstance(model_bytes_or_path, bytes):
            tmp.write_bytes(model_bytes_or_path)
        else:
            shutil.copyfile(model_bytes_or_path, tmp)
        digest = sha256_file(tmp)
    manifest.files = {dest.name: digest}
    write_text_atomic(manifest_path_for(dest), manifest.dumps())
    return Artifact(dest, manifest)


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except the manifest, keyed by posix relative path."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != BUNDLE_MANIFEST
    }


def verify_bundle(path: str | Path) -> Artifact:
    """Open a bundle and refuse it if any file is missing, extra-truncated or altered."""
    path = Path(path)
    if not path.is_dir():
        raise BadInputError("not a bundle directory", path=path, hint="pass the folder `edgekit compile -o` wrote")
    manifest = Manifest.read(path / BUNDLE_MANIFEST)
    for rel, digest in manifest.files.items():
        file = path / rel
        if not file.is_file():
            raise BadInputError(f"bundle file {rel} is missing", path=path, hint="recompile the bundle")
        if sha256_file(file) != digest:
            raise BadInputError(f"bundle file {rel} does not match its sha256 (tampered or truncated)",
                                path=path, hint="recompile the bundle")
    return Artifact(path, manifest)
