"""The SSH transport: the system OpenSSH client, in batch mode, with host keys verified.

Why OpenSSH and not a Python client: it honours `~/.ssh/config` (ProxyJump, aliases), the agent and
`known_hosts` exactly as the user's own `ssh` does, and it is already on every CI runner. It never
prompts (`BatchMode=yes`), never accepts an unknown host key (`StrictHostKeyChecking=yes`: the error
carries the key's fingerprint and how to add it), gives up connecting after `ConnectTimeout` and
notices a dead link within ~15 s (`ServerAliveInterval`). Remote commands are argv lists joined with
`shlex.quote`; nothing from a bundle or device name reaches a shell unquoted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from edgekit.devices.config import Device
from edgekit.errors import ToolchainMissingError

SSH_CONFIG_ENV = "EDGEKIT_SSH_CONFIG"  # an ssh_config passed with -F to every device without its own
CONNECT_TIMEOUT_S = 10


@dataclass
class Completed:
    """A finished remote command: exit code (255: ssh itself failed), stdout bytes, stderr text."""

    returncode: int
    stdout: bytes
    stderr: str


def _pipes(proc: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
    if proc.stdin is None or proc.stdout is None or proc.stderr is None:
        raise RuntimeError("ssh was started without pipes")
    return proc.stdin, proc.stdout, proc.stderr


def run_process(argv: Sequence[str], *, timeout: float, stdin: bytes | None = None,
                feed: Callable[[IO[bytes]], None] | None = None,
                keep_stdin_open: bool = False) -> tuple[int, bytes, str]:
    """(exit code, stdout, stderr) of `argv`, its stdin fed then closed, or held open until it exits.

    However this returns (normally, timeout, Ctrl-C), the process is dead afterwards and its stdin
    closed: a device-side watchdog reading that stdin then stops the bench.
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pipe_in, pipe_out, pipe_err = _pipes(proc)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=lambda: out.append(pipe_out.read()), daemon=True),
               threading.Thread(target=lambda: err.append(pipe_err.read()), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        try:
            if feed is not None:
                feed(pipe_in)
            elif stdin:
                pipe_in.write(stdin)
            if not keep_stdin_open:
                pipe_in.close()
        except BrokenPipeError:
            pass  # the far end went away: its exit code and stderr say why
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(BrokenPipeError):
            pipe_in.close()
        for reader in readers:
            reader.join(timeout=5)
    return code, b"".join(out), b"".join(err).decode("utf-8", "replace")


def _ssh_binary() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise ToolchainMissingError("the OpenSSH client `ssh` is not installed here", path="--device",
                                    hint="install openssh-client (apt-get install openssh-client)")
    return found


class SshTransport:
    """Runs argv lists on one device; every failure of the link is ToolchainMissingError (exit 4)."""

    def __init__(self, device: Device, *, connect_timeout: int = CONNECT_TIMEOUT_S):
        self.device = device
        self.connect_timeout = max(1, int(connect_timeout))

    def options(self) -> list[str]:
        """The ssh options (without destination): config file, batch mode, host key policy, timeouts."""
        d = self.device
        argv: list[str] = []
        config = d.ssh_config or os.environ.get(SSH_CONFIG_ENV)
        if config:
            argv += ["-F", config]
        argv += ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                 "-o", f"ConnectTimeout={self.connect_timeout}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if d.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={d.known_hosts}"]
        if d.identity:
            argv += ["-i", d.identity, "-o", "IdentitiesOnly=yes"]
        if d.url.port is not None:
            argv += ["-p", str(d.url.port)]
        if d.url.user:
            argv += ["-l", d.url.user]
        return argv

    def argv(self, command: Sequence[str]) -> list[str]:
        """`ssh OPTIONS -- HOST 'quoted command'`: the remote shell sees exactly `command`'s words."""
        remote = " ".join(shlex.quote(str(word)) for word in command)
        return [_ssh_binary(), *self.options(), "--", self.device.url.host, remote]

    def run(self, command: Sequence[str], *, stdin: bytes | None = None, timeout: float,
            feed: Callable[[IO[bytes]], None] | None = None, keep_stdin_open: bool = False,
            what: str = "command") -> Completed:
        """Run `command` on the device; stdin is `stdin`, or written by `feed`, or held open while it runs.

        `keep_stdin_open`: the device-side watchdog (`_device_helper run`) kills the bench when our end
        closes, so an interrupted client (Ctrl-C) or a timeout here releases the device. A link that
        fails (ssh exit 255) or a timeout is ToolchainMissingError with the reason.
        """
        try:
            code, stdout, stderr = run_process(self.argv(command), stdin=stdin, feed=feed, timeout=timeout,
                                               keep_stdin_open=keep_stdin_open)
        except subprocess.TimeoutExpired:
            raise ToolchainMissingError(
                f"device {self.device.name!r}: {what} ran past {timeout:g} s; stopped (nothing recorded)",
                path="--device", hint="raise --run-timeout, or check the device's load") from None
        if code == 255:
            raise self.link_error(stderr, what=what)
        return Completed(code, stdout, stderr)

    # -----------------------------------------------------------------------------------------
    # Errors of the link itself (ssh exit 255)

    def link_error(self, stderr: str, *, what: str) -> ToolchainMissingError:
        d = self.device
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else "ssh exited 255 without a message"
        where = f"device {d.name!r} ({d.url})"
        if "Host key verification failed" in stderr or "host key for" in stderr.lower() \
                or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
            changed = "HAS CHANGED" in stderr
            host, port = self.resolved_endpoint()
            prints = host_key_fingerprints(host, port)
            known = d.known_hosts or "~/.ssh/known_hosts"
            seen = "; ".join(prints) if prints else "could not be read (ssh-keyscan failed)"
            what_is = "its host key CHANGED since it was recorded" if changed else "its host key is not known"
            port_flag = f"-p {port} " if port != 22 else ""
            return ToolchainMissingError(
                f"{where}: {what_is} (the device offers {seen}); nothing was run",
                path="--device",
                hint=f"compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` run on the device, then "
                     f"`ssh-keyscan {port_flag}{host} >> {known}`" + (" after removing the old line "
                                                                     f"(ssh-keygen -R {host})" if changed else ""),
            )
        if "Permission denied" in stderr:
            return ToolchainMissingError(f"{where}: login refused ({last})", path="--device",
                                         hint="add your public key to the device's ~/.ssh/authorized_keys "
                                              "(ssh-copy-id), load it into ssh-agent, or set --identity")
        if "closed by remote host" in stderr or "Broken pipe" in stderr or "Connection reset" in stderr \
                or "Timeout, server" in stderr:
            return ToolchainMissingError(f"{where}: the connection dropped during the {what} ({last}); "
                                         "nothing recorded as measured", path="--device",
                                         hint="check the device's power and network, then rerun")
        return ToolchainMissingError(f"{where}: unreachable ({last})", path="--device",
                                     hint="check the address, that sshd runs there, and `ssh` to it by hand")

    def resolved_endpoint(self) -> tuple[str, int]:
        """The host and port ssh would really connect to (after ~/.ssh/config aliases), via `ssh -G`."""
        host, port = self.device.url.host, self.device.url.port or 22
        try:
            done = subprocess.run([_ssh_binary(), *self.options(), "-G", "--", self.device.url.host],
                                  capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return host, port
        for line in done.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key == "hostname" and value:
                host = value.strip()
            elif key == "port" and value.strip().isdigit():
                port = int(value)
        return host, port


def key_fingerprint(key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key blob (what `ssh-keygen -lf` prints)."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_key_fingerprints(host: str, port: int, *, timeout: int = 5) -> list[str]:
    """The host keys a server offers, as `TYPE SHA256:...` (ssh-keyscan; empty when it cannot connect)."""
    keyscan = shutil.which("ssh-keyscan")
    if keyscan is None:
        return []
    try:
        done = subprocess.run([keyscan, "-T", str(timeout), "-p", str(port), "--", host], capture_output=True,
                              text=True, timeout=timeout + 5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    prints = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            try:
                prints.append(f"{parts[1]} {key_fingerprint(parts[2])}")
            except (ValueError, TypeError):
                continue
    return sorted(set(prints))
