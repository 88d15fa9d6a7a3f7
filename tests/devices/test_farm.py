"""The device farm on a real local Ray cluster: three "device" nodes, twelve benches from three clients.

Each node declares {"rk3588": 1}; a bench is a task needing it (no CPU), so a node never runs two at
once (the run intervals it reports never overlap) and the twelve spread over the three nodes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgekit
from edgekit.errors import ToolchainMissingError

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'edgekit[farm]')")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Head (1 CPU, no devices) + three device nodes (rk3588: 1 each), small object stores; shut down after."""
    farm_dir = tmp_path_factory.mktemp("farm")
    patch = pytest.MonkeyPatch()
    patch.setenv("EDGEKIT_FARM_DIR", str(farm_dir))  # the nodes' bundle cache (workers inherit the env)
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "object_store_memory": 80 * 2**20, "include_dashboard": False})
    try:
        for _ in range(3):
            cluster.add_node(num_cpus=1, resources={"rk3588": 1}, object_store_memory=80 * 2**20)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
        patch.undo()


def test_twelve_benches_from_three_clients_are_exclusive_per_device(farm: str, tmp_path: Path) -> None:
    from tests._bench_helpers import compile_bundle, edit_manifest

    bundle = edit_manifest(compile_bundle(tmp_path), target="cpu")
    results: list[edgekit.BenchResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(4):
            try:
                result = edgekit.bench(bundle, cluster=farm, device_kind="rk3588", warmup=1, iters=20,
                                       budgets=["p90<=5s"], lease_timeout=300)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(results) == 12 and all(r.provenance == "measured" and r.exit_code == 0 for r in results)
    by_node: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in results:
        assert r.device is not None and r.device["transport"] == "ray" and r.environment["device"] == "ray:rk3588"
        by_node[r.device["node_id"]].append((r.device["started_at"], r.device["finished_at"]))
    assert len(by_node) == 3, {k[:8]: len(v) for k, v in by_node.items()}  # spread over the three devices
    for intervals in by_node.values():
        intervals.sort()
        for (_, end), (start, _) in itertools.pairwise(intervals):
            assert end <= start, f"two benches overlapped on one device: {intervals}"
    # content-addressed: the nodes share one cache dir here, so only the first benches (racing) send the bundle
    assert 1 <= sum(bool(r.device["pushed"]) for r in results) <= 3


def test_unknown_kind_and_lease_timeout_are_exit_4(farm: str, tmp_path: Path) -> None:
    from tests._bench_helpers import compile_bundle

    bundle = compile_bundle(tmp_path)
    with pytest.raises(ToolchainMissingError, match="no device of kind 'ascend310'"):
        edgekit.bench(bundle, cluster=farm, device_kind="ascend310", iters=5)
    # a bench that outlasts its lease: a model slow enough (~ms a run) that 30 s of timing cannot end early
    # on the iteration cap, whatever the host's load
    from tests._bench_helpers import tiny_model

    slow_model = tiny_model(tmp_path / "slow.onnx", features=2048, outputs=2048)
    slow = edgekit.compile(slow_model, output=tmp_path / "slow", backend="onnxruntime").bundle.path
    with pytest.raises(ToolchainMissingError, match="lease timeout"):
        edgekit.bench(slow, cluster=farm, device_kind="rk3588", duration=30.0, lease_timeout=4)
    # the cancelled task's bench is killed on the node (the watchdog sees its worker go): the device is free
    deadline = time.monotonic() + 15
    while _benches_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _benches_running()
    again = edgekit.bench(bundle, cluster=farm, device_kind="rk3588", iters=5, lease_timeout=120)
    assert again.provenance == "measured"


def _benches_running() -> list[int]:
    import os

    import psutil

    farm_dir = os.environ.get("EDGEKIT_FARM_DIR", "\0")
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "edgekit.runtime" in (cmd := " ".join(p.info.get("cmdline") or [])) and farm_dir in cmd]
