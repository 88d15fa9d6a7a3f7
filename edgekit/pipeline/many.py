"""Many recipes in one command: one after another here, or one Ray task per recipe on a cluster.

`edgekit run recipes/*.toml --cluster ray://head:10001` fans a CI job's recipes out over the same Ray
cluster as the device farm (`edgekit.devices.farm.connect`, no scheduler of ours): each recipe is one
task (`num_cpus=1`, never retried: a half-written OUT/<name> is not rerun behind the user's back) that runs
`Pipeline.from_recipe(path).run(OUT/<name>)` on a worker and returns a `RecipeRun` (the
`PipelineResult.to_json()` plus where it ran). Bundles and reports are written by the worker, under the
same absolute OUT path on its own filesystem: shared with the client on one machine or a shared mount,
left on the worker otherwise (the JSON says which host holds them).

Everything is checked here before anything runs (a missing or invalid recipe, code without --trust-code,
two recipes with one name writing the same OUT/<name>): exit 2, nothing submitted.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.devices.farm import connect
from edgekit.errors import BadInputError, EdgekitError, ToolchainMissingError
from edgekit.pipeline.run import Pipeline

SEVERITY = (2, 1, 3, 4)  # the exit code of many runs: the first of these any run has (PipelineResult's 1 > 3 > 4)
STATUS = {0: "passed", 1: "failed", 2: "bad-input", 3: "unsupported", 4: "not-run"}
LOCAL = "local"  # RecipeRun.node of a run in this process (no cluster)


@dataclass(frozen=True)
class RecipeRun:
    """One recipe of a many-recipe run: its outcome and where it ran, as plain data (a Ray task returns it)."""

    recipe: str
    recipe_path: Path
    output: Path  # OUT/<recipe>, on the filesystem of `host`
    exit_code: int
    seconds: float
    node: str  # the Ray node id, or "local"; "" when the task died before saying
    host: str
    pid: int  # the process that ran the pipeline (0 when unknown)
    reason: str = ""  # why not passed: the first failing target's reason, an error, a lost task
    targets: tuple[tuple[str, str], ...] = ()  # (target, status) in recipe order
    result: dict[str, Any] | None = field(default=None, repr=False)  # PipelineResult.to_json(); None: never finished

    @property
    def status(self) -> str:
        return STATUS.get(self.exit_code, "error")

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "recipe_path": str(self.recipe_path), "output": str(self.output),
                "status": self.status, "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
                "node": self.node, "host": self.host, "pid": self.pid, "reason": self.reason,
                "targets": [{"target": t, "status": s} for t, s in self.targets], "result": self.result}


@dataclass(frozen=True)
class PlannedRecipe:
    """One checked recipe and the folder its run writes (OUT/<name>, absolute)."""

    name: str
    path: Path
    output: Path


def exit_code(runs: Sequence[RecipeRun]) -> int:
    """The most severe exit code of `runs` (2 > 1 > 3 > 4 > 0)."""
    codes = {r.exit_code for r in runs}
    return next((code for code in SEVERITY if code in codes), max(codes, default=0))


def plan(recipes: Sequence[str | Path], output: str | Path | None = None, *,
         trust_code: bool = False) -> list[PlannedRecipe]:
    """Load and check every recipe here (exit 2 before anything runs); OUT/<name> per recipe, absolute."""
    if not recipes:
        raise BadInputError("no recipe given", path="RECIPE", hint="edgekit run recipes/*.toml")
    out = Path(output if output is not None else "edgekit-out").absolute()
    planned: dict[str, PlannedRecipe] = {}
    for spec in recipes:
        recipe = Pipeline.from_recipe(spec, trust_code=trust_code).recipe
        if recipe.name in planned:
            raise BadInputError(f"two recipes are named {recipe.name!r} ({planned[recipe.name].path} and "
                                f"{recipe.path}): both would write {out / recipe.name}", path=spec,
                                hint="give each recipe its own `name`, or run them separately with -o")
        planned[recipe.name] = PlannedRecipe(recipe.name, Path(recipe.path).absolute(), out / recipe.name)
    return list(planned.values())


def run_one(job: PlannedRecipe, *, cache_dir: str | Path | None = None, use_cache: bool = True,
            trust_code: bool = False, node: str = LOCAL) -> RecipeRun:
    """Run one recipe to the end; an EdgekitError becomes that recipe's exit code and reason, not an abort."""
    started = time.perf_counter()
    host, pid = socket.gethostname(), os.getpid()
    try:
        result = Pipeline.from_recipe(job.path, trust_code=trust_code).run(job.output, cache_dir=cache_dir,
                                                                           use_cache=use_cache)
    except EdgekitError as exc:
        return RecipeRun(job.name, job.path, job.output, exc.exit_code, time.perf_counter() - started, node=node,
                         host=host, pid=pid, reason=exc.one_line())
    failing = next((t for t in result.targets if t.exit_code == result.exit_code and result.exit_code), None)
    return RecipeRun(job.name, job.path, job.output, result.exit_code, result.seconds, node=node, host=host, pid=pid,
                     reason=f"{failing.target}: {failing.reason}" if failing else "",
                     targets=tuple((t.target, t.status) for t in result.targets), result=result.to_json())


