"""Managed vendor toolchain environments and the JSON worker protocol adapters use to talk to them.

env: create / list / doctor / remove environments (`edgekit toolchain ...`).
protocol: edgekit.worker/1 messages and framing (stdlib-only: it also runs inside vendor environments).
worker_client: spawn a worker in an environment's Python and call it with timeouts and crash detection.
rknn_worker: the RKNN-Toolkit2 worker script (runs inside the rknn environment, not imported here).
"""

from __future__ import annotations

from edgekit.toolchains.env import (
    TOOLCHAINS,
    DoctorReport,
    EnvState,
    ToolchainSpec,
    doctor,
    find_env,
    install,
    install_command,
    list_envs,
    remove,
    require_env,
    toolchains_root,
)

__all__ = [
    "TOOLCHAINS", "DoctorReport", "EnvState", "ToolchainSpec", "doctor", "find_env", "install",
    "install_command", "list_envs", "remove", "require_env", "toolchains_root",
]
