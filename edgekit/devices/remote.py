"""A bench on a device over SSH: probe, push the bundle content-addressed, run the runtime there, read its JSON.

The bundle is verified here first, then stored on the device under `WORKDIR/bundles/KEY`, KEY being
the sha256 of its manifest.json (which lists the sha256 of every file): a device that already holds
KEY, verified, is not sent it again. The device runs `python -m edgekit.runtime bench` (which verifies
the bundle again: the device trusts nothing it was sent) under a watchdog that kills it when this
client goes away or the run timeout passes. What comes back is the device's `edgekit.bench/1` JSON
and a fingerprint of the device; budgets and baselines are judged by the caller (checks.latency),
exactly as for a local bench. Every way this can fail is an exception: nothing half-measured returns.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from edgekit.artifact import BUNDLE_MANIFEST, Artifact
from edgekit.bundle import signed_here, verify_bundle
from edgekit.devices import _device_helper
from edgekit.devices.config import Device, resolve_device
from edgekit.devices.ssh import CONNECT_TIMEOUT_S, SshTransport
from edgekit.errors import BadInputError, EdgekitError, ToolchainMissingError, UnsupportedError

HELPER_SOURCE = Path(_device_helper.__file__).read_text(encoding="utf-8")
RUN_TIMEOUT_S = 600.0
INSTALL_HINT = ("install the runtime on the device: `pip install edgekit` (no torch needed) plus the bundle's "
                "backend, e.g. `pip install onnxruntime`")
# bundle adapter -> the module the device must have to run it (doctor's "what to install")
ADAPTER_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tvm": "tvm", "rknn": "rknnlite",
                   "ascend-atc": "acl", "magicmind": "magicmind", "null": "onnx"}


@dataclass(frozen=True)
class RemoteBenchOptions:
    """What the device's `python -m edgekit.runtime bench` is asked for (budgets are judged here, not there)."""

    warmup: int = 10
    iters: int | None = None
    duration: float | None = None
    threads: int | None = None
    batch: int = 1
    input_shapes: tuple[str, ...] = ()
    cv_threshold: float = 0.10
    stability_metric: str = "robust_cv"
    max_extend_rounds: int = 4
    allow_emulated: bool = False
    trust: bool = False

    def runtime_argv(self, bundle_dir: str) -> list[str]:
        argv = ["-m", "edgekit.runtime", "bench", bundle_dir, "--json", "-", "--warmup", str(int(self.warmup)),
                "--batch", str(int(self.batch)), "--cv-threshold", repr(float(self.cv_threshold))]
        if self.iters is not None:
            argv += ["--iters", str(int(self.iters))]
        if self.duration is not None:
            argv += ["--duration", repr(float(self.duration))]
        if self.threads is not None:
            argv += ["--threads", str(int(self.threads))]
        if self.stability_metric != "robust_cv":  # sent only when set: an older device runtime lacks them
            argv += ["--stability-metric", str(self.stability_metric)]
        if self.max_extend_rounds != 4:
            argv += ["--max-extend-rounds", str(int(self.max_extend_rounds))]
        for shape in self.input_shapes:
            argv += ["--input-shape", str(shape)]
        if self.allow_emulated:
            argv.append("--emulated")
        if self.trust:
            argv.append("--trust-bundle")
        return argv


@dataclass
class RemoteRun:
    """A device's bench JSON (`edgekit.bench/1`, as it printed it) and the fingerprint of that device."""

    payload: dict[str, Any]
    device: dict[str, Any] = field(default_factory=dict)


def bundle_key(artifact: Artifact) -> str:
    """The content address of a bundle: sha256 of its manifest.json (which holds every file's sha256)."""
    return hashlib.sha256(artifact.manifest_path.read_bytes()).hexdigest()


def write_bundle_tar(artifact: Artifact, stream: IO[bytes]) -> None:
    """The verified bundle as a tar stream: manifest.json and exactly the files it lists (no logs, no links)."""
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        for rel in [BUNDLE_MANIFEST, *sorted(artifact.manifest.files)]:
            path = artifact.path / rel
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode = 0o600
            with path.open("rb") as handle:
                archive.addfile(info, handle)


