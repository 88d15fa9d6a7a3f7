"""Errors with exit codes.

The library raises these; only the CLI maps them to exit codes (design.md, "Exit codes").
Every message is meant to be read on one line: what (file or argument), what is wrong, what to do.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


class EdgekitError(Exception):
    """Base class: a failure we can explain to the user in one line."""

    exit_code: int = 2
    kind: str = "error"

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split())


class BadInputError(EdgekitError):
    """A file, argument or option the user gave is missing, malformed or inconsistent (exit 2)."""

    exit_code = 2
    kind = "bad input"


class CheckFailedError(EdgekitError):
    """An accuracy or latency check (budget, tolerance) did not hold (exit 1)."""

    exit_code = 1
    kind = "check failed"


class UnsupportedError(EdgekitError):
    """The model uses something the target or adapter cannot run (exit 3)."""

    exit_code = 3
    kind = "unsupported"


class ToolchainMissingError(EdgekitError):
    """A backend, vendor toolchain or device is not present here (exit 4)."""

    exit_code = 4
    kind = "toolchain unavailable"


# ---------------------------------------------------------------------------------------------
# Ctrl-C inside native code: an interrupt is always exit 130, never "unsupported" or a skipped candidate

_SIGINT_SEEN = threading.Event()
_WATCH_DEPTH = [0]


@contextlib.contextmanager
def watch_interrupts() -> Iterator[None]:
    """Inside the block, a Ctrl-C stays an interrupt even when foreign code catches it.

    Why: TVM's FFI turns a KeyboardInterrupt raised while it runs into a plain RuntimeError, and
    MetaSchedule logs one raised in a candidate build as a failed build and carries on; a broad
    `except Exception` would then report "unsupported", or the run would finish with exit 0. When
    SIGINT arrived during the block, whatever leaves it (an exception, or a normal return) becomes
    KeyboardInterrupt. Signals arrive on the main thread only; elsewhere, and when SIGINT is ignored
    or left to the OS, this does nothing.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    chained = previous

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        _SIGINT_SEEN.set()
        chained(signum, frame)

    _WATCH_DEPTH[0] += 1
    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        if _SIGINT_SEEN.is_set():
            raise KeyboardInterrupt from exc
        raise
    else:
        if _SIGINT_SEEN.is_set():  # a toolchain swallowed the Ctrl-C and carried on
            raise KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, previous)
        _WATCH_DEPTH[0] -= 1
        if _WATCH_DEPTH[0] == 0:
            _SIGINT_SEEN.clear()


def raise_if_interrupted(exc: BaseException | None = None) -> None:
    """Raise KeyboardInterrupt when `exc` was caused by one, or Ctrl-C arrived in the current watch.

    Call it first in every broad `except Exception` around foreign code, so an interrupt is never
    reported as a failure, nor skipped as a failed candidate.
    """
    chain: BaseException | None = exc
    seen: set[int] = set()
    while chain is not None and id(chain) not in seen:
        if isinstance(chain, KeyboardInterrupt):
            raise KeyboardInterrupt from exc
        seen.add(id(chain))
        chain = chain.__cause__ or chain.__context__
    if _SIGINT_SEEN.is_set():
        raise KeyboardInterrupt from exc
