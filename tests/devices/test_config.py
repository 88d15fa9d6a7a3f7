"""Device configuration, the device-side helper and the result round trip, without any network."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edgekit.devices import RemoteBenchOptions, parse_url
from edgekit.devices import _device_helper as helper
from edgekit.errors import BadInputError, ToolchainMissingError


@pytest.mark.parametrize(("text", "host", "user", "port"), [
    ("ssh://pi@192.168.1.20:22", "192.168.1.20", "pi", 22),
    ("ssh://board", "board", None, None),
    ("ssh://ci_user@[::1]:2222", "::1", "ci_user", 2222),
    ("ssh://a.b-c@rk3588-07.lab.example.com", "rk3588-07.lab.example.com", "a.b-c", None),
])
def test_urls_parse_strictly(text: str, host: str, user: str | None, port: int | None) -> None:
    url = parse_url(text)
    assert (url.host, url.user, url.port) == (host, user, port)
    assert parse_url(str(url)) == url


@pytest.mark.parametrize("text", [
    "ssh://u@h:", "ssh://u@h:-1", "ssh://u@h..x", "ssh://u@h\n", "ssh://u@h\x00", "ssh://u@[zz]:1", "ssh:/u@h",
    "ssh://u@h#frag", "ssh://u@h?", "ssh://u@h;id", "ssh://u@`id`", "ssh://-u@h", "ssh://u@h/../x", "",
])
def test_bad_urls_are_exit_2(text: str) -> None:
    with pytest.raises(BadInputError):
        parse_url(text)


def test_runtime_cli_accepts_every_flag_we_send() -> None:
    from edgekit.runtime.__main__ import _parser

    argv = RemoteBenchOptions(warmup=3, iters=7, threads=2, batch=2, input_shapes=("x:2,16",), cv_threshold=0.2,
                              allow_emulated=True, trust=True).runtime_argv("bundles/k")
    assert argv[:2] == ["-m", "edgekit.runtime"]
    args = _parser().parse_args(argv[2:])
    assert (args.verb, args.bundle, args.json_dest, args.iters, args.threads, args.batch) == \
        ("bench", "bundles/k", "-", 7, 2, 2)
    assert args.input_shape == ["x:2,16"] and args.emulated and args.trust_bundle
    args = _parser().parse_args(RemoteBenchOptions(duration=1.5, stability_metric="cv", max_extend_rounds=1)
                                .runtime_argv("b")[2:])
    assert (args.duration, args.stability_metric, args.max_extend_rounds) == (1.5, "cv", 1)


def _bundle(tmp: Path) -> tuple[Path, str]:
    from tests._bench_helpers import compile_bundle

    bundle = compile_bundle(tmp)
    return bundle, hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()


def _tar(members: dict[str, bytes], *, link: str | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    buffer.seek(0)
    return buffer


def test_helper_receives_verified_bundles_and_refuses_hostile_tars(tmp_path: Path) -> None:
    from edgekit.artifact import Artifact
    from edgekit.devices.remote import bundle_key, bundle_tar_bytes

    bundle, key = _bundle(tmp_path / "b")
    artifact = Artifact.open(bundle)
    assert bundle_key(artifact) == key
    work = tmp_path / "device"
    (work / "bundles").mkdir(parents=True)
    assert helper.receive(str(work), key, io.BytesIO(bundle_tar_bytes(artifact)))["stored"] is True
    assert helper.probe(str(work), key)["bundle"]["present"] is True
    assert helper.receive(str(work), key, io.BytesIO(bundle_tar_bytes(artifact)))["stored"] is False

    files = {rel: (bundle / rel).read_bytes() for rel in ["manifest.json", *artifact.manifest.files]}
    other = "0" * 64
    for name, tar in [("escape", _tar({**files, "../evil": b"x"})), ("absolute", _tar({**files, "/tmp/evil": b"x"})),
                      ("symlink", _tar(files, link="model.onnx.lnk")), ("extra", _tar({**files, "extra.bin": b"x"})),
                      ("damaged", _tar({**files, next(iter(artifact.manifest.files)): b"tampered"}))]:
        with pytest.raises(SystemExit):
            helper.receive(str(work), other, tar)
        assert not (work / "bundles" / other).exists(), name
    with pytest.raises(SystemExit):  # a key that is not a sha256 never becomes a path
        helper.receive(str(work), "../../x", _tar(files))
    assert sorted(p.name for p in (work / "bundles").iterdir()) == [key]  # no scratch left behind


def test_bench_result_round_trips_and_malformed_replies_are_exit_4(tmp_path: Path) -> None:
    import edgekit
    from edgekit.checks.latency import BenchResult

    bundle, _ = _bundle(tmp_path / "b")
    result = edgekit.bench(bundle, warmup=1, iters=10)
    back = BenchResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.stats == result.stats and back.samples_ms == result.samples_ms and back.config == result.config
    bad = result.to_json()
    bad["samples_ms"] = [1.0, float("nan")]
    with pytest.raises(ToolchainMissingError):
        BenchResult.from_json(bad)
    with pytest.raises(ToolchainMissingError):
        BenchResult.from_json({"schema": "edgekit.bench/1"})


def test_importing_devices_does_not_import_ray_or_torch() -> None:
    code = "import sys, edgekit.devices, edgekit.cli; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_recipe_target_device_is_validated() -> None:
    from edgekit.recipe import TargetSettings

    assert TargetSettings(name="cpu", device="board").device == "board"
    assert TargetSettings(name="cpu", device="ssh://pi@10.0.0.5:22").device == "ssh://pi@10.0.0.5:22"
    for bad in ("a;b", "ssh://x@-oProxyCommand=id", "ssh://x@h/p"):
        with pytest.raises(BadInputError):
            TargetSettings(name="cpu", device=bad)


def test_no_cluster_no_device_is_the_local_bench(tmp_path: Path) -> None:
    import edgekit

    bundle, _ = _bundle(tmp_path / "b")
    result = edgekit.bench(bundle, warmup=1, iters=5)
    assert result.device is None and "device" not in result.environment and result.to_json()["device"] is None
    with pytest.raises(BadInputError, match="not both"):
        edgekit.bench(bundle, device="board", cluster="127.0.0.1:1")
