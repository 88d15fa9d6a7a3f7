"""Many recipes in one command: in turn here, or one Ray task each on a real local cluster (edgekit.pipeline.many).

Each tiny recipe runs in about a second (tests/_pipeline_helpers.py). The cluster tests start their own
`ray.cluster_utils.Cluster` on this machine (never `address="auto"`: another cluster may be running here)
and are `slow`; they skip when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.pipeline import RecipeRun, run_many
from edgekit.pipeline.many import exit_code
from tests._pipeline_helpers import write_recipe

cli = CliRunner()


def recipe(root: Path, name: str, latency: str = "p90<=1000ms") -> Path:
    """A tiny recipe named `name` in its own folder (write_recipe always writes recipe.toml)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(folder, name=name, latency=latency)


def slow_recipe(root: Path, name: str) -> Path:
    """A recipe whose bench alone takes many seconds (a million iterations): something to interrupt."""
    path = recipe(root, name)
    path.write_text(path.read_text().replace("iterations = 10", "iterations = 1000000"))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_recipes_without_a_cluster_run_in_turn_and_exit_with_the_worst(tmp_path: Path) -> None:
    good, bad = recipe(tmp_path, "alpha"), recipe(tmp_path, "beta", latency="p90<=1ns")
    out = tmp_path / "out"
    seen: list[str] = []
    runs = run_many([good, bad], output=out, cache_dir=tmp_path / "cache", on_done=lambda r: seen.append(r.recipe))
    assert [r.recipe for r in runs] == seen == ["alpha", "beta"]
    assert [r.exit_code for r in runs] == [0, 1] and exit_code(runs) == 1
    assert all(r.node == "local" and r.pid == os.getpid() for r in runs)
    assert runs[1].reason.startswith("cpu: p90<=1ns") and runs[1].targets == (("cpu", "failed"),)
    assert runs[0].result is not None and runs[0].result["exit_code"] == 0
    assert (out / "alpha" / "cpu" / "manifest.json").is_file() and (out / "beta" / "report.md").is_file()

    result = cli.invoke(app, ["run", str(good), str(bad), "-o", str(tmp_path / "cli"), "--cache-dir",
                              str(tmp_path / "cache"), "--json", str(tmp_path / "many.json")])
    assert result.exit_code == 1, result.output
    assert "alpha" in result.output and "beta" in result.output and "p90<=1ns" in result.output
    data = json.loads((tmp_path / "many.json").read_text())
    assert data["exit_code"] == 1 and [r["status"] for r in data["recipes"]] == ["passed", "failed"]
    assert (tmp_path / "cli" / "alpha" / "cpu").is_dir() and (tmp_path / "cli" / "beta" / "cpu").is_dir()


def test_one_recipe_without_a_cluster_keeps_its_layout(tmp_path: Path) -> None:
    result = cli.invoke(app, ["run", str(recipe(tmp_path, "alpha")), "-o", str(tmp_path / "out"), "--cache-dir",
                              str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "cpu" / "manifest.json").is_file() and not (tmp_path / "out" / "alpha").exists()


def test_exit_code_order() -> None:
    def run(code: int) -> RecipeRun:
        return RecipeRun("r", Path("r.toml"), Path("out/r"), code, 0.0, node="local", host="h", pid=1)

    assert exit_code([run(0), run(4), run(3)]) == 3
    assert exit_code([run(4), run(1), run(3)]) == 1
    assert exit_code([run(1), run(2)]) == 2
    assert exit_code([run(0), run(0)]) == 0 and exit_code([run(4)]) == 4


@pytest.mark.parametrize("case", ["same-name", "missing", "target"])
def test_hostile_input_is_exit_2_before_anything_runs(tmp_path: Path, case: str) -> None:
    good = recipe(tmp_path, "alpha")
    twin = recipe(tmp_path / "elsewhere", "alpha")  # another file, the same recipe name: the same OUT/alpha
    args = {"same-name": [good, twin], "missing": [good, tmp_path / "nope.toml"],
            "target": [good, recipe(tmp_path, "beta"), "--target", "cpu"]}[case]
    result = cli.invoke(app, ["run", *map(str, args), "-o", str(tmp_path / "out"), "--cache-dir",
                              str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert {"same-name": "two recipes are named 'alpha'", "missing": "no such recipe file",
            "target": "--target"}[case] in result.output
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_an_unreachable_cluster_is_exit_4_in_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    result = cli.invoke(app, ["run", str(recipe(tmp_path, "alpha")), "--cluster", f"127.0.0.1:{free_port()}",
                              "-o", str(tmp_path / "out")])
    assert result.exit_code == 4, result.output
    assert time.monotonic() - started < 20 and not (tmp_path / "out").exists()
    bad = cli.invoke(app, ["run", str(recipe(tmp_path, "alpha")), "--cluster", "head:port"])
    assert bad.exit_code in (2, 4), bad.output  # 4 when Ray is not installed at all


# ---- on a real local Ray cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head with 2 CPUs on this machine (its own address; nothing else joins it); shut down after."""
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'edgekit[farm]')")
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    head = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 80 * 2**20, "include_dashboard": False})
    try:
        ray.init(address=head.address, logging_level="ERROR", log_to_driver=False)
        yield head.address
    finally:
        ray.shutdown()
        head.shutdown()


