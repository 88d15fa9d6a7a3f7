"""Progress of long steps: library events, the CLI's log lines off a terminal, silence with `--json -`."""

from __future__ import annotations

import re

from rich.console import Console
from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.cli._progress import LogSink
from edgekit.progress import Event, emit, reporting, step
from tests._adapters_helpers import tiny_conv_model


def test_events_go_to_the_installed_sink_only() -> None:
    emit("nobody listens", 1, 2)  # no sink: a no-op
    seen: list[Event] = []
    with reporting(seen.append):
        emit("calibration", 3, 10, "image 3")
        with step("compile onnxruntime · fp32", "candidate 1/2"):
            pass
    emit("after", 1)
    assert [e.text() for e in seen[:2]] == ["calibration 3/10 — image 3", "compile onnxruntime · fp32 — candidate 1/2"]
    assert seen[2].finished and seen[2].seconds is not None and len(seen) == 3


def test_log_lines_are_timestamped_and_counters_throttled() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    sink = LogSink(console, every=3600)
    for i in range(1, 101):
        sink(Event("calibration", i, 100))
    sink(Event("compile", finished=True, seconds=1.5))
    lines = console.export_text().splitlines()
    # the first counter and the last (done == total) only, then the finished step
    assert len(lines) == 3 and all(re.match(r"\[\d\d:\d\d:\d\d\] ", line) for line in lines)
    assert lines[0].endswith("calibration 1/100") and lines[1].endswith("calibration 100/100")
    assert lines[2].endswith("done compile (1.5 s)")


def test_cli_shows_each_long_step_and_stays_quiet_with_json_on_stdout(tmp_path) -> None:
    model = tiny_conv_model(tmp_path / "tiny.onnx")
    runner = CliRunner()
    result = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    steps = re.findall(r"\[\d\d:\d\d:\d\d\] (?:done )?compile (\w+) · fp32", result.stderr)
    assert "onnxruntime" in steps and "timing side by side" in result.stderr
    quiet = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "c"), "--json"])
    assert quiet.exit_code == 0 and "compile onnxruntime · fp32" not in quiet.stderr
