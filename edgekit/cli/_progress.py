"""How the CLI shows `edgekit.progress` events: a live line on a terminal, timestamped lines otherwise.

Quiet with `--json -` (stdout is JSON) and `--quiet`. On a terminal one transient status line shows
the current phase with its counts, and each finished step leaves one dim line with its duration; in a
log (CI, a pipe) every step start/end and at most one counter line per phase every 2 s are printed
with a UTC timestamp, so a long step is never silent and a log stays short.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape

from edgekit.progress import Event, LineSink, Sink, reporting


class TerminalSink:
    """One transient status line (Rich), plus a dim line per finished step."""

    def __init__(self, console: Console):
        self.console = console
        self.status: Any = None

    def __call__(self, event: Event) -> None:
        if event.finished:  # a line for the steps that took a while; quick ones just pass
            if (event.seconds or 0.0) >= 1.0:
                self.console.print(f"[dim]✓ {escape(event.text())}[/]", highlight=False)
            return
        text = escape(event.text())
        if self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()


class LogSink(LineSink):
    """`edgekit.progress.LineSink` printed on a Rich console (stderr), markup off."""

    def __init__(self, console: Console, every: float = 2.0, delay: float = 2.0):
        super().__init__(lambda line: console.print(line, highlight=False, markup=False), every, delay)


@contextlib.contextmanager
def cli_progress(console: Console, *, quiet: bool) -> Iterator[Sink | None]:
    """Install the right sink for this console for the duration of a verb."""
    if quiet:
        with reporting(None):
            yield None
        return
    sink: TerminalSink | LogSink = TerminalSink(console) if console.is_terminal else LogSink(console).start()
    try:
        with reporting(sink):
            yield sink
    finally:
        sink.close()
