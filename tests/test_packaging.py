"""The wheel is self-contained: it builds and installs with no network and finds its shipped data.

targets/ and recipes/ live at the repo root but must travel inside the wheel (edgekit/_data/...);
a checkout hides a missing force-include, because `targets.data_dir` falls back to the repo root.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(out), str(ROOT)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    (found,) = out.glob("edgekit-*.whl")
    return found


def test_wheel_ships_targets_recipes_and_the_bench_schema(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped_targets = {Path(n).stem for n in names if n.startswith("edgekit/_data/targets/") and n.endswith(".toml")}
    shipped_recipes = [n for n in names if n.startswith("edgekit/_data/recipes/") and n.endswith(".toml")]
    assert shipped_targets == {p.stem for p in (ROOT / "targets").glob("*.toml")}
    assert len(shipped_recipes) == len(list((ROOT / "recipes").glob("*.toml"))) > 0
    assert "edgekit/checks/bench_schema.json" in names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_finds_its_profiles_offline(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    probe = ("import edgekit, edgekit.targets as t; "
             "print(edgekit.__file__); print(t.data_dir('targets')); print(len(t.builtin_profiles()))")
    result = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=True)
    module_file, data_dir, count = result.stdout.split()
    assert str(env_dir) in module_file  # the installed copy, not the checkout
    assert "_data" in data_dir
    assert int(count) == len(list((ROOT / "targets").glob("*.toml")))
