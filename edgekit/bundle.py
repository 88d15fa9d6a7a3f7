"""The bundle gate: containment, integrity and trust, checked before any adapter opens a bundle file.

A bundle from someone else is data (docs/security.md). Before a Runner is made
(`edgekit.adapters.loading.load_bundle`), `verify_bundle` proves that every path the manifest names
resolves inside the bundle (after symlinks), that every file in the bundle is listed with a
matching sha256 and nothing else is there, and `require_trust` that native code is loaded only
from a bundle the user trusts: signed with their local key (bundles they compiled), or
`--trust-bundle`. Numbers from files are bounded here too (`check_threads`).

Core layer: imports only artifact, onnxio, specs and errors (never adapters, checks, stages or the pipeline).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import posixpath
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from edgekit.artifact import BUNDLE_MANIFEST, Artifact, Manifest, hash_tree, sha256_file
from edgekit.errors import BadInputError
from edgekit.onnxio import input_specs, load_onnx

SOURCE_MODEL = "source.onnx"  # file name of the source ONNX inside every bundle
# Files a bundle may hold without a sha256 entry: logs only (no adapter opens them).
UNLISTED_OK = ("logs/*", "*.log")
# `info` keys that name a file of the bundle (adapters join them to the bundle path).
PATH_INFO_KEYS = ("model_file", "source_model", "config_file", "vendor_model")

THREADS_HARD_CAP = 1024
KEY_FILE = "bundle-signing.key"
KEY_ENV = "EDGEKIT_KEY_DIR"
SIGNATURE_ALG = "hmac-sha256"
TRUST_HINT = "pass --trust-bundle (trust=True) if you trust who made it"


# ---------------------------------------------------------------------------------------------
# Untrusted numbers


def max_threads() -> int:
    """The most threads edgekit will start: 4 × this host's logical cores, never more than 1024."""
    return min(THREADS_HARD_CAP, 4 * (os.cpu_count() or 1))


def check_threads(value: Any, *, source: str = "--threads", clamp: bool = False) -> int | None:
    """`value` as a thread count (None = backend default), or exit 2 when it is not in 1..max_threads().

    `clamp`: a size recorded by the build host (a hint, not a request) is reduced to the cap instead.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"threads must be an integer, got {value!r}", path=source)
    cap = max_threads()
    if clamp and value > cap:
        return cap
    if not 1 <= value <= cap:
        raise BadInputError(f"threads {value} is outside 1..{cap}", path=source,
                            hint=f"the cap is 4 × {os.cpu_count() or 1} logical cores, never above {THREADS_HARD_CAP}")
    return value


# ---------------------------------------------------------------------------------------------
# Containment and integrity


def _refuse(what: str, bundle: Path, hint: str = "do not use this bundle; recompile it") -> BadInputError:
    return BadInputError(what, path=bundle, hint=hint)


def inside(bundle: Path, rel: Any, *, what: str) -> Path:
    """`bundle/rel`, after proving `rel` is a plain relative path that resolves (symlinks too) inside it."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise _refuse(f"{what} {rel!r} is not a relative path inside the bundle", bundle)
    if rel.startswith("/") or posixpath.normpath(rel) != rel or rel.split("/")[0] == "..":
        raise _refuse(f"{what} {rel!r} points outside the bundle (absolute or with '..')", bundle)
    root = bundle.resolve()
    try:
        target = (bundle / rel).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise _refuse(f"{what} {rel!r} is a symlink loop", bundle) from None
    if target == root or not target.is_relative_to(root):
        raise _refuse(f"{what} {rel!r} resolves outside the bundle ({target})", bundle)
    return bundle / rel


def named_paths(info: Mapping[str, Any]) -> dict[str, Any]:
    """Every file path the manifest's `info` names, keyed by where it is named (for messages)."""
    named = {f"info.{key}": info[key] for key in PATH_INFO_KEYS if info.get(key) is not None}
    emulation = info.get("emulation")
    if isinstance(emulation, Mapping) and emulation.get("path") is not None:
        named["info.emulation.path"] = emulation["path"]
    return named


