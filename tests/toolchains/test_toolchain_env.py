"""Managed environments without the network: paths, missing-env errors, state, locking, idempotency, CLI."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.errors import ToolchainMissingError
from edgekit.toolchains import env


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(env.ENV_VAR, str(tmp_path / "tc"))
    return tmp_path / "tc"


def test_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(env.ENV_VAR, raising=False)
    assert env.toolchains_root().parts[-2:] == ("edgekit", "toolchains")
    monkeypatch.setenv(env.ENV_VAR, str(tmp_path / "from-env"))
    assert env.toolchains_root() == (tmp_path / "from-env").resolve()
    assert env.toolchains_root(tmp_path / "explicit") == (tmp_path / "explicit").resolve()


def test_missing_env_is_exit_4_with_the_install_command(root: Path) -> None:
    assert env.find_env("rknn") is None
    with pytest.raises(ToolchainMissingError) as info:
        env.require_env("rknn")
    assert info.value.exit_code == 4
    assert "edgekit toolchain install rknn" in info.value.one_line()
    report = env.doctor("rknn")
    assert not report.ok and "edgekit toolchain install rknn" in report.checks[0].detail


def test_unknown_toolchain_is_bad_input(root: Path) -> None:
    with pytest.raises(Exception, match="unknown toolchain 'tensorrt'"):
        env.find_env("tensorrt")


def test_incomplete_env_is_not_installed(root: Path) -> None:
    (root / "rknn" / "bin").mkdir(parents=True)  # an interrupted install without its state file
    assert env.find_env("rknn") is None
    (root / "rknn" / env.STATE_FILE).write_text("{garbage")
    assert env.find_env("rknn") is None


def _fake_spec(name: str = "fake") -> env.ToolchainSpec:
    return env.ToolchainSpec(name=name, description="test env", steps=(), pins={"pip": ""},
                             imports=("json", "no_such_module_xyz"))


@pytest.mark.slow
def test_install_is_atomic_idempotent_and_serialized(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _fake_spec()
    monkeypatch.setitem(env.TOOLCHAINS, spec.name, spec)
    results: list[tuple[env.EnvState, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(env.install("fake"))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(new for _, new in results) == [False, True]  # one built it, the other found it done
    state = env.find_env("fake")
    assert state is not None and state.python.exists() and state.current
    assert any(line.startswith("pip==") for line in state.freeze)
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]  # no temp dir left behind
    data = json.loads((root / "fake" / env.STATE_FILE).read_text())
    assert data["spec_hash"] == spec.spec_hash and data["install_seconds"] > 0
    again, installed = env.install("fake")
    assert not installed and again.created_at == state.created_at
    report = env.doctor("fake")
    checks = {c.name: c for c in report.checks}
    assert checks["python"].ok and checks["import json"].ok
    assert not checks["import no_such_module_xyz"].ok and not report.ok
    listed = dict(env.list_envs())
    assert listed["fake"] is not None
    assert env.remove("fake") and env.find_env("fake") is None and not env.remove("fake")


def test_cli_list_and_doctor_without_env(root: Path) -> None:
    from edgekit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["toolchain", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    entry = next(t for t in data["toolchains"] if t["name"] == "rknn")
    assert entry["installed"] is False and entry["install_command"] == "edgekit toolchain install rknn"
    result = runner.invoke(app, ["toolchain", "doctor", "rknn"])
    assert result.exit_code == 4
    result = runner.invoke(app, ["toolchain", "frob"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["toolchain", "remove", "rknn"])
    assert result.exit_code == 0 and "not installed" in result.output


def test_rknn_spec_follows_the_working_order() -> None:
    steps = [" ".join(s) for s in env.RKNN.steps]
    assert "onnx==1.18.0" in steps[0] and "protobuf==4.25.4" in steps[0]
    assert steps[1] == "--no-deps rknn-toolkit2==2.5.0"
    assert steps[2] == "torch==2.13.0"  # pinned, never unpinned
    assert steps[3] == "setuptools<81"
    assert not any(s.split("==")[0] == "torch" and "==" not in s for step in env.RKNN.steps for s in step)
    assert sys.version_info >= (3, 11)


def test_the_suite_keeps_toolchain_envs_in_the_repo() -> None:
    """tests/conftest.py: the RKNN env the tests install and pip's cache land in an ignored repo folder."""
    import os

    repo = Path(__file__).resolve().parents[2]
    folder = Path(os.environ.get("EDGEKIT_TEST_TOOLCHAINS_DIR") or repo / ".edgekit-test-toolchains")
    assert env.toolchains_root() == (folder / "envs").resolve()
    assert Path(os.environ["PIP_CACHE_DIR"]) == folder / "pip-cache"
    if folder.is_relative_to(repo):
        assert ".edgekit-test-toolchains/" in (repo / ".gitignore").read_text().split()
