"""The worker protocol `edgekit.worker/1`: typed, versioned JSON requests and responses.

A vendor toolchain (RKNN-Toolkit2, ...) runs in its own environment, in a worker process that edgekit
talks to over pipes. One request per line on the worker's stdin:

    {"protocol": "edgekit.worker/1", "id": 3, "method": "build", "params": {...}}

one response per request on the worker's *response channel*:

    {"id": 3, "ok": true, "result": {...}}
    {"id": 3, "ok": false, "error": {"type": "VendorError", "message": "...", "vendor_message": "..."}}

Framing keeps the vendor's noise out of results: at startup the worker moves fd 1 (stdout) onto its
stderr, so whatever the vendor prints (C printf, progress bars, logging) lands on stderr; responses go
to the saved original stdout and each response line starts with FRAME_PREFIX. The client ignores any
line without the prefix. Arrays travel as base64 with dtype and shape.

This module is stdlib-only (numpy is imported only to encode/decode arrays) because the worker runs it
inside the vendor's environment, where edgekit itself is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = "edgekit.worker/1"
FRAME_PREFIX = "@@edgekit.worker/1@@ "

# Error types a worker may answer with (the client maps them onto edgekit errors).
BAD_REQUEST = "BadRequest"  # malformed JSON, wrong protocol, missing/invalid params
UNKNOWN_METHOD = "UnknownMethod"
VENDOR_ERROR = "VendorError"  # the vendor toolkit refused or failed (its message in vendor_message)
INTERNAL_ERROR = "InternalError"  # a bug in the worker itself
ERROR_TYPES = (BAD_REQUEST, UNKNOWN_METHOD, VENDOR_ERROR, INTERNAL_ERROR)


class ProtocolError(Exception):
    """A message that does not follow edgekit.worker/1."""


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"protocol": PROTOCOL, "id": self.id, "method": self.method, "params": self.params}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def loads(cls, line: str) -> Request:
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"request is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ProtocolError("request is not a JSON object")
        if data.get("protocol") != PROTOCOL:
            raise ProtocolError(f"protocol {data.get('protocol')!r} is not {PROTOCOL!r}")
        if not isinstance(data.get("id"), int) or not isinstance(data.get("method"), str):
            raise ProtocolError("request needs an integer id and a string method")
        params = data.get("params", {})
        if not isinstance(params, dict):
            raise ProtocolError("params must be a JSON object")
        return cls(data["id"], data["method"], params)


@dataclass(frozen=True)
class WorkerFailure:
    type: str
    message: str
    vendor_message: str = ""

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "vendor_message": self.vendor_message}


@dataclass(frozen=True)
class Response:
    id: int | None
    ok: bool
    result: Any = None
    error: WorkerFailure | None = None

    def to_json(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result}
        error = self.error or WorkerFailure(INTERNAL_ERROR, "unknown error")
        return {"id": self.id, "ok": False, "error": error.to_json()}

    def frame(self) -> str:
        """One response line, prefixed so the client can tell it from noise."""
        return FRAME_PREFIX + json.dumps(self.to_json(), separators=(",", ":")) + "\n"

    @classmethod
    def parse_frame(cls, line: str) -> Response | None:
        """The response in a line, None when the line is not a frame (noise); ProtocolError when garbled."""
        if not line.startswith(FRAME_PREFIX):
            return None
        try:
            data = json.loads(line[len(FRAME_PREFIX):])
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"response frame is not JSON ({exc})") from None
        if not isinstance(data, dict) or "ok" not in data or "id" not in data:
            raise ProtocolError("response frame lacks id/ok")
        if data["ok"]:
            return cls(data["id"], True, data.get("result"))
        err = data.get("error")
        if not isinstance(err, dict) or "type" not in err or "message" not in err:
            raise ProtocolError("error response lacks error.type/error.message")
        return cls(data["id"], False, error=WorkerFailure(str(err["type"]), str(err["message"]),
                                                          str(err.get("vendor_message", ""))))


# --- arrays -------------------------------------------------------------------------------------------
def encode_array(array: Any) -> dict[str, Any]:
    import numpy as np

    array = np.asarray(array, order="C")  # not ascontiguousarray: it turns a 0-d array into shape (1,)
    return {"__ndarray__": base64.b64encode(array.tobytes()).decode("ascii"), "dtype": array.dtype.str,
            "shape": list(array.shape)}


def decode_array(data: dict[str, Any]) -> Any:
    import numpy as np

    try:
        raw = base64.b64decode(data["__ndarray__"])
        return np.frombuffer(raw, dtype=np.dtype(data["dtype"])).reshape(data["shape"]).copy()
    except (KeyError, ValueError, TypeError) as exc:
        raise ProtocolError(f"bad array payload ({exc})") from None


def is_array(value: Any) -> bool:
    return isinstance(value, dict) and "__ndarray__" in value


# --- the worker side ----------------------------------------------------------------------------------
class VendorFailure(Exception):
    """Raised by a worker method when the vendor toolkit fails; `vendor_message` is what it said."""

    def __init__(self, message: str, vendor_message: str = ""):
        super().__init__(message)
        self.message = message
        self.vendor_message = vendor_message


class BadParams(Exception):
    """Raised by a worker method for missing or invalid params."""


Handler = Callable[[dict[str, Any]], Any]


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class OutputTee:
    """Fds 1 and 2 of the worker go through a pipe; a thread forwards them to the real stderr and keeps
    the recent lines, so a failing vendor call can carry back what the vendor printed."""

    def __init__(self, keep: int = 400):
        import collections
        import threading

        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=keep)
        self._count = 0
        self._lock = threading.Lock()
        self._stderr = os.fdopen(os.dup(2), "wb", buffering=0)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._thread = threading.Thread(target=self._pump, name="edgekit-tee", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while chunk := self._reader.read(65536):
            try:
                self._stderr.write(chunk)
            except OSError:
                pass
            pending += chunk
            *done, pending = pending.replace(b"\r", b"\n").split(b"\n")
            with self._lock:
                for raw in done:
                    text = _ANSI.sub("", raw.decode("utf-8", "replace")).strip()
                    if text:
                        self._count += 1
                        self._lines.append((self._count, text))

    def mark(self) -> int:
        sys.stderr.flush()
        with self._lock:
            return self._count

    def lines_since(self, mark: int, *, settle_s: float = 0.2) -> list[str]:
        import time

        sys.stderr.flush()
        time.sleep(settle_s)  # let the pump catch up with what was just written
        with self._lock:
            return [text for n, text in self._lines if n > mark]


TEE: OutputTee | None = None


def take_stdout(*, tee: bool = True) -> Any:
    """Move fd 1 onto stderr and return a text stream on the original stdout (the response channel).

    After this, anything the vendor writes to stdout (Python or C) goes to stderr, so it can never be
    mistaken for, or interleave with, a response. With `tee`, recent output is kept (see OutputTee).
    """
    global TEE
    sys.stdout.flush()
    sys.stderr.flush()
    response_fd = os.dup(1)
    if tee:
        TEE = OutputTee()
    else:
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(response_fd, "w", buffering=1, encoding="utf-8")


def vendor_lines(mark: int, *, limit: int = 30) -> str:
    """The vendor's output since `mark`: error lines first choice, else the last `limit` lines."""
    if TEE is None:
        return ""
    lines = TEE.lines_since(mark)
    errors = [ln for ln in lines if ln.startswith("E ") or "Error" in ln or "error:" in ln]
    picked = errors[-limit:] if errors else lines[-limit:]
    return "\n".join(picked)[-6000:]


