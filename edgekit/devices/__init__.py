"""Latency measured on the device: one board over SSH, or a farm of boards on Ray, behind one call.

Layer: below checks (checks.latency turns a `RemoteRun` into a BenchResult and judges budgets), above
adapters and core. Nothing here imports torch, Ray (until a cluster is used) or the CLI.

- `run_remote(bundle, options, device=NAME|ssh://...|Device)`: over SSH (`remote.remote_bench`).
- `run_remote(bundle, options, cluster=ADDRESS, kind=KIND)`: on a free device of that kind (`farm.farm_bench`).
- Devices as configuration: `all_devices`, `add_device`, `remove_device`, `resolve_device` (devices.toml).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.devices.config import (
    Device,
    SshUrl,
    add_device,
    all_devices,
    check_name,
    make_device,
    parse_url,
    project_devices_file,
    read_devices,
    remove_device,
    resolve_device,
    user_config_dir,
    user_devices_file,
)
from edgekit.devices.farm import LEASE_TIMEOUT_S, farm_bench
from edgekit.devices.remote import RUN_TIMEOUT_S, RemoteBenchOptions, RemoteRun, doctor, remote_bench
from edgekit.errors import BadInputError

__all__ = [
    "LEASE_TIMEOUT_S", "RUN_TIMEOUT_S", "Device", "RemoteBenchOptions", "RemoteRun", "SshUrl", "add_device",
    "all_devices", "check_name", "doctor", "farm_bench", "make_device", "parse_url", "project_devices_file",
    "read_devices", "remote_bench", "remove_device", "resolve_device", "run_remote", "user_config_dir",
    "user_devices_file",
]


def run_remote(
    bundle: str | Path,
    options: RemoteBenchOptions = RemoteBenchOptions(),
    *,
    device: str | Device | None = None,
    cluster: str | None = None,
    kind: str | None = None,
    lease_timeout: float | None = None,
    run_timeout: float | None = None,
) -> RemoteRun:
    """Bench on a device: `device` over SSH, or `cluster` (+ `kind`) on the farm. One of the two, not both."""
    run_timeout = RUN_TIMEOUT_S if run_timeout is None else float(run_timeout)
    if run_timeout <= 0 or (lease_timeout is not None and lease_timeout <= 0):
        raise BadInputError("timeouts must be positive", path="--run-timeout/--lease-timeout")
    if cluster is not None:
        if device is not None:
            raise BadInputError("give --device (one board over SSH) or --cluster (the farm), not both",
                                path="--device", hint="on the farm, choose the kind of board with --device-kind")
        return farm_bench(bundle, cluster=cluster, kind=kind, options=options,
                          lease_timeout=LEASE_TIMEOUT_S if lease_timeout is None else float(lease_timeout),
                          run_timeout=run_timeout)
    if device is None:
        raise BadInputError("no device given", path="--device", hint="--device NAME|ssh://user@host or --cluster ADDR")
    if kind is not None:
        raise BadInputError("--device-kind needs --cluster", path="--device-kind")
    return remote_bench(bundle, device, options, run_timeout=run_timeout)
