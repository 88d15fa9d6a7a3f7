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
import fnmatch
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError
from edgekit.specs import DTYPES, TensorSpec

SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
BUNDLE_MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "edgekit.manifest"
# Bounds on numbers a manifest may carry (a manifest can come from anyone; see docs/security.md).
MAX_RANK = 32
MAX_DIM = 2**31 - 1
MAX_TENSOR_ELEMENTS = 2**30  # 4 GiB of float32: enough for any edge model input, refuses absurd shapes

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
    signature: dict[str, str] = field(default_factory=dict)  # HMAC of `files` by the local key (edgekit.bundle)

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
            **({"signature": dict(self.signature)} if self.signature else {}),
        }

    @classmethod
    def from_json(cls, data: Any, *, path: str | Path | None = None) -> Manifest:
        """The one parser of manifest JSON: every field is type- and bound-checked here (bad → exit 2)."""
        _check_manifest_json(data, path)
        return cls(
            kind=data["kind"],
            inputs=[TensorSpec.from_json(s) for s in data.get("inputs", [])],
            outputs=[TensorSpec.from_json(s) for s in data.get("outputs", [])],
            files=dict(data.get("files", {})),
            history=[StageRecord.from_json(r) for r in data.get("history", [])],
            metrics=dict(data.get("metrics", {})),
            info=dict(data.get("info", {})),
            schema_version=data["schema_version"],
            signature=dict(data.get("signature", {})),
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
        except OSError as exc:
            raise BadInputError(f"cannot read the manifest ({exc.strerror or type(exc).__name__})", path=path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInputError(f"manifest is not valid JSON ({exc})", path=path) from None
        return cls.from_json(data, path=path)


def _bad_manifest(what: str, path: str | Path | None) -> BadInputError:
    return BadInputError(f"malformed manifest: {what}", path=path,
                         hint="the manifest was edited or is not edgekit's; rebuild it with edgekit")


def _check_spec_json(spec: Any, where: str, path: str | Path | None) -> None:
    if not isinstance(spec, dict):
        raise _bad_manifest(f"{where} is not an object", path)
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise _bad_manifest(f"{where} has no name", path)
    shape = spec.get("shape")
    if not isinstance(shape, list):
        raise _bad_manifest(f"{where} ({spec['name']}) has no shape list", path)
    if len(shape) > MAX_RANK:
        raise _bad_manifest(f"{where} ({spec['name']}) has rank {len(shape)} > {MAX_RANK}", path)
    elements = 1
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, (int, str)) or (isinstance(dim, int) and not
                                                                        0 <= dim <= MAX_DIM):
            raise _bad_manifest(f"{where} ({spec['name']}) has a bad dim {dim!r}", path)
        elements *= dim if isinstance(dim, int) else 1
    if elements > MAX_TENSOR_ELEMENTS:
        raise _bad_manifest(f"{where} ({spec['name']}) has {elements} elements > {MAX_TENSOR_ELEMENTS}", path)
    dtype = spec.get("dtype", "float32")
    if dtype not in DTYPES:
        raise _bad_manifest(f"{where} ({spec['name']}) has unknown dtype {dtype!r}", path)
    if spec.get("layout") is not None and not isinstance(spec["layout"], str):
        raise _bad_manifest(f"{where} ({spec['name']}) layout is not a string", path)


def _check_manifest_json(data: Any, path: str | Path | None) -> None:
    """Structure and bounds of a manifest, so no later code meets a list where it expects a dict."""
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        raise BadInputError("not an edgekit manifest", path=path, hint="expected a JSON object with schema "
                            f"{MANIFEST_SCHEMA!r}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _bad_manifest(f"schema_version {version!r} is not a positive integer", path)
    if version > SCHEMA_VERSION:
        raise BadInputError(f"manifest schema version {version!r} is newer than this edgekit ({SCHEMA_VERSION})",
                            path=path, hint="upgrade edgekit")
    if not isinstance(data.get("kind"), str) or not data["kind"]:
        raise _bad_manifest("kind is missing", path)
    for key in ("inputs", "outputs", "history"):
        if not isinstance(data.get(key, []), list):
            raise _bad_manifest(f"{key} is not a list", path)
    for key in ("files", "metrics", "info", "signature"):
        if not isinstance(data.get(key, {}), dict):
            raise _bad_manifest(f"{key} is not an object", path)
    for key in ("inputs", "outputs"):
        for i, spec in enumerate(data.get(key, [])):
            _check_spec_json(spec, f"{key}[{i}]", path)
    for rel, digest in data.get("files", {}).items():
        if not rel or not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef"
                                                                              for c in digest):
            raise _bad_manifest(f"files entry {rel!r} is not a sha256", path)
    for i, record in enumerate(data.get("history", [])):
        if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
            raise _bad_manifest(f"history[{i}] is not a stage record", path)
    if not all(isinstance(v, str) for v in data.get("signature", {}).values()):
        raise _bad_manifest("signature values are not strings", path)


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


# ---------------------------------------------------------------------------------------------
# Scratch files and folders beside an output. Their names carry the owner's PID and host, so what a
# killed process left behind (SIGKILL runs no `finally`) is recognised and removed by the next run on
# the same host (a folder shared between hosts never loses another host's work in progress).

_SCRATCH_KINDS = ("tmp", "work", "old", "bad")
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process (or we cannot tell): leave it alone
    return True


def scratch_name(name: str, kind: str) -> str:
    """`.NAME.KIND-PID-HOST-` — the prefix of a scratch entry for output `name` owned by this process."""
    if kind not in _SCRATCH_KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}")
    return f".{name}.{kind}-{os.getpid()}-{_HOST}-"


