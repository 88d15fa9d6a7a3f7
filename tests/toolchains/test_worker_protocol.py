"""edgekit.worker/1 with a fake worker: noise, crashes, timeouts, garbage, vendor errors carried back."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import BadInputError, ToolchainMissingError, UnsupportedError
from edgekit.toolchains import protocol
from edgekit.toolchains.worker_client import (
    VendorError,
    WorkerClient,
    WorkerCrashedError,
    WorkerProtocolError,
    WorkerTimeoutError,
)

PROTOCOL_PY = Path(protocol.__file__)

# A worker that loads protocol.py by path (as the real one does inside a vendor env) and misbehaves on request.
FAKE_WORKER = textwrap.dedent('''
    import importlib.util, os, sys, time
    spec = importlib.util.spec_from_file_location("fake_protocol", sys.argv[1])
    protocol = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = protocol
    spec.loader.exec_module(protocol)
    print("vendor banner on stdout before the framing is set up")
    sys.stdout.flush()
    channel = protocol.take_stdout()

    def hello(params):
        return {"protocol": protocol.PROTOCOL, "pid": os.getpid()}

    def echo(params):
        print("noise from print()")          # Python stdout
        os.write(1, b"noise from fd 1\\n")    # C-level stdout
        arr = protocol.decode_array(params["array"])
        return {"array": protocol.encode_array(arr * 2), "text": params.get("text")}

    def vendor_fail(params):
        mark = protocol.TEE.mark()
        print("I build: starting")
        print("E build: Conv kernel 33x33 is out of range")
        raise protocol.VendorFailure("RKNN build returned -1", protocol.vendor_lines(mark))

    def crash(params):
        sys.stderr.write("segfault-like death in the vendor library\\n")
        sys.stderr.flush()
        time.sleep(0.3)
        os._exit(7)

    def sleep(params):
        time.sleep(params["seconds"])
        return {"slept": params["seconds"]}

    def garble(params):
        channel.write(protocol.FRAME_PREFIX + "{not json\\n")
        channel.flush()
        return {"never": "seen"}

    def bug(params):
        return 1 / 0

    def bad_params(params):
        raise protocol.BadParams("missing param 'model'")

    sys.exit(protocol.serve({"hello": hello, "echo": echo, "vendor_fail": vendor_fail, "crash": crash,
                             "sleep": sleep, "garble": garble, "bug": bug, "bad_params": bad_params},
                            channel=channel))
''')


@pytest.fixture
def fake_worker(tmp_path: Path) -> Path:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    return script


@pytest.fixture
def client(fake_worker: Path):
    with WorkerClient(sys.executable, fake_worker, args=(str(PROTOCOL_PY),), start_timeout=30) as c:
        yield c


def test_handshake_and_array_roundtrip_ignore_stdout_noise(client: WorkerClient) -> None:
    assert client.hello["protocol"] == protocol.PROTOCOL
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = client.call("echo", {"array": protocol.encode_array(data), "text": "ok"}, timeout=10)
    np.testing.assert_array_equal(protocol.decode_array(result["array"]), data * 2)
    assert result["text"] == "ok"
    # Only the banner printed before take_stdout() reached the response pipe, and it was skipped as
    # noise; the prints during the call went to stderr.
    assert client.noise_lines == 1
    assert "noise from print()" in client.stderr_tail(50)
    assert "noise from fd 1" in client.stderr_tail(50)


def test_vendor_error_carries_the_vendor_message(client: WorkerClient) -> None:
    with pytest.raises(VendorError) as info:
        client.call("vendor_fail", {}, timeout=10)
    err = info.value
    assert isinstance(err, UnsupportedError) and err.exit_code == 3
    assert "Conv kernel 33x33 is out of range" in err.vendor_message
    assert "RKNN build returned -1" in err.one_line()
    assert client.alive  # a vendor error does not kill the worker
    assert client.call("hello", {}, timeout=10)["protocol"] == protocol.PROTOCOL


def test_crash_is_detected_with_last_stderr_lines(client: WorkerClient) -> None:
    with pytest.raises(WorkerCrashedError) as info:
        client.call("crash", {}, timeout=20)
    assert info.value.exit_code == 4
    assert "code 7" in str(info.value)
    assert "segfault-like death" in info.value.stderr_tail
    with pytest.raises(WorkerCrashedError):
        client.call("hello", {}, timeout=5)


def test_timeout_kills_the_worker(client: WorkerClient) -> None:
    start = time.monotonic()
    with pytest.raises(WorkerTimeoutError) as info:
        client.call("sleep", {"seconds": 30}, timeout=1.0)
    assert time.monotonic() - start < 15
    assert isinstance(info.value, ToolchainMissingError)
    assert not client.alive


def test_garbled_response_is_a_protocol_error(client: WorkerClient) -> None:
    with pytest.raises(WorkerProtocolError, match="garbled"):
        client.call("garble", {}, timeout=10)


def test_bad_request_json_and_unknown_method(client: WorkerClient) -> None:
    assert client.proc.stdin is not None
    client.proc.stdin.write("{this is not json\n")
    client.proc.stdin.flush()
    # The worker answers the unparseable line with id None; the next call surfaces it as a bad request.
    with pytest.raises(BadInputError, match="not JSON"):
        client.call("hello", {}, timeout=10)
    with pytest.raises(WorkerProtocolError, match="does not know 'frobnicate'"):
        client.call("frobnicate", {}, timeout=10)
    with pytest.raises(BadInputError, match="missing param 'model'"):
        client.call("bad_params", {}, timeout=10)
    with pytest.raises(WorkerProtocolError, match="ZeroDivisionError"):
        client.call("bug", {}, timeout=10)
    assert client.call("hello", {}, timeout=10)["protocol"] == protocol.PROTOCOL


def test_worker_that_never_starts_is_a_crash(tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text("import sys; sys.stderr.write('ImportError: no module named rknn\\n'); sys.exit(3)\n")
    with pytest.raises(WorkerCrashedError) as info:
        WorkerClient(sys.executable, script, start_timeout=20)
    assert "no module named rknn" in info.value.stderr_tail


def test_missing_python_is_toolchain_missing(tmp_path: Path) -> None:
    with pytest.raises(ToolchainMissingError, match="cannot start worker"):
        WorkerClient(tmp_path / "no-such-python", tmp_path / "w.py")


def test_message_codecs() -> None:
    req = protocol.Request(5, "build", {"model": "m.onnx"})
    assert protocol.Request.loads(req.dumps()) == req
    with pytest.raises(protocol.ProtocolError, match="protocol"):
        protocol.Request.loads(json.dumps({"protocol": "other/9", "id": 1, "method": "x"}))
    with pytest.raises(protocol.ProtocolError):
        protocol.Request.loads(json.dumps({"protocol": protocol.PROTOCOL, "id": "1", "method": "x"}))
    ok = protocol.Response(5, True, {"a": 1})
    assert protocol.Response.parse_frame(ok.frame()) == ok
    failure = protocol.Response(6, False, error=protocol.WorkerFailure("VendorError", "m", "E x"))
    assert protocol.Response.parse_frame(failure.frame()) == failure
    assert protocol.Response.parse_frame("I rknn building ...\n") is None
    with pytest.raises(protocol.ProtocolError):
        protocol.Response.parse_frame(protocol.FRAME_PREFIX + '{"id": 1}\n')
    arr = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float16)
    back = protocol.decode_array(json.loads(json.dumps(protocol.encode_array(arr))))
    assert back.dtype == np.float16
    np.testing.assert_array_equal(back, arr)
    scalar = protocol.decode_array(json.loads(json.dumps(protocol.encode_array(np.array(16000, np.int64)))))
    assert scalar.shape == () and scalar == 16000  # a 0-d input (silero-vad's `sr`) stays 0-d


def test_worker_script_imports_only_stdlib_numpy_and_rknn() -> None:
    """The rknn worker runs where edgekit is not installed: it must not import edgekit or heavy deps."""
    import ast

    from edgekit.toolchains.env import RKNN

    allowed = {"importlib", "os", "sys", "time", "numpy", "rknn"}
    for path in (RKNN.worker_path, PROTOCOL_PY):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            for name in names:
                assert name in allowed or name in sys.stdlib_module_names, f"{path.name} imports {name}"
