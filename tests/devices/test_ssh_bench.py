"""Benches on a real sshd on 127.0.0.1 serving this machine as a device: measured, fingerprinted, or exit 4."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

import edgekit
from edgekit.errors import ToolchainMissingError
from tests.devices.conftest import SshServer

FAST = {"warmup": 2, "iters": 30}


def test_bench_on_device_is_measured_and_fingerprinted(sshd: SshServer, device_bundle: Path) -> None:
    device = sshd.device()
    result = edgekit.bench(device_bundle, device=device, budgets=["p90<=25ms"], **FAST)
    assert result.provenance == "measured" and result.exit_code == 0
    assert result.device is not None and result.device["transport"] == "ssh"
    assert result.device["name"] == "board" and result.device["pushed"] is True
    assert result.device["runtimes"].get("onnxruntime")
    assert result.environment["device"] == "ssh:cpu" and result.stats is not None and result.stats.n >= 30
    assert result.to_json()["device"]["hostname"]
    # content-addressed: the second bench finds the bundle on the device, verified, and sends nothing
    again = edgekit.bench(device_bundle, device=device, **FAST)
    assert again.device is not None and again.device["pushed"] is False
    assert again.device["bundle_key"] == result.device["bundle_key"]


def test_unknown_host_key_is_exit_4_with_its_fingerprint(sshd: SshServer, device_bundle: Path) -> None:
    from edgekit.devices.ssh import key_fingerprint

    expected = key_fingerprint(sshd.host_key_line.split()[1])
    with pytest.raises(ToolchainMissingError) as info:
        edgekit.bench(device_bundle, device=sshd.device(known=False), **FAST)
    assert info.value.exit_code == 4
    message = info.value.one_line()
    assert "host key is not known" in message and expected in message and "ssh-keyscan -p" in message
    assert not (sshd.root / "device-workdir").exists()  # nothing ran on the device


def _remote_bench_pids(marker: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if "edgekit.runtime" in cmd and marker in cmd and "-c" not in (proc.info.get("cmdline") or [])[1:2]:
            pids.append(proc.pid)
    return pids


def test_device_killed_mid_bench_is_exit_4_and_nothing_measured(sshd: SshServer, device_bundle: Path) -> None:
    device = sshd.device()
    outcome: dict[str, BaseException | object] = {}

    def run() -> None:
        try:
            outcome["result"] = edgekit.bench(device_bundle, device=device, warmup=1, duration=60.0)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not _remote_bench_pids(device.workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _remote_bench_pids(device.workdir), "the bench never started on the device"
    sshd.kill_all()  # power cut: sshd, the session and the bench
    thread.join(timeout=60)
    assert "result" not in outcome
    error = outcome.get("error")
    assert isinstance(error, ToolchainMissingError) and error.exit_code == 4, error
    assert not _remote_bench_pids(device.workdir)


def test_device_without_edgekit_or_python_is_exit_4(sshd: SshServer, device_bundle: Path) -> None:
    from dataclasses import replace

    missing = replace(sshd.device(), python="/nonexistent/python3")
    with pytest.raises(ToolchainMissingError, match="not found"):
        edgekit.bench(device_bundle, device=missing, **FAST)
    bare = Path("/usr/bin/python3")  # a system Python without edgekit, where there is one
    if bare.exists():
        import subprocess

        if subprocess.run([str(bare), "-c", "import edgekit"], capture_output=True).returncode != 0:
            with pytest.raises(ToolchainMissingError, match="runtime is not installed"):
                edgekit.bench(device_bundle, device=replace(sshd.device(), python=str(bare)), **FAST)


def test_hostile_fields_never_reach_a_shell_unquoted(sshd: SshServer, device_bundle: Path, tmp_path: Path) -> None:
    """Even a Device built around validation: every word is quoted, so `;` and `$()` are just bytes."""
    from dataclasses import replace

    marker = tmp_path / "pwned"
    hostile = replace(sshd.device(), python=f"python3;touch {marker}",
                      workdir=f"{tmp_path}/w$(touch {marker})")
    with pytest.raises(ToolchainMissingError):
        edgekit.bench(device_bundle, device=hostile, **FAST)
    hostile = replace(sshd.device(), workdir=f"{tmp_path}/w;touch {marker};x")
    edgekit.bench(device_bundle, device=hostile, **FAST)  # a strange but quoted folder name works
    assert not marker.exists()
    assert (tmp_path / f"w;touch {marker};x" / "bundles").is_dir()


def test_damaged_copy_on_the_device_is_replaced(sshd: SshServer, device_bundle: Path) -> None:
    device = sshd.device()
    first = edgekit.bench(device_bundle, device=device, **FAST)
    assert first.device is not None
    stored = Path(device.workdir) / "bundles" / first.device["bundle_key"]
    victim = next(p for p in stored.rglob("*.onnx"))
    victim.write_bytes(b"tampered")
    again = edgekit.bench(device_bundle, device=device, **FAST)
    assert again.device is not None and again.device["pushed"] is True and again.provenance == "measured"


def test_ctrl_c_releases_the_device(sshd: SshServer, device_bundle: Path, tmp_path: Path) -> None:
    """SIGINT to the client: exit 130, and the device-side watchdog kills the bench at once."""
    import os
    import signal
    import subprocess
    import sys

    from edgekit.devices import add_device

    device = sshd.device()
    add_device(device)
    cli = subprocess.Popen([sys.executable, "-m", "edgekit", "bench", str(device_bundle), "--device", "board",
                            "--warmup", "1", "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while not _remote_bench_pids(device.workdir) and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.1)
        assert _remote_bench_pids(device.workdir), cli.communicate(timeout=5)
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
        assert cli.returncode == 130, err
        deadline = time.monotonic() + 10
        while _remote_bench_pids(device.workdir) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _remote_bench_pids(device.workdir), "the bench kept running on the device"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
