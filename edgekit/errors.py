"""Errors with exit codes.

The library raises these; only the CLI maps them to exit codes (design.md, "Exit codes").
Every message is meant to be read on one line: what (file or argument), what is wrong, what to do.
"""

from __future__ import annotations

from pathlib import Path


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
