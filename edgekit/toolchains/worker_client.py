"""Spawn a worker script in a toolchain environment's Python and talk edgekit.worker/1 to it.

The client owns the process: it sends one request at a time, waits for the framed response with a
timeout, ignores anything on the response pipe that is not a frame, keeps the last stderr lines so a
crash or a timeout can say what the vendor printed last, and kills the worker on timeout or close.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from edgekit.errors import BadInputError, EdgekitError, ToolchainMissingError, UnsupportedError
from edgekit.progress import emit
from edgekit.toolchains import protocol


class WorkerError(ToolchainMissingError):
    """The worker process misbehaved (crashed, timed out, spoke garbage): exit 4."""

    def __init__(self, message: str, *, stderr_tail: str = "", hint: str | None = None):
        self.stderr_tail = stderr_tail
        tail = f"; last worker output: {stderr_tail.splitlines()[-1][:300]}" if stderr_tail.strip() else ""
        super().__init__(message + tail, hint=hint)


class WorkerCrashedError(WorkerError):
    """The worker exited before answering."""


class WorkerTimeoutError(WorkerError):
    """The worker did not answer in time (it was killed)."""


class WorkerProtocolError(WorkerError):
    """The worker answered something that is not edgekit.worker/1."""


class VendorError(UnsupportedError):
    """The vendor toolkit refused or failed; `vendor_message` is what it printed (exit 3)."""

    def __init__(self, message: str, *, vendor_message: str = "", error_type: str = protocol.VENDOR_ERROR,
                 hint: str | None = None):
        self.vendor_message = vendor_message
        self.error_type = error_type
        first = next((ln for ln in vendor_message.splitlines() if ln.strip()), "")
        text = f"{message}: {first[:300]}" if first and first not in message else message
        super().__init__(text, hint=hint)


def _error_for(failure: protocol.WorkerFailure, method: str) -> EdgekitError:
    if failure.type == protocol.VENDOR_ERROR:
        return VendorError(failure.message, vendor_message=failure.vendor_message)
    if failure.type == protocol.BAD_REQUEST:
        return BadInputError(f"worker rejected {method!r}: {failure.message}")
    if failure.type == protocol.UNKNOWN_METHOD:
        return WorkerProtocolError(f"worker does not know {method!r}: {failure.message}",
                                   hint="the toolchain environment is older than edgekit: reinstall it")
    return WorkerProtocolError(f"worker failed in {method!r}: {failure.message}",
                               stderr_tail=failure.vendor_message)


class WorkerClient:
    """A running worker. Use as a context manager; `call` raises edgekit errors, never hangs."""

    def __init__(
        self,
        python: str | Path,
        script: str | Path,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        start_timeout: float = 120.0,
        stderr_lines: int = 200,
        handshake: bool = True,
        echo_stderr: bool = False,
    ):
        self.python = str(python)
        self.script = str(script)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._responses: queue.Queue[str | None] = queue.Queue()
        self._next_id = 1
        self._echo = echo_stderr
        self.noise_lines = 0  # lines on the response pipe that were not frames
        self._lines = 0  # vendor output lines seen (progress)
        run_env = dict(os.environ if env is None else env)
        run_env.setdefault("PYTHONUNBUFFERED", "1")
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):  # never leak edgekit's env into the vendor's
            run_env.pop(var, None)
        try:
            self.proc = subprocess.Popen(
                [self.python, "-u", self.script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=run_env, cwd=str(cwd) if cwd else None, text=True, encoding="utf-8",
                errors="replace", bufsize=1,
            )
        except OSError as exc:
            raise ToolchainMissingError(f"cannot start worker ({exc})", path=self.python,
                                        hint="run `edgekit toolchain doctor` to check the environment") from None
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        # the pump thread reports the vendor tool's output through the caller's progress sink (contextvars
        # are not inherited by threads, so the context is carried over explicitly)
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._pump_stderr,), daemon=True).start()
        self.hello: dict[str, Any] = {}
        if handshake:
            self.hello = self.call("hello", {}, timeout=start_timeout)
            if self.hello.get("protocol") != protocol.PROTOCOL:
                self.close()
                raise WorkerProtocolError(f"worker speaks {self.hello.get('protocol')!r}, edgekit speaks "
                                          f"{protocol.PROTOCOL!r}", hint="reinstall the toolchain environment")

    # -- pumps ------------------------------------------------------------------------------------------
    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._responses.put(line)
        self._responses.put(None)  # EOF

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            for part in line.replace("\r", "\n").splitlines():
                if part.strip():
                    self._stderr_tail.append(part.rstrip())
                    self._lines += 1
                    emit("vendor tool", self._lines, None, part.strip()[:160])
            if self._echo:
                with contextlib.suppress(Exception):
                    os.write(2, line.encode("utf-8", "replace"))

    def stderr_tail(self, lines: int = 20) -> str:
        time.sleep(0.05)  # let the stderr pump read what a dying worker wrote last
        return "\n".join(list(self._stderr_tail)[-lines:])

    # -- calls ------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 600.0) -> Any:
        """Send one request and return its result; raise the matching edgekit error otherwise."""
        if not self.alive:
            raise WorkerCrashedError(f"worker is not running (exit code {self.proc.returncode})",
                                     stderr_tail=self.stderr_tail())
        request = protocol.Request(self._next_id, method, params or {})
        self._next_id += 1
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(request.dumps() + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._reap()
            raise WorkerCrashedError(f"worker died before {method!r} could be sent (exit code "
                                     f"{self.proc.returncode})", stderr_tail=self.stderr_tail()) from None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeoutError(f"worker did not answer {method!r} within {timeout:g} s (killed)",
                                         stderr_tail=self.stderr_tail(),
                                         hint="raise the timeout, or check the model with the vendor tool")
            try:
                line = self._responses.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self._reap()
                raise WorkerCrashedError(f"worker exited (code {code}) while running {method!r}",
                                         stderr_tail=self.stderr_tail())
            try:
                response = protocol.Response.parse_frame(line)
            except protocol.ProtocolError as exc:
                self.kill()
                raise WorkerProtocolError(f"garbled answer to {method!r}: {exc}",
                                          stderr_tail=self.stderr_tail()) from None
            if response is None:
                self.noise_lines += 1
                continue
            if response.id is None and not response.ok and response.error is not None:
                raise _error_for(response.error, method)
            if response.id != request.id:
                self.noise_lines += 1  # an answer to an earlier, timed-out request: skip it
                continue
            if response.ok:
                return response.result
            assert response.error is not None
            raise _error_for(response.error, method)

    # -- lifetime ---------------------------------------------------------------------------------------
    def _reap(self, wait: float = 5.0) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.proc.wait(timeout=wait)
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self._reap()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to shut down; kill it if it does not."""
        if self.alive:
            with contextlib.suppress(EdgekitError):
                self.call("shutdown", {}, timeout=timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