def serve(handlers: dict[str, Handler], *, stdin: Any = None, channel: Any = None) -> int:
    """The worker's request loop: read requests from stdin until EOF or `shutdown`."""
    channel = channel if channel is not None else take_stdout()
    stdin = stdin if stdin is not None else sys.stdin
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = Request.loads(line)
        except ProtocolError as exc:
            channel.write(Response(None, False, error=WorkerFailure(BAD_REQUEST, str(exc))).frame())
            continue
        if request.method == "shutdown":
            channel.write(Response(request.id, True, {"bye": True}).frame())
            return 0
        handler = handlers.get(request.method)
        if handler is None:
            failure = WorkerFailure(UNKNOWN_METHOD, f"unknown method {request.method!r}; known: "
                                    f"{', '.join(sorted([*handlers, 'shutdown']))}")
            channel.write(Response(request.id, False, error=failure).frame())
            continue
        try:
            response = Response(request.id, True, handler(request.params))
        except VendorFailure as exc:
            response = Response(request.id, False, error=WorkerFailure(VENDOR_ERROR, exc.message, exc.vendor_message))
        except BadParams as exc:
            response = Response(request.id, False, error=WorkerFailure(BAD_REQUEST, str(exc)))
        except Exception as exc:
            detail = traceback.format_exc(limit=8)
            sys.stderr.write(detail)
            response = Response(request.id, False, error=WorkerFailure(
                INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", detail[-4000:]))
        try:
            text = response.frame()
        except (TypeError, ValueError) as exc:  # a result that is not JSON-serializable
            failure = WorkerFailure(INTERNAL_ERROR, f"unserializable result: {exc}")
            text = Response(request.id, False, error=failure).frame()
        channel.write(text)
        channel.flush()
    return 0
