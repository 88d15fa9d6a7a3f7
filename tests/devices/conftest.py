"""A real OpenSSH server on 127.0.0.1 serving this machine as a "device" (keys, config and workdir in tmp_path).

The client side never reads the real ~/.ssh (OpenSSH reads the passwd home, not $HOME): every device
gets `ssh_config` (-F) and `known_hosts` files generated here. Skips cleanly when `sshd` is absent.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgekit.devices import Device, make_device

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()), None)
DEVICE_PYTHON = sys.executable  # the "device" runs this checkout's venv python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-test", "-f", str(path)],
                   check=True, capture_output=True)
    return (path.with_suffix(".pub") if path.suffix else Path(f"{path}.pub")).read_text().strip()


@dataclass
class SshServer:
    """One sshd on 127.0.0.1:port; `device()` gives a Device that trusts its host key (or not)."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str
    host_key_line: str  # "ssh-ed25519 AAAA..." of the server

    def device(self, name: str = "board", *, known: bool = True, target: str = "cpu") -> Device:
        known_hosts = self.root / ("known_hosts" if known else "known_hosts_empty")
        known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key_line}\n" if known else "")
        return make_device(name, url=f"ssh://{self.user}@127.0.0.1:{self.port}", target=target,
                           python=DEVICE_PYTHON, workdir=str(self.root / "device-workdir"),
                           ssh_config=str(self.root / "ssh_config"), known_hosts=str(known_hosts))

    def kill_all(self) -> None:
        """Power cut: sshd and every session and command under it, SIGKILL (pids of our own sshd only)."""
        import psutil

        try:
            parent = psutil.Process(self.proc.pid)
            victims = [*parent.children(recursive=True), parent]
        except psutil.NoSuchProcess:
            return
        for proc in victims:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def _wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("sshd did not listen in time")


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    if SSHD is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir, needed as root
    root = tmp_path / "sshd"
    root.mkdir()
    host_pub = _keygen(root / "host_ed25519")
    user_pub = _keygen(root / "id_ed25519")
    (root / "authorized_keys").write_text(user_pub + "\n")
    env_dir = root / "device-env"
    port = _free_port()
    (root / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_ed25519'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", f"PidFile {root / 'sshd.pid'}",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel ERROR",
        # the device side keeps its edgekit keys and caches in tmp too
        f"SetEnv EDGEKIT_KEY_DIR={env_dir / 'keys'} XDG_CONFIG_HOME={env_dir / 'config'} "
        f"XDG_CACHE_HOME={env_dir / 'cache'} EDGEKIT_CACHE_DIR={env_dir / 'edgekit-cache'}",
        "",
    ]))
    (root / "ssh_config").write_text("\n".join([
        "Host *", f"  IdentityFile {root / 'id_ed25519'}", "  IdentitiesOnly yes",
        "  GlobalKnownHostsFile /dev/null", "  UpdateHostKeys no", "",
    ]))
    proc = subprocess.Popen([SSHD, "-f", str(root / "sshd_config"), "-D", "-e"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_listening(port, proc)
        key_type, key_b64 = host_pub.split()[:2]
        yield SshServer(root, port, proc, getpass.getuser(), f"{key_type} {key_b64}")
    finally:
        server = SshServer(root, port, proc, "", "")
        server.kill_all()
        proc.wait(timeout=10)


@pytest.fixture
def device_bundle(tmp_path: Path) -> Path:
    from tests._bench_helpers import compile_bundle

    return compile_bundle(tmp_path / "bundles")


DeviceFactory = Callable[..., Device]


@pytest.fixture(autouse=True)
def _own_devices_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts with no devices: its own user config dir (the session one is shared)."""
    monkeypatch.setenv("EDGEKIT_CONFIG_DIR", str(tmp_path / "edgekit-config"))
    return tmp_path / "edgekit-config"
