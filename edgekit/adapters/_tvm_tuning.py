"""MetaSchedule tuning for the TVM adapter: a persistent database, reused across runs.

Why not `tune_relax` as it is: its LocalBuilder starts fresh worker processes for every batch,
each importing TVM and its tensor intrinsics (20 s to minutes on a busy 2-core host), so with the
default 30 s build timeout every candidate "fails" and nothing is learnt. Here candidates are built
in this process and timed by MetaSchedule's LocalRunner (one worker for the session, with a timeout:
a few candidates are pathologically slow and would otherwise hang tuning). A ledger of trials spent
per task makes a second compile with the same budget tune nothing.

The database lives in `tvm-db/<target-hash>/` under the user cache dir (or a given path): MetaSchedule's
JSON files (`database_workload.json`, `database_tuning_record.json`), applied before `tvm.compile`
with `relax.transform.MetaScheduleApplyDatabase(work_dir)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import raise_if_interrupted, watch_interrupts


def databases_root() -> Path:
    """`<user cache>/edgekit/tvm-db/`: where every target's tuning database lives (cheap: no TVM import)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("edgekit")) / "tvm-db"


def default_db_dir(target: Any) -> Path:
    """`<user cache>/edgekit/tvm-db/<hash of the target JSON>/`: one database per exact target."""
    return databases_root() / target_hash(target)


def target_hash(target: Any) -> str:
    text = json.dumps(_plain(target.export()), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str)):
        return [_plain(v) for v in value]
    return value


@dataclass
class TuningOutcome:
    """What a tuning pass did, for the bundle's manifest."""

    db_path: str
    tasks: int  # tuning tasks in the model
    tasks_with_records: int  # of those, how many the database now covers
    tasks_tuned_now: int  # tuned in this run (0 = the database already had this budget's share for each)
    trials: int  # trial budget asked for
    trials_run: int  # candidates measured in this run
    seconds: float
    task_names: list[str] = field(default_factory=list)


def import_tensor_intrin() -> None:
    """Import `tvm.s_tir.tensor_intrin` (MetaSchedule needs it) without its multi-minute cost.

    Its ~500 TVMScript functions each call `inspect.stack()`, which reads source context for every
    frame of the (deep, import-time) stack; on this host that is 1-5 minutes of CPU. TVMScript only
    reads the code line of the nearest frames, so during this one import `inspect.stack` returns
    context for the innermost frames only. Restored right after; a no-op once imported.
    """
    import inspect
    import sys

    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    originals = inspect.stack, inspect.getouterframes

    def outer_frames(frame: Any, context: int = 1) -> list[inspect.FrameInfo]:
        infos: list[inspect.FrameInfo] = []
        while frame is not None:
            # no source context for deep frames, nor for frozen importlib frames (`<frozen ...>`),
            # whose lookups scan every loaded module each time
            code = frame.f_code
            if len(infos) < 4 and not code.co_filename.startswith("<"):
                info = inspect.getframeinfo(frame, context)
                infos.append(inspect.FrameInfo(frame, *info, positions=info.positions))
            else:
                infos.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, None, None,
                                               positions=None))
            frame = frame.f_back
        return infos

    def stack(context: int = 1) -> list[inspect.FrameInfo]:
        return outer_frames(sys._getframe(1), context)

    inspect.stack, inspect.getouterframes = stack, outer_frames
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack, inspect.getouterframes = originals


def open_database(db_dir: Path) -> Any:
    from tvm.s_tir import meta_schedule as ms

    db_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(db_dir))


