"""The device side of a remote bench, standard library only: probe, receive a bundle, run under a watchdog.

Its source is sent to the device and run by the device's own Python (`python -c SOURCE VERB ...`), so it
works before edgekit is installed there (that is when `edgekit device doctor` matters most) and on
Pythons older than the host's (3.8+: no `match`, no `X | Y` at run time). Verbs:

- `probe WORKDIR KEY`: JSON on stdout: Python, edgekit runtime, inference runtimes, CPU, governor,
  clocks, NPU driver, and whether `WORKDIR/bundles/KEY` already holds that bundle, verified.
- `receive WORKDIR KEY`: a tar of the bundle on stdin, unpacked into a scratch folder, verified
  (sha256 of manifest.json is KEY; every listed file matches; nothing else), then renamed into place.
- `run SECONDS ARGV...`: run ARGV in its own process group; kill the group when stdin closes (the
  client went away: Ctrl-C, a dropped link, a cancelled lease) or after SECONDS (exit 124).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading

# module name to import -> distribution that provides it (the name to `pip install`)
RUNTIMES = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "rknnlite": "rknn-toolkit-lite2",
    "acl": "pyACL (CANN toolkit)",
    "ais_bench": "ais_bench",
    "magicmind": "magicmind (Cambricon Neuware)",
    "tvm": "apache-tvm",
}
NPU_DRIVER_FILES = (
    ("rknpu", "/sys/kernel/debug/rknpu/version"),
    ("rknpu", "/proc/debug/rknpu/version"),
    ("ascend", "/usr/local/Ascend/driver/version.info"),
    ("cambricon", "/proc/driver/cambricon/mlus/version"),
)
MAX_BUNDLE_FILES = 10000


def _read(path: str, limit: int = 4096) -> str | None:
    try:
        with open(path, errors="replace") as handle:
            return handle.read(limit).strip()
    except OSError:
        return None


def _version(module: str, dist: str) -> str | None:
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8
        return None
    for name in (dist.split(" ")[0], module):
        with contextlib.suppress(Exception):
            return metadata.version(name)
    return None


def _has_module(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cpu() -> dict:
    model, cores = platform.processor() or platform.machine(), os.cpu_count()
    for line in (_read("/proc/cpuinfo", 1 << 20) or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
    clocks = {}
    base = "/sys/devices/system/cpu"
    for cpu in range(min(cores or 0, 256)):
        cur = _read(f"{base}/cpu{cpu}/cpufreq/scaling_cur_freq")
        top = _read(f"{base}/cpu{cpu}/cpufreq/cpuinfo_max_freq")
        if cur or top:
            clocks[f"cpu{cpu}"] = {"cur_mhz": int(cur) // 1000 if cur and cur.isdigit() else None,
                                   "max_mhz": int(top) // 1000 if top and top.isdigit() else None}
    return {"cpu_model": model, "cores": cores, "governor": _read(f"{base}/cpu0/cpufreq/scaling_governor"),
            "clocks": clocks}


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_rel(rel: object) -> bool:
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def verify(folder: str, key: str) -> str:
    """'' when `folder` holds exactly the bundle whose manifest.json hashes to `key`, else why not."""
    manifest = os.path.join(folder, "manifest.json")
    if not os.path.isfile(manifest) or os.path.islink(manifest):
        return "no manifest.json"
    if _sha256_file(manifest) != key:
        return "manifest.json does not match the key"
    try:
        with open(manifest) as handle:
            files = json.load(handle).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return "manifest.json is not valid JSON"
    if not isinstance(files, dict) or len(files) > MAX_BUNDLE_FILES:
        return "manifest.json lists no files"
    for rel, digest in files.items():
        path = os.path.join(folder, rel)
        if not _safe_rel(rel) or os.path.islink(path) or not os.path.isfile(path):
            return f"{rel!r} is missing or not a plain file"
        if _sha256_file(path) != digest:
            return f"{rel} does not match its sha256"
    listed = set(files) | {"manifest.json"}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel not in listed:
                return f"{rel} is not listed in the manifest"
    return ""


def _bundle_dir(workdir: str, key: str) -> str:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise SystemExit(f"error: bad bundle key {key!r}")
    return os.path.join(workdir, "bundles", key)


def probe(workdir: str, key: str) -> dict:
    runtimes = {}
    for module, dist in RUNTIMES.items():
        found = _has_module(module)
        runtimes[module] = {"installed": found, "version": _version(module, dist) if found else None,
                            "package": dist}
    drivers = {}
    for name, path in NPU_DRIVER_FILES:
        text = _read(path, 512)
        if text and name not in drivers:
            drivers[name] = " ".join(text.split())[:200]
    info = {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "edgekit": _version("edgekit", "edgekit") if _has_module("edgekit") else None,
        "edgekit_runtime": _has_module("edgekit.runtime") if _has_module("edgekit") else False,
        "runtimes": runtimes,
        "npu_driver": drivers,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    info.update(_cpu())
    if key != "-":
        folder = _bundle_dir(workdir, key)
        why = verify(folder, key) if os.path.isdir(folder) else "not present"
        info["bundle"] = {"key": key, "present": not why, "why": why}
    return info


def receive(workdir: str, key: str, stream) -> dict:
    """Unpack the tar on `stream` into `workdir/bundles/key`, verified; plain files only, nothing outside."""
    final = _bundle_dir(workdir, key)
    if os.path.isdir(final) and not verify(final, key):
        return {"key": key, "stored": False, "why": "already present"}
    scratch = os.path.join(workdir, "bundles", f".incoming-{key[:16]}-{os.getpid()}")
    os.makedirs(scratch, mode=0o700)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for count, member in enumerate(archive, 1):
                if count > MAX_BUNDLE_FILES or not member.isfile() or not _safe_rel(member.name):
                    raise SystemExit(f"error: refused tar member {member.name!r}")
                dest = os.path.join(scratch, member.name)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                source = archive.extractfile(member)
                with open(dest, "xb") as handle:
                    shutil.copyfileobj(source, handle)
        why = verify(scratch, key)
        if why:
            raise SystemExit(f"error: the bundle arrived damaged: {why}")
        if os.path.isdir(final):  # a stale or damaged copy (a racing push that won is verified above)
            if not verify(final, key):
                return {"key": key, "stored": False, "why": "stored by a concurrent push"}
            shutil.rmtree(final)
        try:
            os.rename(scratch, final)
        except OSError:
            if os.path.isdir(final) and not verify(final, key):
                return {"key": key, "stored": False, "why": "stored by a concurrent push"}
            raise
        return {"key": key, "stored": True, "why": ""}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _die_with_parent() -> None:
    """In the bench's process (Linux): SIGKILL it when this helper dies, even by SIGKILL (Ray's force-cancel
    kills the helper before its watchdog thread can act; the bench, in its own session, would live on)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run(seconds: float, argv: list) -> int:
    """ARGV's exit code (128+signal when killed); 124 after `seconds`; the group dies when stdin closes
    or when this helper dies."""
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def kill() -> None:
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)

    def watch() -> None:
        with contextlib.suppress(Exception):
            while os.read(0, 65536):
                pass
        if child.poll() is None:
            kill()

    threading.Thread(target=watch, daemon=True).start()
    try:
        code = child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        kill()
        child.wait()
        sys.stderr.write(f"error: the bench ran past {seconds:g} s and was stopped\n")
        return 124
    return 128 - code if code < 0 else code


def main(argv: list) -> int:
    if len(argv) >= 3 and argv[0] == "probe":
        sys.stdout.write(json.dumps(probe(argv[1], argv[2])) + "\n")
        return 0
    if len(argv) >= 3 and argv[0] == "receive":
        os.makedirs(os.path.join(argv[1], "bundles"), mode=0o700, exist_ok=True)
        sys.stdout.write(json.dumps(receive(argv[1], argv[2], sys.stdin.buffer)) + "\n")
        return 0
    if len(argv) >= 3 and argv[0] == "run":
        return run(float(argv[1]), argv[2:])
    sys.stderr.write("usage: probe WORKDIR KEY | receive WORKDIR KEY | run SECONDS ARGV...\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
