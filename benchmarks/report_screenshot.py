"""The HTML report as a user sees it: rendered by a real headless browser, checked, and kept as a PNG.

    python benchmarks/report_screenshot.py [RECIPE] [--cache-dir DIR] [--out benchmarks/results]

Runs the recipe with `edgekit run` (a fresh process, the stage cache reused when given), opens
OUT/report.html in headless Chromium (`chromium --headless --screenshot`; Debian: `apt-get install
chromium`), and checks what an engineer looks for: the status table with p50/p90/p99/max and CV, the
environment, the candidates with ★ and the rule, and plots that rendered (the page is not blank and
is tall enough to hold them). Writes report-screenshot-DATE.png and a short .md beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {
    "status table": "latency p50 / p90 / p99 / max",
    "tail latency (CV)": "<th>CV</th>",
    "environment": "<h2>Environment</h2>",
    "plots embedded": "data:image/png;base64,",
}


def browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default="lenet-digits-cpu-int8")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    chrome = browser()
    if chrome is None:
        print("no headless browser found (apt-get install chromium); nothing checked", file=sys.stderr)
        return 4
    stamp = dt.date.today().isoformat()
    out_dir = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="edgekit-shot-") as tmp:
        run_out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "edgekit", "run", args.recipe, "-o", str(run_out)]
        if args.cache_dir:
            cmd += ["--cache-dir", args.cache_dir]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode not in (0, 1):
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        html = (run_out / "report.html").read_text()
        found = {name: marker in html for name, marker in CHECKS.items()}
        if "precision auto" in html:
            found["★ with the rule"] = "★" in html and "side-by-side" in html
        png = out_dir / f"report-screenshot-{stamp}.png"
        shot = subprocess.run([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--screenshot={png}", "--window-size=1300,4200",
                               (run_out / "report.html").as_uri()], capture_output=True, text=True, check=False,
                              timeout=120)
        if shot.returncode != 0 or not png.is_file():
            print(f"chromium failed: {shot.stderr[-1500:]}", file=sys.stderr)
            return 4
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        width, height = grey.size
        dark = sum(grey.histogram()[:200])  # pixels darker than near-white
        rows = [y for y in range(0, height, 10) if any(grey.getpixel((x, y)) < 200 for x in range(0, width, 10))]
    found["page not blank"] = dark > 0.01 * width * height
    found["content fills the page (tables + plots)"] = bool(rows) and rows[-1] > 1500
    lines = [f"# HTML report, rendered by headless Chromium ({stamp})", "",
             f"Recipe `{args.recipe}`, `edgekit run` exit {proc.returncode}; screenshot `{png.name}` "
             f"({width}×{height}, {dark / (width * height):.1%} non-white, "
             f"content down to y={rows[-1] if rows else 0}).",
             "", "| check | result |", "|---|---|"]
    lines += [f"| {name} | {'ok' if ok else 'MISSING'} |" for name, ok in found.items()]
    (out_dir / f"report-screenshot-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