def _recipe_workers() -> list[int]:
    """Pids of Ray workers running an `edgekit-run` task (Ray titles the process `ray::edgekit-run`)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "ray::edgekit-run" in " ".join(proc.info.get("cmdline") or []):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _wait(predicate: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_each_recipe_is_a_task_on_the_cluster(cluster: str, tmp_path: Path) -> None:
    good, bad = recipe(tmp_path, "alpha"), recipe(tmp_path, "beta", latency="p90<=1ns")
    out = tmp_path / "out"
    runs = run_many([good, bad], output=out, cluster=cluster, cache_dir=tmp_path / "cache")
    assert [r.recipe for r in runs] == ["alpha", "beta"] and exit_code(runs) == 1
    for run in runs:
        assert run.node not in ("", "local") and run.pid not in (0, os.getpid()), run
        assert run.output == out.absolute() / run.recipe and (run.output / "cpu" / "manifest.json").is_file()
    assert runs[0].result is not None and runs[0].result["status"] == "passed"
    assert runs[1].status == "failed" and "p90<=1ns" in runs[1].reason

    # the CLI as a separate client process: one recipe with --cluster still fans out (OUT/<name>)
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "run", str(good), "--cluster", cluster, "-o",
                             str(tmp_path / "cli"), "--cache-dir", str(tmp_path / "cache"), "--json", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 0, stderr
    assert "on the cluster at" in stderr and "alpha" in stderr
    data = json.loads(stdout)
    assert data["recipes"][0]["pid"] != proc.pid and data["recipes"][0]["node"] not in ("", "local")
    assert (tmp_path / "cli" / "alpha" / "cpu" / "manifest.json").is_file()


@pytest.mark.slow
def test_a_task_that_dies_is_exit_4_for_that_recipe(cluster: str, tmp_path: Path) -> None:
    import threading

    import psutil

    runs: list[RecipeRun] = []
    worker = threading.Thread(target=lambda: runs.extend(
        run_many([slow_recipe(tmp_path, "doomed")], output=tmp_path / "out", cluster=cluster,
                 cache_dir=tmp_path / "cache")))
    worker.start()
    assert _wait(_recipe_workers, 60), "the recipe task never started"
    for pid in _recipe_workers():
        psutil.Process(pid).kill()  # a worker lost mid-run (OOM killer, node gone)
    worker.join(120)
    assert not worker.is_alive() and len(runs) == 1
    assert runs[0].exit_code == 4 and "the task died" in runs[0].reason, runs[0]


@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_exits_130(cluster: str, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "run", str(slow_recipe(tmp_path, "long")), "--cluster",
                             cluster, "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait(_recipe_workers, 90), "the recipe task never started"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "cancelled" in stderr
    assert _wait(lambda: not _recipe_workers(), 30), "the cancelled task's worker is still running"
