"""Options shared by `edgekit bench` and `edgekit gate` to measure on a device (edgekit.devices), declared once."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from edgekit.errors import BadInputError

DeviceOpt = Annotated[str | None, typer.Option(
    "--device", metavar="NAME|ssh://USER@HOST[:PORT]",
    help="Measure on this device over SSH (a name from `edgekit device list`, or an ssh:// URL). "
         "Exit 4 when it cannot bench; never a host figure instead.")]
ClusterOpt = Annotated[str | None, typer.Option(
    "--cluster", metavar="ADDRESS", help="Measure on a free device of the Ray device farm at ADDRESS "
    "(HEAD:6379, or ray://HEAD:10001); see --device-kind.")]
DeviceKindOpt = Annotated[str | None, typer.Option(
    "--device-kind", metavar="KIND", help="With --cluster: the farm resource to lease (default: the bundle's target).")]
LeaseTimeoutOpt = Annotated[float | None, typer.Option(
    "--lease-timeout", min=1, metavar="SECONDS",
    help="With --cluster: longest wait for a free device plus the bench (default 1800).")]
RunTimeoutOpt = Annotated[float | None, typer.Option(
    "--run-timeout", min=1, metavar="SECONDS", help="Longest a bench may run on the device (default 600).")]


def remote_kwargs(device: str | None, cluster: str | None, device_kind: str | None, lease_timeout: float | None,
                  run_timeout: float | None) -> dict[str, Any]:
    """The keyword arguments of `edgekit.bench`/`gate` for these options (empty: measure here, as before)."""
    if device is None and cluster is None:
        if device_kind is not None or lease_timeout is not None or run_timeout is not None:
            raise BadInputError("--device-kind/--lease-timeout/--run-timeout need --device or --cluster",
                                path="--device")
        return {}
    return {"device": device, "cluster": cluster, "device_kind": device_kind, "lease_timeout": lease_timeout,
            "run_timeout": run_timeout}
