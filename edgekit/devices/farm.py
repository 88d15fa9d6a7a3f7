"""A device farm on Ray: each device host joins the cluster with a custom resource, a bench is a task needing it.

A board joins with `ray start --address HEAD:6379 --num-cpus 1 --resources '{"rk3588": 1}'` (docs/devices.md).
A bench asks for `{KIND: 1}` and no CPU, so Ray runs at most one bench per board at a time and queues
the rest; no scheduler of ours. The task runs on the board itself: it stores the bundle
content-addressed in the node's cache (verified), then runs `python -m edgekit.runtime bench` in a
child process under the same watchdog as over SSH, so a cancelled task (Ctrl-C, lease timeout) kills
the bench and frees the board. The driver judges the JSON exactly as for an SSH bench.

Ray is optional (`pip install edgekit[farm]`) and imported only when a cluster is used.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import platformdirs

from edgekit.bundle import signed_here, verify_bundle
from edgekit.devices import _device_helper
from edgekit.devices.remote import (
    RUN_TIMEOUT_S,
    RemoteBenchOptions,
    RemoteRun,
    bundle_key,
    bundle_tar_bytes,
    fingerprint,
    now_iso,
    parse_bench_output,
)
from edgekit.devices.ssh import run_process
from edgekit.errors import BadInputError, EdgekitError, ToolchainMissingError

FARM_DIR_ENV = "EDGEKIT_FARM_DIR"  # where a node keeps received bundles (default: the user cache dir)
LEASE_TIMEOUT_S = 1800.0
FARM_HINT = "pip install 'edgekit[farm]' (Ray) on this machine and on every device host"


def _ray() -> Any:
    """The `ray` module, or exit 4 saying how to install it (an optional extra)."""
    try:
        import ray
    except ImportError:
        raise ToolchainMissingError("Ray is not installed (needed for --cluster)", path="--cluster",
                                    hint=FARM_HINT) from None
    return ray


def _probe(address: str, timeout: float = 10.0) -> None:
    """Fail in seconds, not minutes: Ray retries an unreachable GCS for ~2 min and a Ray Client for 30 s."""
    if address in ("auto", "local"):
        return
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not host or not (port or "0").isdigit():
        raise BadInputError(f"{address!r} is not a Ray address", path="--cluster",
                            hint="ray://HEAD:10001, HEAD:6379, or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port or (10001 if address.startswith("ray://") else 6379))),
                                 timeout=timeout).close()
    except OSError as exc:
        raise ToolchainMissingError(f"cannot join the cluster at {address} ({type(exc).__name__}: {exc})",
                                    path="--cluster", hint="check the head's address (ray status on the head), "
                                    "or ray://HEAD:10001 from outside the cluster network") from None


def connect(address: str) -> Any:
    """Connect this process to the cluster at `address` (once; an existing connection is reused)."""
    ray = _ray()
    if not ray.is_initialized():
        _probe(address)
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except Exception as exc:  # ConnectionError, RuntimeError, grpc errors: all mean "not reachable"
            raise ToolchainMissingError(f"cannot join the device farm at {address} ({type(exc).__name__}: {exc})",
                                        path="--cluster", hint="check the head's address (ray status on the "
                                        "head), or ray://HEAD:10001 from outside the cluster network") from None
    return ray


def farm_dir() -> Path:
    env = os.environ.get(FARM_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("edgekit")) / "farm"


def bench_on_node(tar: bytes, key: str, options: RemoteBenchOptions, run_timeout: float) -> dict[str, Any]:
    """The Ray task body, run on the device host: store the bundle (verified), bench it in a child process.

    Returns plain data (exit code, stdout, stderr, probe, node, times): the driver decides what it means.
    """
    import ray  # on the node: this function only ever runs inside a Ray worker

    workdir = farm_dir()
    (workdir / "bundles").mkdir(parents=True, exist_ok=True, mode=0o700)
    started = now_iso()
    started_s = time.time()
    probe = _device_helper.probe(str(workdir), key)
    out: dict[str, Any] = {"probe": probe, "node_id": ray.get_runtime_context().get_node_id(), "pushed": False,
                           "started_at": started, "started_s": started_s}
    if not dict(probe.get("bundle") or {}).get("present"):
        try:
            _device_helper.receive(str(workdir), key, io.BytesIO(tar))
        except SystemExit as exc:
            return {**out, "code": 4, "stdout": b"", "stderr": f"error: {exc}", "finished_s": time.time()}
        out["pushed"] = True
    argv = [sys.executable, _device_helper.__file__, "run", repr(float(run_timeout)), sys.executable,
            *options.runtime_argv(str(workdir / "bundles" / key))]
    code, stdout, stderr = run_process(argv, timeout=run_timeout + 30, keep_stdin_open=True)
    return {**out, "code": code, "stdout": stdout, "stderr": stderr, "finished_at": now_iso(),
            "finished_s": time.time()}


def farm_bench(
    bundle: str | Path,
    *,
    cluster: str,
    kind: str | None = None,
    options: RemoteBenchOptions = RemoteBenchOptions(),
    lease_timeout: float = LEASE_TIMEOUT_S,
    run_timeout: float = RUN_TIMEOUT_S,
) -> RemoteRun:
    """Bench `bundle` on one free device of `kind` (default: the bundle's target) in the Ray cluster.

    `lease_timeout`: the longest wait for a free device plus the bench; past it the task is cancelled
    (the board is freed) and this is exit 4, as is a cluster with no device of that kind, a device that
    dies mid-bench, or a Ctrl-C (the task is cancelled, then KeyboardInterrupt goes on).
    """
    artifact = verify_bundle(bundle)
    kind = kind or str(artifact.manifest.info.get("target") or "")
    if not kind or not kind.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise BadInputError(f"device kind {kind!r} is not a resource name", path="--device-kind",
                            hint="e.g. rk3588: the custom resource the device hosts declared with ray start")
    ray = connect(cluster)
    total = ray.cluster_resources().get(kind, 0)
    if not total:
        kinds = sorted(k for k in ray.cluster_resources() if k not in ("CPU", "GPU", "memory", "object_store_memory")
                       and not k.startswith(("node:", "accelerator_type:")))
        raise ToolchainMissingError(f"no device of kind {kind!r} in the farm at {cluster}", path="--device-kind",
                                    hint=f"kinds there: {', '.join(kinds) or 'none'}; a device host joins with "
                                         f"ray start --address HEAD --resources '{{\"{kind}\": 1}}'")
    trusted = options.trust or signed_here(artifact.manifest)
    key = bundle_key(artifact)
    task = ray.remote(bench_on_node).options(num_cpus=0, resources={kind: 1}, max_retries=0,
                                             name=f"edgekit-bench-{kind}")
    submitted, submitted_s = now_iso(), time.time()
    ref = task.remote(bundle_tar_bytes(artifact), key, replace(options, trust=trusted), float(run_timeout))
    try:
        out = ray.get(ref, timeout=lease_timeout)
    except KeyboardInterrupt:
        ray.cancel(ref, force=True)  # kills the worker; the watchdog on the board kills the bench
        raise
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise ToolchainMissingError(f"no {kind} device finished the bench within the lease timeout "
                                    f"({lease_timeout:g} s; {total:g} in the farm); cancelled, nothing recorded",
                                    path="--lease-timeout", hint="raise --lease-timeout, or add devices") from None
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
        if isinstance(cause, EdgekitError):
            raise ToolchainMissingError(f"{kind} device: {cause.message}", path="--cluster") from None
        raise ToolchainMissingError(f"the bench failed on a {kind} device ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''})", path="--cluster") from None
    except ray.exceptions.RayError as exc:  # the worker or node died (a board lost mid-bench)
        raise ToolchainMissingError(f"the {kind} device was lost mid-bench ({type(exc).__name__}); nothing recorded "
                                    "as measured", path="--cluster", hint="check the board, then rerun") from None
    where = f"{kind} device on node {str(out.get('node_id'))[:12]}"
    payload = parse_bench_output(int(out["code"]), out["stdout"], str(out["stderr"]), where=where, path=cluster)
    info = fingerprint(out["probe"], name=f"{kind}@{str(out.get('node_id'))[:12]}", url=cluster, transport="ray",
                       target=kind, bundle_key=key, pushed=out.get("pushed"), node_id=out.get("node_id"),
                       submitted_at=submitted, started_at=out.get("started_at"), finished_at=out.get("finished_at"),
                       queued_s=round(float(out["started_s"]) - submitted_s, 3),
                       run_s=round(float(out["finished_s"]) - float(out["started_s"]), 3))
    return RemoteRun(payload=payload, device=info)