def bundle_tar_bytes(artifact: Artifact) -> bytes:
    buffer = io.BytesIO()
    write_bundle_tar(artifact, buffer)
    return buffer.getvalue()


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def fingerprint(probe: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The device a figure was measured on, from its probe: host, CPU, clocks, runtimes, driver."""
    runtimes = {name: r.get("version") or "installed" for name, r in dict(probe.get("runtimes") or {}).items()
                if isinstance(r, Mapping) and r.get("installed")}
    keys = ("hostname", "machine", "os", "python", "python_executable", "edgekit", "cpu_model", "cores", "governor",
            "clocks", "npu_driver", "load_average")
    return {**extra, **{k: probe.get(k) for k in keys}, "runtimes": runtimes}


def last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else "no message"


def parse_bench_output(code: int, stdout: bytes, stderr: str, *, where: str, path: str) -> dict[str, Any]:
    """The device's bench JSON, or the error its exit code means (2/3 as on the device; the rest exit 4)."""
    if code in (0, 1):  # 1: a budget failed there (none are sent; kept for a runtime given stored budgets)
        try:
            data = json.loads(stdout.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if isinstance(data, dict) and data.get("schema") == "edgekit.bench/1":
            return data
        raise ToolchainMissingError(f"{where}: the bench printed no edgekit.bench/1 JSON ({last_error(stderr)})",
                                    path=path, hint="run `edgekit device doctor` and compare edgekit versions")
    message = last_error(stderr)
    if "No module named" in stderr and "edgekit" in stderr:
        raise ToolchainMissingError(f"{where}: edgekit is not installed for the device's Python", path=path,
                                    hint=INSTALL_HINT)
    if code == 127:
        raise ToolchainMissingError(f"{where}: the device's Python was not found ({message})", path=path,
                                    hint="install python3 there, or set the device's --python PATH")
    if code == 124:
        raise ToolchainMissingError(f"{where}: the bench ran past the run timeout and was stopped; nothing recorded",
                                    path=path, hint="raise --run-timeout, or bench with fewer --iters")
    if code >= 128:
        raise ToolchainMissingError(f"{where}: the bench died on the device (signal {code - 128}); nothing recorded "
                                    "as measured", path=path, hint="check the device (dmesg: out of memory?), rerun")
    kind: type[EdgekitError] = {2: BadInputError, 3: UnsupportedError}.get(code, ToolchainMissingError)
    raise kind(f"{where}: {message}", path=path)


def probe_device(transport: SshTransport, *, key: str = "-", timeout: float = 60.0) -> dict[str, Any]:
    """Run the helper's `probe` with the device's Python; its JSON (see `_device_helper.probe`)."""
    d = transport.device
    done = transport.run([d.python, "-c", HELPER_SOURCE, "probe", d.workdir, key], timeout=timeout, what="probe")
    where = f"device {d.name!r} ({d.url})"
    if done.returncode == 127:
        raise ToolchainMissingError(f"{where}: python {d.python!r} not found there ({last_error(done.stderr)})",
                                    path="--device", hint="install python3 there, or set the device's --python PATH")
    try:
        info = json.loads(done.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if done.returncode != 0 or not isinstance(info, dict):
        raise ToolchainMissingError(f"{where}: probe failed ({last_error(done.stderr)})", path="--device",
                                    hint="run `edgekit device doctor` and check the device's Python (3.8+)")
    return info


def remote_bench(
    bundle: str | Path,
    device: str | Device,
    options: RemoteBenchOptions = RemoteBenchOptions(),
    *,
    connect_timeout: int = CONNECT_TIMEOUT_S,
    run_timeout: float = RUN_TIMEOUT_S,
) -> RemoteRun:
    """Bench `bundle` on `device` (a configured name, an `ssh://` URL or a Device) over SSH.

    Exit 4 (ToolchainMissingError) when the device is unreachable, its host key unknown, the link drops,
    edgekit or the backend is missing there, or the run timeout passes; nothing is measured then.
    """
    artifact = verify_bundle(bundle)  # nothing leaves this host unverified
    target = str(artifact.manifest.info.get("target") or "")
    dev = resolve_device(device, target=target or None)
    key = bundle_key(artifact)
    transport = SshTransport(dev, connect_timeout=connect_timeout)
    where = f"device {dev.name!r} ({dev.url})"
    probe = probe_device(transport, key=key, timeout=connect_timeout + 60)
    if not probe.get("edgekit_runtime"):
        raise ToolchainMissingError(f"{where}: edgekit's runtime is not installed for {dev.python}", path="--device",
                                    hint=INSTALL_HINT)
    pushed = not dict(probe.get("bundle") or {}).get("present")
    if pushed:
        done = transport.run([dev.python, "-c", HELPER_SOURCE, "receive", dev.workdir, key], timeout=run_timeout,
                             feed=lambda stream: write_bundle_tar(artifact, stream), what="upload")
        if done.returncode != 0:
            raise ToolchainMissingError(f"{where}: upload failed ({last_error(done.stderr)})", path="--device",
                                        hint=f"check free space and permissions of {dev.workdir} on the device")
    trusted = options.trust or signed_here(artifact.manifest)  # the trust decision is taken here, with our key
    argv = replace(options, trust=trusted).runtime_argv(f"{dev.workdir}/bundles/{key}")
    started, clock = now_iso(), time.monotonic()
    done = transport.run([dev.python, "-c", HELPER_SOURCE, "run", repr(float(run_timeout)), dev.python, *argv],
                         timeout=run_timeout + connect_timeout + 30, keep_stdin_open=True, what="bench")
    payload = parse_bench_output(done.returncode, done.stdout, done.stderr, where=where, path="--device")
    info = fingerprint(probe, name=dev.name, url=str(dev.url), transport="ssh", target=dev.target, bundle_key=key,
                       pushed=pushed, started_at=started, finished_at=now_iso(),
                       wall_s=round(time.monotonic() - clock, 3))
    return RemoteRun(payload=payload, device=info)


def doctor(device: str | Device, *, connect_timeout: int = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """Connect, probe, and say what is missing: `{"device", "probe", "missing": [..], "ok"}`."""
    dev = resolve_device(device)
    probe = probe_device(SshTransport(dev, connect_timeout=connect_timeout), timeout=connect_timeout + 60)
    missing: list[str] = []
    if not probe.get("edgekit_runtime"):
        missing.append(f"edgekit runtime for {probe.get('python_executable') or dev.python}: {INSTALL_HINT}")
    runtimes = dict(probe.get("runtimes") or {})
    if not any(isinstance(r, Mapping) and r.get("installed") for r in runtimes.values()):
        missing.append("no inference runtime: `pip install onnxruntime` (or the vendor runtime of the board: "
                       "rknn-toolkit-lite2 for Rockchip, CANN's pyACL/ais_bench for Ascend, MagicMind for Cambricon)")
    wanted = _runtime_for_target(dev.target)
    if wanted and not dict(runtimes.get(wanted) or {}).get("installed"):
        package = dict(runtimes.get(wanted) or {}).get("package") or wanted
        missing.append(f"{wanted} for target {dev.target}: install {package} on the device")
    return {"device": {"name": dev.name, "url": str(dev.url), "target": dev.target, "python": dev.python,
                       "workdir": dev.workdir, "source": dev.source},
            "probe": probe, "missing": missing, "ok": not missing}


def _runtime_for_target(target: str) -> str | None:
    """The runtime module a board of this target family needs (Rockchip: rknnlite, ...); None when any will do."""
    families: Sequence[tuple[str, str]] = (("rk", "rknnlite"), ("rv11", "rknnlite"), ("ascend", "acl"),
                                           ("mlu", "magicmind"))
    for prefix, module in families:
        if target.startswith(prefix):
            return module
    return None
