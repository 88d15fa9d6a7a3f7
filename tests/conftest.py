"""Shared fixtures (keep small and generic; area-specific helpers live in tests/_<area>_helpers.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Bundle-signing keys (edgekit.bundle) go to a tmp dir: the suite never touches $HOME."""
    key_dir = tmp_path_factory.mktemp("edgekit-keys")
    previous = os.environ.get("EDGEKIT_KEY_DIR")
    os.environ["EDGEKIT_KEY_DIR"] = str(key_dir)
    yield key_dir
    if previous is None:
        os.environ.pop("EDGEKIT_KEY_DIR", None)
    else:
        os.environ["EDGEKIT_KEY_DIR"] = previous


@pytest.fixture(autouse=True, scope="session")
def _user_dirs_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The stage cache, matplotlib's font cache, anything that follows XDG, and libraries that write to
    $HOME regardless (OpenVINO's ~/intel telemetry) go to a tmp dir: the suite never touches the user's home."""
    root = tmp_path_factory.mktemp("user-dirs")
    (root / "home").mkdir()
    patch = pytest.MonkeyPatch()
    patch.setenv("HOME", str(root / "home"))
    patch.setenv("EDGEKIT_CACHE_DIR", str(root / "edgekit-cache"))
    patch.setenv("EDGEKIT_CONFIG_DIR", str(root / "edgekit-config"))  # devices.toml (edgekit.devices)
    patch.setenv("MPLCONFIGDIR", str(root / "matplotlib"))
    patch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    patch.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
    # Ray's session dirs (the farm tests): a short path, for its unix sockets' 107-character limit
    patch.setenv("RAY_TMPDIR", str(tmp_path_factory.getbasetemp() / "r"))
    yield root
    patch.undo()


# Managed toolchain environments (the RKNN toolkit, ~1-2 min to install) that tests need live in this ignored
# folder of the repo and are reused across runs; $EDGEKIT_TEST_TOOLCHAINS_DIR moves it (e.g. a CI cache).
TEST_TOOLCHAINS = Path(os.environ.get("EDGEKIT_TEST_TOOLCHAINS_DIR")
                       or Path(__file__).resolve().parent.parent / ".edgekit-test-toolchains")


@pytest.fixture(autouse=True, scope="session")
def _toolchains_in_the_repo() -> Iterator[Path]:
    """Toolchain envs and pip's cache for installing them go to TEST_TOOLCHAINS: the suite never touches $HOME."""
    patch = pytest.MonkeyPatch()
    patch.setenv("EDGEKIT_TOOLCHAINS_DIR", str(TEST_TOOLCHAINS / "envs"))
    patch.setenv("PIP_CACHE_DIR", str(TEST_TOOLCHAINS / "pip-cache"))
    yield TEST_TOOLCHAINS
    patch.undo()


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: `zoo_onnx("resnet18", "input:1,3,64,64")` -> Path of a verified export, cached per session.

    Without a shape the zoo default is used. Needs torch (skips the test when it is missing).
    """
    pytest.importorskip("torch")
    cache: dict[tuple[str, str | None, bool], Path] = {}
    root = tmp_path_factory.mktemp("zoo_onnx")

    def make(name: str, shape: str | None = None, *, dynamic_batch: bool = False) -> Path:
        key = (name, shape, dynamic_batch)
        if key not in cache:
            from edgekit.stages.export import export

            stem = f"{name}-{len(cache)}"
            result = export(f"zoo:{name}", [shape] if shape else None, root / f"{stem}.onnx",
                            dynamic_batch=dynamic_batch)
            cache[key] = result.path
        return cache[key]

    return make
