"""Stage cache: keys, hits and misses, corrupted entries rebuilt, concurrent builders, --no-cache."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from edgekit.cache import StageCache, stage_key


def _writer(content: str, calls: list[int] | None = None):
    def build(tmp: Path) -> dict:
        if calls is not None:
            calls.append(1)
        (tmp / "model.onnx").write_text(content)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(content.encode() * 3)
        return {"detail": "built", "value": 1.5}
    return build


def test_key_depends_on_inputs_options_and_tools() -> None:
    base = stage_key("compile", inputs={"model": "abc"}, options={"precision": "int8"}, tools={"onnx": "1"})
    assert base == stage_key("compile", inputs={"model": "abc"}, options={"precision": "int8"}, tools={"onnx": "1"})
    assert base != stage_key("compile", inputs={"model": "abd"}, options={"precision": "int8"}, tools={"onnx": "1"})
    assert base != stage_key("compile", inputs={"model": "abc"}, options={"precision": "fp32"}, tools={"onnx": "1"})
    assert base != stage_key("compile", inputs={"model": "abc"}, options={"precision": "int8"}, tools={"onnx": "2"})
    assert base != stage_key("bench", inputs={"model": "abc"}, options={"precision": "int8"}, tools={"onnx": "1"})


def test_miss_then_hit(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    calls: list[int] = []
    first = cache.get_or_build("export", "k" * 64, _writer("model", calls))
    second = cache.get_or_build("export", "k" * 64, _writer("model", calls))
    assert (first.hit, second.hit) == (False, True)
    assert len(calls) == 1
    assert second.file("model.onnx").read_text() == "model"
    assert second.meta["value"] == 1.5 and second.digest == first.digest
    assert cache.stats.hits == ["export"] and cache.stats.misses == ["export"]


def test_corrupted_entry_is_detected_and_rebuilt(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    entry = cache.get_or_build("export", "c" * 64, _writer("model"))
    (entry.path / "sub" / "weights.bin").write_bytes(b"flipped bits")
    calls: list[int] = []
    rebuilt = cache.get_or_build("export", "c" * 64, _writer("model", calls))
    assert rebuilt.hit is False and calls == [1]
    assert cache.stats.corrupted == [f"export:{'c' * 12}"]
    assert (rebuilt.path / "sub" / "weights.bin").read_bytes() == b"model" * 3
    assert cache.get("export", "c" * 64) is not None  # and now valid again


def test_missing_file_and_bad_entry_json_are_corruption(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    entry = cache.get_or_build("export", "m" * 64, _writer("model"))
    (entry.path / "model.onnx").unlink()
    assert cache.get("export", "m" * 64) is None
    entry = cache.get_or_build("export", "m" * 64, _writer("model"))
    (entry.path / "entry.json").write_text("{not json")
    assert cache.get("export", "m" * 64) is None


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def broken(tmp: Path) -> dict:
        (tmp / "half.onnx").write_text("half")
        raise RuntimeError("stage crashed")

    try:
        cache.get_or_build("export", "f" * 64, broken)
    except RuntimeError:
        pass
    assert cache.get("export", "f" * 64) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no temp dirs or partial entries left


def test_concurrent_builders_threads(tmp_path: Path) -> None:
    barrier = threading.Barrier(4)
    results = []

    def build(tmp: Path) -> dict:
        (tmp / "model.onnx").write_text("same content")
        barrier.wait(timeout=10)  # every thread is inside its build before any renames
        return {}

    def worker() -> None:
        results.append(StageCache(tmp_path).get_or_build("export", "t" * 64, build))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert {r.file("model.onnx").read_text() for r in results} == {"same content"}
    entries = [p for p in (tmp_path / "v1" / "export").rglob("entry.json")]
    assert len(entries) == 1  # one winner; the others used it and cleaned their temp dirs
    assert StageCache(tmp_path).get("export", "t" * 64) is not None


def _process_build(root: str, queue: multiprocessing.Queue) -> None:
    entry = StageCache(root).get_or_build("export", "p" * 64, _writer("process content"))
    queue.put(entry.file("model.onnx").read_text())


def test_concurrent_builders_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(queue.get(timeout=5) for _ in procs) == ["process content"] * 2
    assert StageCache(tmp_path).get("export", "p" * 64) is not None


def test_disabled_cache_never_hits_and_cleans_up(tmp_path: Path) -> None:
    with StageCache(tmp_path, enabled=False) as cache:
        a = cache.get_or_build("export", "n" * 64, _writer("x"))
        b = cache.get_or_build("export", "n" * 64, _writer("x"))
        assert (a.hit, b.hit) == (False, False)
        private = cache.root
    assert not private.exists()
    assert not (tmp_path / "v1").exists()


def test_default_cache_dir_honours_env(tmp_path: Path, monkeypatch) -> None:
    from edgekit.cache import default_cache_dir

    monkeypatch.setenv("EDGEKIT_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGEKIT_CACHE_DIR")
    assert default_cache_dir().name == "edgekit"


def test_leftover_of_a_dead_builder_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from edgekit.artifact import scratch_name

    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    folder = tmp_path / "v1" / "export" / "ee"
    folder.mkdir(parents=True)
    live = folder / (scratch_name("e" * 12, "tmp") + "live")
    dead = folder / (scratch_name("d" * 12, "tmp").replace(f"-{os.getpid()}-", f"-{dead_proc.pid}-") + "dead")
    for path in (live, dead):
        path.mkdir()
        (path / "half.onnx").write_text("half")
    StageCache(tmp_path).get_or_build("export", "e" * 64, _writer("model"))
    assert live.exists() and not dead.exists()  # a running builder's work in progress is never removed