def tune(mod: Any, target: Any, db_dir: Path, *, trials: int, threads: int = 1, seed: int = 0) -> TuningOutcome:
    """Tune the tasks of `mod` (legalized and fused) whose budget share the database has not had yet.

    `trials` is the budget for the whole model, shared evenly by its tasks. A ledger beside the
    database (`edgekit_trials.json`: task hash -> trials spent) makes a rerun with the same budget
    tune nothing, and a larger budget top up only the difference.
    """
    from tvm.s_tir import meta_schedule as ms

    t0 = time.perf_counter()
    database = open_database(db_dir)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    ledger = _read_ledger(db_dir)
    per_task = max(1, trials // max(1, len(tasks)))
    spent = {_task_key(t): ledger.get(_task_key(t), _record_count(database, t)) for t in tasks}
    todo = [t for t in tasks if spent[_task_key(t)] < per_task] if trials > 0 else []
    before = len(database.get_all_tuning_records())
    if todo:
        import_tensor_intrin()
        work = Path(tempfile.mkdtemp(prefix="edgekit-tvm-tune-"))
        logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
        try:
            top_up = [per_task - spent[_task_key(t)] for t in todo]
            per_iter = min(max(top_up), 16)
            # MetaSchedule's default search (population 512, 4 generations) spends ~1 CPU-minute per
            # task per round here before measuring anything; scale it with the budget instead.
            population = min(512, max(64, 8 * per_iter))
            strategy = ms.search_strategy.EvolutionarySearch(
                population_size=population, init_min_unmeasured=min(50, population // 4),
                genetic_num_iters=4 if per_task >= 64 else 2)
            contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
                todo, work_dir=str(work), strategy=strategy, num_threads=threads, seed=seed)
            previous = os.environ.get("TVM_NUM_THREADS")
            os.environ["TVM_NUM_THREADS"] = str(threads)  # the runner worker measures with the deployed threads
            try:
                runner = _timed_runner(timeout_s=60.0)
            finally:
                if previous is None:
                    os.environ.pop("TVM_NUM_THREADS", None)
                else:
                    os.environ["TVM_NUM_THREADS"] = previous
            # MetaSchedule logs a Ctrl-C in a candidate as a failed build and goes on: the watch raises it
            # again, before the ledger below records these tasks as tuned
            with watch_interrupts():
                ms.tune.tune_tasks(
                    tasks=contexts, task_weights=weights, work_dir=str(work), max_trials_global=sum(top_up),
                    max_trials_per_task=max(top_up), num_trials_per_iter=per_iter, database=database,
                    builder=_in_process_builder(work), runner=runner, cost_model="xgb")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for task in todo:
            ledger[_task_key(task)] = per_task
        _write_ledger(db_dir, ledger)
    covered = sum(_has_record(database, t) for t in tasks)
    after = len(database.get_all_tuning_records())
    return TuningOutcome(
        db_path=str(db_dir), tasks=len(tasks), tasks_with_records=covered, tasks_tuned_now=len(todo),
        trials=trials, trials_run=after - before, seconds=round(time.perf_counter() - t0, 2),
        task_names=[t.task_name for t in tasks])


LEDGER = "edgekit_trials.json"


def _task_key(task: Any) -> str:
    import tvm_ffi

    return f"{task.task_name}-{tvm_ffi.structural_hash(task.dispatched[0]) & 0xFFFFFFFFFFFF:012x}"


def _read_ledger(db_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((db_dir / LEDGER).read_text())
        return {str(k): int(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_ledger(db_dir: Path, ledger: dict[str, int]) -> None:
    from edgekit.artifact import write_text_atomic

    write_text_atomic(db_dir / LEDGER, json.dumps(ledger, indent=1, sort_keys=True) + "\n")


def _record_count(database: Any, task: Any) -> int:
    mod = task.dispatched[0]
    if not database.has_workload(mod):
        return 0
    return len(database.get_top_k(database.commit_workload(mod), 1 << 20))


def covered_tasks(mod: Any, target: Any, db_dir: Path) -> tuple[int, int]:
    """(tasks in the model, tasks the database has a record for), without tuning."""
    from tvm.s_tir import meta_schedule as ms

    if not (db_dir / "database_tuning_record.json").exists():
        return len(ms.relax_integration.extract_tasks(mod, target)), 0
    database = open_database(db_dir)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    return len(tasks), sum(_has_record(database, t) for t in tasks)


def _has_record(database: Any, task: Any) -> bool:
    mod = task.dispatched[0]
    if not database.has_workload(mod):
        return False
    return bool(database.get_top_k(database.commit_workload(mod), 1))


def _in_process_builder(work: Path) -> Any:
    """Build candidates in this process (no per-batch worker start-up) and export each as a .so."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list) -> list:
            results = []
            for item in build_inputs:
                # one dir per candidate: MetaSchedule's RemoveBuildArtifact deletes the artifact's parent
                path = tempfile.mkdtemp(dir=work) + "/candidate.so"
                try:
                    default_build(item.mod, item.target, None).export_library(path)
                    results.append(BuilderResult(path, None))
                except Exception as exc:  # a candidate that does not build is a normal search outcome
                    raise_if_interrupted(exc)  # but Ctrl-C is no failed candidate: stop the search
                    results.append(BuilderResult(None, f"build failed: {type(exc).__name__}: {exc}"))
            return results

    return InProcessBuilder()


def _timed_runner(timeout_s: float) -> Any:
    """MetaSchedule's LocalRunner: one worker process for the whole session, killed and replaced when a
    candidate runs past `timeout_s` (some candidates are pathologically slow; in-process they hang tuning)."""
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, LocalRunner

    config = EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20, enable_cpu_cache_flush=False)
    return LocalRunner(timeout_sec=timeout_s, evaluator_config=config)


@contextlib.contextmanager
def quiet_tvm_logs() -> Any:
    """MetaSchedule logs every task table at INFO to the root logger; keep library output quiet."""
    loggers = [logging.getLogger(n) for n in ("tvm", "tvm.s_tir", "tvm.s_tir.meta_schedule")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
