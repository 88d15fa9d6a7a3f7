"""`edgekit gate RECIPE.toml | BUNDLE`: what CI runs.

A bundle is gated by `edgekit.checks.gate.gate` (its stored budgets, re-measured here). A recipe is
run through the cached pipeline, then each bundle it wrote is gated the same way; a target that
built nothing is a failure with its exit code (unsupported 3, toolchain/device missing 4) unless
the recipe marks it `optional = true`.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from edgekit.artifact import BUNDLE_MANIFEST
from edgekit.checks.gate import GateResult
from edgekit.checks.gate import gate as gate_bundle
from edgekit.errors import BadInputError
from edgekit.pipeline.run import Pipeline


def gate(
    path: str | Path,
    *,
    output: str | Path | None = None,
    cache_dir: str | Path | None = None,
    trust_code: bool = False,
    **bench_kw: Any,
) -> GateResult:
    """Gate a bundle folder, or a recipe (.toml) by running it first (bundles in a temp dir unless `output`)."""
    path = Path(path)
    if path.suffix.lower() != ".toml":
        _not_a_run_folder(path)
        return gate_bundle(path, **bench_kw)
    return gate_recipe(path, output=output, cache_dir=cache_dir, trust_code=trust_code, **bench_kw)


def _not_a_run_folder(path: Path) -> None:
    """`edgekit gate demo-out/` names the folder of a run: say which bundles it holds, gate none silently."""
    if not path.is_dir() or (path / BUNDLE_MANIFEST).exists():
        return
    bundles = sorted(p.parent.name for p in path.glob(f"*/{BUNDLE_MANIFEST}"))
    if bundles:
        raise BadInputError(f"is the output folder of a run, not a bundle (it holds {', '.join(bundles)})",
                            path=path, hint="gate a bundle: " + " ; ".join(f"edgekit gate {path / b}" for b in bundles)
                            + " — or the recipe itself: edgekit gate RECIPE.toml")


def gate_recipe(
    path: str | Path,
    *,
    output: str | Path | None = None,
    cache_dir: str | Path | None = None,
    trust_code: bool = False,
    **bench_kw: Any,
) -> GateResult:
    """Run the recipe (cached), then re-check each bundle's stored budgets fresh; verdicts prefixed by target."""
    pipeline = Pipeline.from_recipe(path, trust_code=trust_code)
    with contextlib.ExitStack() as stack:
        out = Path(output) if output is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="edgekit-gate-")))
        result = pipeline.run(out, cache_dir=cache_dir, report=output is not None)
        recipe = pipeline.recipe
        gated = GateResult(str(path), {"latency": list(recipe.budgets.latency),
                                       "accuracy": recipe.budgets.accuracy.to_json()})
        for target in result.targets:
            if target.bundle is None or not (target.bundle / BUNDLE_MANIFEST).is_file():
                line = f"{target.target}: {target.status} ({target.reason})"
                if target.exit_code == 0:
                    gated.notes.append(f"{line}; optional target")
                else:
                    gated.failures.append(line)
                    gated.failure_codes.append(target.exit_code)
                continue
            settings = recipe.target(target.target)
            extra: dict[str, Any] = {"device": bench_kw.get("device") or settings.device}  # the recipe's device
            if settings.baseline_bundle and not bench_kw.get("baseline_bundle"):  # the recipe's A/B baseline
                old = Path(settings.baseline_bundle)
                extra["baseline_bundle"] = old if old.is_absolute() else recipe.base_dir / old
                extra["max_regression"] = bench_kw.get("max_regression") or settings.max_regression
            sub = gate_bundle(target.bundle, **{**bench_kw, **extra})
            for verdict in sub.verdicts:
                verdict.name = f"{target.target}: {verdict.name}"
            gated.verdicts += sub.verdicts
            gated.notes += [f"{target.target}: {n}" for n in sub.notes]
    return gated