def sweep_dead_scratch(parent: Path, name: str | None = None) -> list[Path]:
    """Remove scratch entries in `parent` (for output `name`, or all) whose owning process is gone."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        pid = _scratch_owner(entry.name, name)
        if pid is None or _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def _scratch_owner(entry: str, name: str | None) -> int | None:
    """The PID in a scratch entry name `.NAME.KIND-PID-HOST-...` made on this host, else None."""
    if not entry.startswith("."):
        return None
    for kind in _SCRATCH_KINDS:
        head, sep, rest = entry[1:].rpartition(f".{kind}-")
        if not sep or not head or (name is not None and head != name):
            continue
        pid_text, _, tail = rest.partition("-")
        if pid_text.isdigit() and tail.startswith(f"{_HOST}-"):
            return int(pid_text)
    return None


@contextlib.contextmanager
def scratch_dir(dest: str | Path, kind: str = "work") -> Iterator[Path]:
    """A private folder beside `dest` for work in progress, removed afterwards (or by the next run if killed)."""
    dest = Path(dest)
    _check_output_name(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_scratch(dest.parent, dest.name)
        tmp = Path(tempfile.mkdtemp(prefix=scratch_name(dest.name, kind), dir=dest.parent))
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_output_name(dest: Path) -> None:
    """`-o .`, `-o ''` and `-o ..` name the working folder itself: never a folder edgekit may replace."""
    if dest.name in ("", ".", ".."):
        raise BadInputError("is not a name edgekit can write an output to", path=str(dest) or "''",
                            hint="give a new folder name, e.g. -o out/bundle")


def is_edgekit_output(path: Path) -> bool:
    """True for a folder edgekit wrote (it holds an edgekit manifest.json) or an empty folder."""
    if not path.is_dir():
        return False
    manifest = path / BUNDLE_MANIFEST
    if manifest.is_file():
        try:
            return json.loads(manifest.read_text()).get("schema") == MANIFEST_SCHEMA
        except (OSError, ValueError, AttributeError):
            return False
    try:
        return not any(path.iterdir())
    except OSError:
        return False


def check_replaceable(dest: Path) -> None:
    """Refuse to replace anything that is not an edgekit output: the user's files are never destroyed."""
    _check_output_name(dest)
    if not (dest.exists() or dest.is_symlink()):
        return
    if dest.is_symlink() and not dest.exists():
        return  # a dangling link: replacing it loses nothing
    if not dest.is_dir():
        raise BadInputError("exists and is not a folder", path=dest, hint="choose another output path")
    if not is_edgekit_output(dest):
        raise BadInputError("folder exists and is not an edgekit output (no edgekit manifest.json); "
                            "refusing to replace its files", path=dest,
                            hint="choose a new folder, or remove this one yourself")


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `dest`; rename it onto `dest` only if the block succeeds."""
    dest = Path(dest)
    _check_output_name(dest)
    if dest.is_dir():  # os.replace(file, dir) fails only after the work is done
        raise BadInputError("is a directory, expected a file path", path=dest, hint="give a file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_scratch(dest.parent, dest.name)
        fd, tmp_name = tempfile.mkstemp(prefix=scratch_name(dest.name, "tmp"), dir=dest.parent)
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
    """Yield a temp directory beside `dest`; it replaces `dest` only if the block succeeds.

    `dest` may be absent, empty, or an earlier edgekit output; any other folder is refused before
    any work (exit 2), so a user's files are never replaced. A symlink at `dest` is replaced by the
    new folder (the folder it pointed to is left as it was).
    """
    dest = Path(dest)
    check_replaceable(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sweep_dead_scratch(dest.parent, dest.name)
        tmp = Path(tempfile.mkdtemp(prefix=scratch_name(dest.name, "tmp"), dir=dest.parent))
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; use the mode mkdir would
        check_replaceable(dest)  # it may have changed while we worked
        if dest.is_symlink():
            _swap_link(tmp, dest)
        elif dest.exists():
            old = Path(tempfile.mkdtemp(prefix=scratch_name(dest.name, "old"), dir=dest.parent))
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_link(tmp: Path, link: Path) -> None:
    """Replace the symlink `link` by folder `tmp`: move the link aside, rename, drop the link itself."""
    old = link.with_name(f"{scratch_name(link.name, 'old')}link")
    os.replace(link, old)
    try:
        os.replace(tmp, link)
    except OSError:
        os.replace(old, link)
        raise
    old.unlink()


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


# ---------------------------------------------------------------------------------------------
# The one directory hasher (bundles, cache entries, data folders)


def hash_tree(root: Path, *, exclude: tuple[str, ...] = (BUNDLE_MANIFEST,)) -> dict[str, str]:
    """sha256 of every file under `root`, keyed by posix relative path; `exclude`: relative paths/patterns.

    Symlinks are not followed (a link is hashed as the file it names only when that file is inside
    `root`, under its own path); bundles are checked for links leaving them by `edgekit.bundle`.
    """
    root = Path(root)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            file = Path(dirpath) / fname
            rel = file.relative_to(root).as_posix()
            if any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude) or not file.is_file():
                continue
            out[rel] = sha256_file(file)
    return dict(sorted(out.items()))


def hash_dir(path: Path) -> str:
    """One sha256 for a file or a whole folder (names and contents), e.g. for cache keys."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    return sha256_bytes(json.dumps(hash_tree(path, exclude=()), sort_keys=True).encode())