def _recipe_task(job: PlannedRecipe, cache_dir: str | None, use_cache: bool, trust_code: bool) -> RecipeRun:
    """The Ray task body: runs on a worker, which records its node id."""
    import ray  # Ray is optional: this function only ever runs inside a Ray worker

    return run_one(job, cache_dir=cache_dir, use_cache=use_cache, trust_code=trust_code,
                   node=ray.get_runtime_context().get_node_id())


def run_many(
    recipes: Sequence[str | Path],
    *,
    output: str | Path | None = None,
    cluster: str | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    trust_code: bool = False,
    on_start: Callable[[list[PlannedRecipe]], None] | None = None,
    on_done: Callable[[RecipeRun], None] | None = None,
) -> list[RecipeRun]:
    """Run `recipes` into OUT/<name> each (OUT: `output`, default ./edgekit-out): in turn here, or on `cluster`.

    `cluster`: a Ray address (`ray://head:10001`, `auto`, `head:6379`); every recipe is one task and they
    run as the cluster's CPUs allow. `on_start` hears the checked recipes (before anything runs, after
    the cluster answered), `on_done` each run as it finishes. Returns the runs in the
    order given; `exit_code(runs)` is the verdict. Ctrl-C cancels the tasks still running (force: their
    workers are killed) and raises KeyboardInterrupt. A task that dies is exit 4 for that recipe.
    """
    jobs = plan(recipes, output, trust_code=trust_code)
    if cluster is not None and (not cluster.strip() or cluster.startswith("-")):
        raise BadInputError(f"{cluster!r} is not a Ray address", path="--cluster",
                            hint="ray://HEAD:10001, HEAD:6379, or auto")
    tell = on_done or (lambda run: None)
    if cluster is None:
        if on_start:
            on_start(jobs)
        runs = []
        for job in jobs:
            runs.append(run_one(job, cache_dir=cache_dir, use_cache=use_cache, trust_code=trust_code))
            tell(runs[-1])
        return runs
    ray = connect(cluster)
    if ray.cluster_resources().get("CPU", 0) < 1:
        raise ToolchainMissingError(f"the cluster at {cluster} has no CPU to run recipes on", path="--cluster",
                                    hint="start a worker with ray start --address HEAD:6379 --num-cpus N")
    if on_start:
        on_start(jobs)
    task = ray.remote(_recipe_task).options(num_cpus=1, max_retries=0, name="edgekit-run")
    cache = str(Path(cache_dir).absolute()) if cache_dir is not None else None
    refs: dict[Any, PlannedRecipe] = {}
    done: dict[str, RecipeRun] = {}
    submitted = time.perf_counter()
    try:
        for job in jobs:
            refs[task.remote(job, cache, use_cache, trust_code)] = job
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                run = _collect(ray, ref, refs[ref], time.perf_counter() - submitted)
                done[run.recipe] = run
                tell(run)
    except KeyboardInterrupt:
        for ref, job in refs.items():
            if job.name not in done:
                ray.cancel(ref, force=True)
        raise
    return [done[job.name] for job in jobs]


def _collect(ray: Any, ref: Any, job: PlannedRecipe, seconds: float) -> RecipeRun:
    """The task's RecipeRun, or exit 4 with the reason when the task raised or its worker/node died."""
    try:
        run = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # not an EdgekitError (run_one catches those): a bug or a crash
        cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
        text = str(cause).strip().splitlines()
        reason = f"the run raised {type(cause).__name__}: {text[-1] if text else ''}"
    except ray.exceptions.RayError as exc:  # the worker or its node died, or the task was cancelled
        text = str(exc).strip().splitlines()
        reason = f"the task died ({type(exc).__name__}: {text[0] if text else ''}); nothing recorded"
    else:
        if isinstance(run, RecipeRun):
            return run
        reason = f"the task returned {type(run).__name__}, not a RecipeRun (edgekit versions differ?)"
    return RecipeRun(job.name, job.path, job.output, 4, seconds, node="", host="", pid=0, reason=reason)