def _walk(bundle: Path) -> list[tuple[str, Path]]:
    """(relative path, path) of every file and link under `bundle`, without following links."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(bundle, followlinks=False):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or name in filenames:
                out.append((path.relative_to(bundle).as_posix(), path))
    return out


def _resolves_inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def verify_bundle(path: str | Path) -> Artifact:
    """The bundle's manifest, after containment and integrity checks; any violation is exit 2.

    Refused: a path named by the manifest (`files` keys, `info.model_file`, ...) that is absolute,
    has `..` or resolves outside the bundle; a symlink leading out; a file not in the sha256 list
    (except logs, `UNLISTED_OK`); a listed file missing or altered; a named file not listed.
    """
    bundle = Path(path)
    if not bundle.is_dir():
        raise BadInputError("not a bundle directory", path=bundle, hint="pass the folder `edgekit compile -o` wrote")
    manifest_path = inside(bundle, BUNDLE_MANIFEST, what="manifest")
    manifest = Manifest.read(manifest_path)
    if manifest.kind != "bundle":
        raise BadInputError(f"manifest kind is {manifest.kind!r}, not a bundle", path=manifest_path)
    for rel in manifest.files:
        inside(bundle, rel, what="files entry")
    for where, rel in named_paths(manifest.info).items():
        inside(bundle, rel, what=where)
        if rel not in manifest.files:
            raise _refuse(f"{where} {rel!r} is not in the manifest's sha256 list", bundle)
    source = str(manifest.info.get("source_model", SOURCE_MODEL))
    if source not in manifest.files:
        raise _refuse(f"the manifest's sha256 list does not cover {source} (files is empty or incomplete)", bundle)
    root = bundle.resolve()
    for rel, file in _walk(bundle):
        if file.is_symlink() and not _resolves_inside(file, root):
            raise _refuse(f"{rel} is a symlink leading outside the bundle", bundle)
        if file.is_dir() or rel == BUNDLE_MANIFEST or rel in manifest.files:
            continue
        if not any(fnmatch.fnmatchcase(rel, pattern) for pattern in UNLISTED_OK):
            raise _refuse(f"bundle file {rel} is not in the manifest's sha256 list", bundle,
                          hint="remove it, or recompile the bundle")
    for rel, digest in manifest.files.items():
        file = bundle / rel
        if not file.is_file():
            raise _refuse(f"bundle file {rel} is missing", bundle, hint="recompile the bundle")
        if not hmac.compare_digest(sha256_file(file), digest):
            raise _refuse(f"bundle file {rel} does not match its sha256 (tampered or truncated)", bundle,
                          hint="recompile the bundle")
    _check_inputs_match(bundle, manifest, source)
    return Artifact(bundle, manifest)


def _check_inputs_match(bundle: Path, manifest: Manifest, source: str) -> None:
    """The manifest's inputs are the (verified) source model's: same names, dtypes, ranks and fixed dims.

    Why: runners size and type their inputs from the manifest, which is not covered by the sha256 list;
    an edited shape made `bench` feed the backend a tensor it refused deep inside (a traceback).
    """
    if not manifest.inputs:
        return  # nothing the runners would size from: the adapter reads the model itself
    # only the graph inputs are read here (the backend parses and checks the model it runs itself):
    # onnx.checker would be a fifth of a ResNet-18 bundle's load time (benchmarks/cold_start.py)
    declared = {spec.name: spec for spec in input_specs(load_onnx(bundle / source, load_weights=False, check=False))}
    listed = {spec.name: spec for spec in manifest.inputs}
    if manifest.inputs and set(listed) != set(declared):
        raise _refuse(f"manifest inputs {sorted(listed)} are not the model's {sorted(declared)}", bundle)
    for name, spec in listed.items():
        model = declared[name]
        fixed_differ = any(isinstance(a, int) and isinstance(b, int) and a >= 0 and b >= 0 and a != b
                           for a, b in zip(spec.shape, model.shape, strict=False))
        if spec.dtype != model.dtype or len(spec.shape) != len(model.shape) or fixed_differ:
            raise _refuse(f"manifest input {spec} does not match the model's {model}", bundle)


# ---------------------------------------------------------------------------------------------
# Trust: a local HMAC key signs the file list of every bundle this user compiles here


def key_dir() -> Path:
    """`$EDGEKIT_KEY_DIR`, else the user's config dir (e.g. ~/.config/edgekit)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("edgekit"))


def key_path() -> Path:
    return key_dir() / KEY_FILE


def local_key(*, create: bool = False) -> bytes | None:
    """This user's signing key (32 random bytes, mode 0600); made on first use when `create`."""
    path = key_path()
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it a moment ago
        return _read_key(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return _read_key(path)


def _read_key(path: Path) -> bytes | None:
    data = path.read_bytes()
    return data if len(data) >= 32 else None  # a truncated key (crash while writing) signs nothing


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"edgekit-bundle-key\0" + key).hexdigest()[:16]


def _mac(key: bytes, files: Mapping[str, str]) -> str:
    payload = json.dumps(dict(files), sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def sign(manifest: Manifest) -> bool:
    """Sign `manifest.files` with the local key (made on first use). False when no key can be made here."""
    try:
        key = local_key(create=True)
    except OSError:
        return False
    if key is None:
        return False
    manifest.signature = {"alg": SIGNATURE_ALG, "key_id": _key_id(key), "mac": _mac(key, manifest.files)}
    return True


def signed_here(manifest: Manifest) -> bool:
    """True when the manifest's file list carries a valid signature by this user's local key."""
    sig = manifest.signature
    if sig.get("alg") != SIGNATURE_ALG:
        return False
    try:
        key = local_key()
    except OSError:
        return False
    if key is None or sig.get("key_id") != _key_id(key):
        return False
    return hmac.compare_digest(str(sig.get("mac", "")), _mac(key, manifest.files))


def require_trust(artifact: Artifact, *, needs: str, trust: bool) -> str:
    """Why loading `needs` (e.g. native code) from this bundle is allowed, or exit 2 saying how to allow it."""
    if trust:
        return "trusted by the caller (--trust-bundle)"
    if signed_here(artifact.manifest):
        return f"signed with your local key ({key_path()})"
    why = "it is not signed" if not artifact.manifest.signature else "its signature is not by your local key"
    raise BadInputError(f"bundle would load {needs} and {why} ({key_path()})", path=artifact.path,
                        hint=TRUST_HINT)


def finalize_manifest(bundle: Path, manifest: Manifest) -> Manifest:
    """List every file of `bundle` in `manifest.files`, sign the list and write manifest.json.

    For code that adds files to a bundle it built (the pipeline's reference data): the result
    passes `verify_bundle` and, signed with this user's key, `require_trust`.
    """
    manifest.files = hash_tree(bundle)
    sign(manifest)
    (bundle / BUNDLE_MANIFEST).write_text(manifest.dumps())
    return manifest
