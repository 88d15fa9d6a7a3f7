"""First run vs re-run of a recipe with the stage cache (issues 8 and 12: a re-run must be >= 10x faster,
and its latency budgets judged on latency measured in that run, never on a cached figure).

    python benchmarks/pipeline_cache.py [RECIPE.toml ...]

Each recipe runs three times as `edgekit run` (a fresh process each time, as a user would): with an
empty cache, again with nothing changed, and again with only the latency budget edited. Prints the
wall times, the ratio, which stages were rebuilt, and what the latency budgets were judged on (the
chosen build is benched in every run: `bench` is always among the rebuilt stages); writes
benchmarks/results/pipeline_cache-DATE.md.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(recipe: Path, out: Path, cache: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekit", "run", str(recipe), "-o", str(out), "--cache-dir",
                           str(cache), "--json"], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{recipe}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def main(recipes: list[str]) -> None:
    rows = []
    for name in recipes or ["recipes/lenet-digits-cpu-int8.toml"]:
        recipe = (ROOT / name).resolve()
        with tempfile.TemporaryDirectory(prefix="edgekit-bench-cache-") as tmp:
            tmp_path = Path(tmp)
            first, _ = _run(recipe, tmp_path / "out", tmp_path / "cache")
            second, data = _run(recipe, tmp_path / "out", tmp_path / "cache")
            rebuilt = [s["stage"] for s in data["stages"] if not s["hit"]]
            figures = [t.get("latency_figure") or {} for t in data["targets"]]
            judged = ", ".join(f"{t['target']}: {'this run' if f.get('fresh') else 'NOT fresh'} "
                               f"p90 {f.get('stats', {}).get('p90', float('nan')):.3f} ms"
                               for t, f in zip(data["targets"], figures, strict=True))
            edited = tmp_path / recipe.name
            text = recipe.read_text()
            marker = 'latency = ["'
            edited.write_text(text.replace(marker, marker + "p99<=10s\", \"", 1))
            third, data3 = _run(edited, tmp_path / "out", tmp_path / "cache")
            rebuilt3 = [s["stage"] for s in data3["stages"] if not s["hit"]]
        rows.append((recipe.name, first, second, third, rebuilt, rebuilt3, judged))
        print(f"{recipe.name}: first {first:.1f} s, re-run {second:.2f} s ({first / second:.1f}x), "
              f"budget edited {third:.2f} s; rebuilt on re-run: {rebuilt}; after budget edit: {rebuilt3}")
    stamp = dt.date.today().isoformat()
    lines = [f"# Pipeline cache: first run vs re-run ({stamp})", "",
             "Wall time of `edgekit run` as a fresh process (imports included), 2 shared CPU cores.", "",
             "| recipe | first run (s) | re-run, nothing changed (s) | ratio | latency budget edited (s) | "
             "stages rebuilt on re-run | after budget edit | re-run's latency budgets judged on |",
             "|---|---|---|---|---|---|---|---|"]
    for name, first, second, third, rebuilt, rebuilt3, judged in rows:
        lines.append(f"| {name} | {first:.1f} | {second:.2f} | {first / second:.1f}x | {third:.2f} | "
                     f"{', '.join(rebuilt)} | {', '.join(rebuilt3)} | {judged} |")
    out = ROOT / "benchmarks" / "results" / f"pipeline_cache-{stamp}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
