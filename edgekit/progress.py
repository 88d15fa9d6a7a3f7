"""Progress of long steps: library code says what it is doing, a front door decides how to show it.

Stages, checks and adapters call `emit("calibration", 12, 100)` or wrap a step in
`with step("compiling openvino · bf16"):`; nothing is shown unless a front door installed a sink with
`reporting(sink)` (the CLI: a live line on a terminal, timestamped log lines otherwise, nothing
with `--json -`/`--quiet`). A context variable carries the sink, so no signature changes and no
global state leak between threads or tests.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One progress report: the phase, how far (done of total, when known) and a short detail."""

    phase: str
    done: int | None = None
    total: int | None = None
    detail: str = ""
    finished: bool = False
    seconds: float | None = None  # set on the event that finishes a `step`

    def text(self) -> str:
        count = f" {self.done}/{self.total}" if self.done is not None and self.total else \
            (f" {self.done}" if self.done is not None else "")
        tail = f" — {self.detail}" if self.detail else ""
        took = f" ({self.seconds:.1f} s)" if self.seconds is not None else ""
        return f"{self.phase}{count}{tail}{took}"


Sink = Callable[[Event], None]
_SINK: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("edgekit_progress_sink", default=None)


def emit(phase: str, done: int | None = None, total: int | None = None, detail: str = "") -> None:
    """Report progress of `phase` (cheap when nobody listens)."""
    sink = _SINK.get()
    if sink is not None:
        sink(Event(phase, done, total, detail))


@contextlib.contextmanager
def step(phase: str, detail: str = "") -> Iterator[None]:
    """A named step: reported when it starts and when it ends, with its duration."""
    sink = _SINK.get()
    if sink is None:
        yield
        return
    sink(Event(phase, detail=detail))
    t0 = time.perf_counter()
    try:
        yield
    finally:
        sink(Event(phase, detail=detail, finished=True, seconds=time.perf_counter() - t0))


@contextlib.contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Send the progress of everything run inside the block to `sink` (None: silence)."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


class LineSink:
    """Plain, timestamped lines (logs, CI, the device runtime), only for what takes a while.

    Nothing for the first `delay` seconds (a quick command, or one that fails at once, prints only its
    result); after that a step's start, counters at most every `every` seconds per phase, a step's end
    when it took a second or more, and, from a heartbeat thread (`start()`), the current phase again
    whenever nothing was printed for `every` seconds: a long step is never silent for longer.
    """

    def __init__(self, write: Callable[[str], None], every: float = 2.0, delay: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.write, self.every, self.delay, self.clock = write, every, delay, clock
        self.started = clock()
        self.last: dict[str, float] = {}
        self.printed = self.started
        self.current: Event | None = None
        self.since = self.started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            now = self.clock()
            if event.finished:
                if self.current is not None and self.current.phase == event.phase:
                    self.current = None
                if (event.seconds or 0.0) >= 1.0 and now - self.started >= self.delay:
                    self._print(event, now)
                return
            if self.current is None or self.current.phase != event.phase:
                self.since = now
            self.current = event
            if now - self.started < self.delay:
                return
            counter = event.done is not None
            if counter and now - self.last.get(event.phase, -1e9) < self.every and event.done != event.total:
                return
            self._print(event, now)

    def tick(self) -> None:
        """The heartbeat: repeat the current phase when nothing was printed for `every` seconds."""
        with self._lock:
            now = self.clock()
            if self.current is not None and now - self.printed >= self.every and now - self.started >= self.delay:
                self._print(self.current, now, note=f" (for {now - self.since:.0f} s)")

    def _print(self, event: Event, now: float, note: str = "") -> None:
        self.last[event.phase] = now
        self.printed = now
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        self.write(f"[{stamp}] {'done ' if event.finished else ''}{event.text()}{note}")

    def start(self) -> LineSink:
        def beat() -> None:
            while not self._stop.wait(0.5):
                self.tick()

        self._thread = threading.Thread(target=beat, name="edgekit-progress", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
