"""A new user's path with one board over SSH (sshd on 127.0.0.1): device add, doctor, bench/gate --device."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from tests.devices.conftest import SshServer

runner = CliRunner()
FAST = ["--warmup", "2", "--iters", "30"]


def _run(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _add(sshd: SshServer, name: str = "board", *, known: bool = True) -> None:
    dev = sshd.device(name, known=known)
    res = _run("device", "add", name, "--url", dev.url, "--target", "cpu", "--python", dev.python,
               "--workdir", dev.workdir, "--ssh-config", dev.ssh_config, "--known-hosts", dev.known_hosts)
    assert res.exit_code == 0, res.output


def test_add_doctor_bench_with_budget_and_junit(sshd: SshServer, device_bundle: Path, tmp_path: Path) -> None:
    _add(sshd)
    listed = _run("device", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)["devices"][0]["name"] == "board"
    doctor = _run("device", "doctor", "board")
    assert doctor.exit_code == 0, doctor.output
    assert "onnxruntime" in doctor.output and "ready" in doctor.output

    res = _run("bench", device_bundle, "--device", "board", "--budget", "p90<=25ms", *FAST,
               "--junit", tmp_path / "out.xml", "--json", tmp_path / "out.json")
    assert res.exit_code == 0, res.output
    assert "measured on device board" in res.output and "all budgets hold" in res.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["provenance"] == "measured" and data["device"]["name"] == "board"
    assert data["device"]["transport"] == "ssh" and data["environment"]["device"] == "ssh:cpu"
    assert data["budgets"][0]["provenance"] == "measured"
    pytest.importorskip("jsonschema")
    from edgekit.checks.budgets import validate_bench_json

    validate_bench_json(data)
    suite = ET.parse(tmp_path / "out.xml").getroot().find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["device"] == "board" and props["device_transport"] == "ssh"
    assert suite.find("testcase").get("classname").startswith("edgekit.bench.device.board")

    failing = _run("bench", device_bundle, "--device", "board", "--budget", "p90<=1us", *FAST)
    assert failing.exit_code == 1, failing.output

    # a host baseline is never mixed with a device figure: the environments differ on "device"
    host = _run("bench", device_bundle, *FAST, "--json", tmp_path / "host.json")
    assert host.exit_code == 0
    mixed = _run("bench", device_bundle, "--device", "board", *FAST, "--baseline", tmp_path / "host.json")
    assert mixed.exit_code != 0 and "device" in mixed.output


def test_unknown_host_key_exit_4_names_fingerprint(sshd: SshServer, device_bundle: Path) -> None:
    from edgekit.devices.ssh import key_fingerprint

    _add(sshd, "stranger", known=False)
    res = _run("bench", device_bundle, "--device", "stranger", *FAST)
    assert res.exit_code == 4
    assert key_fingerprint(sshd.host_key_line.split()[1]) in " ".join(res.output.split())
    assert _run("device", "doctor", "stranger").exit_code == 4


def test_gate_on_device_uses_the_bundles_stored_budgets(sshd: SshServer, device_bundle: Path) -> None:
    from tests._bench_helpers import edit_manifest

    _add(sshd)
    edit_manifest(device_bundle, budgets={"latency": ["p90<=25ms"]})
    res = _run("gate", device_bundle, "--device", "board", *FAST)
    assert res.exit_code == 0, res.output
    assert "measured on device board" in res.output


def test_hostile_device_fields_are_refused(tmp_path: Path) -> None:
    for name, url in [("a;rm -rf ~", "ssh://u@h"), ("-oProxyCommand=x", "ssh://u@h"), ("ok", "ssh://-oProxy@h"),
                      ("ok", "ssh://u@-oProxyCommand=touch"), ("ok", "ssh://u@h/path"), ("ok", "ssh://u:pw@h"),
                      ("ok", "ssh://u@h:0"), ("ok", "ssh://u@h:99999"), ("ok", "http://u@h"), ("ok", "ssh://u@h x"),
                      ("ok", "ssh://u@h?x=1"), ("ok", "ssh://u@$(reboot)"), ("ok", "ssh://@h")]:
        res = _run("device", "add", name, "--url", url, "--target", "cpu")
        assert res.exit_code == 2, (name, url, res.output)
    for option, value in [("--python", "python3;reboot"), ("--workdir", "../../etc"), ("--workdir", "-rf"),
                          ("--target", "cpu x"), ("--ssh-config", "/no/such/file"), ("--known-hosts", "a b")]:
        res = _run("device", "add", "ok", "--url", "ssh://u@h", "--target", "cpu", option, value)
        assert res.exit_code == 2, (option, value, res.output)
    assert _run("device", "list").exit_code == 0 and "no devices" in _run("device", "list").output
    assert _run("bench", tmp_path, "--device", "nosuch").exit_code == 2


def test_hostile_devices_toml_is_exit_2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for text in ['[devices.x]\nurl = "ssh://u@h"\ntarget = "cpu"\nproxy_command = "evil"\n',
                 '[devices."a b"]\nurl = "ssh://u@h"\ntarget = "cpu"\n',
                 '[devices.x]\nurl = "ssh://u@h;reboot"\ntarget = "cpu"\n',
                 '[devices.x]\nurl = 5\ntarget = "cpu"\n', "not toml [", 'extra = 1\n']:
        (tmp_path / "devices.toml").write_text(text)
        res = _run("device", "list")
        assert res.exit_code == 2 and "devices.toml" in res.output, (text, res.output)


def test_project_file_overrides_user_and_remove(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run("device", "add", "b1", "--url", "ssh://u@user-host", "--target", "rk3588").exit_code == 0
    assert _run("device", "add", "b1", "--url", "ssh://u@user-host", "--target", "rk3588").exit_code == 2
    assert _run("device", "add", "b1", "--url", "ssh://u@proj-host:2222", "--target", "rk3588",
                "--project").exit_code == 0
    data = json.loads(_run("device", "list", "--json").stdout)["devices"]
    assert [d["url"] for d in data] == ["ssh://u@proj-host:2222"]
    assert _run("device", "remove", "b1", "--project").exit_code == 0
    data = json.loads(_run("device", "list", "--json").stdout)["devices"]
    assert [d["url"] for d in data] == ["ssh://u@user-host"]
    assert _run("device", "remove", "b1").exit_code == 0
    assert _run("device", "remove", "b1").exit_code == 2
