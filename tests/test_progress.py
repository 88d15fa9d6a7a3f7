"""Progress of long steps: library events, the CLI's log lines off a terminal, silence with `--json -`."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from edgekit.cli import app
from edgekit.progress import Event, LineSink, emit, reporting, step
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


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_only_for_what_takes_a_while_and_long_steps_never_silent() -> None:
    lines: list[str] = []
    clock = _Clock()
    sink = LineSink(lines.append, every=2.0, delay=2.0, clock=clock)
    sink(Event("checking adapters", 1, 1))  # a quick command: nothing in the first 2 s ...
    sink(Event("checking adapters", finished=True, seconds=0.01))
    assert lines == []
    sink(Event("compile openvino · bf16", detail="candidate 2/3"))
    clock.t = 2.5
    sink.tick()  # ... a step still running after 2 s is announced by the heartbeat
    clock.t = 3.0
    sink.tick()  # not again within `every`
    clock.t = 4.6
    sink.tick()
    for i in range(1, 101):  # counters: at most one line every 2 s, and the last one
        clock.t = 5.0 + i * 0.01
        sink(Event("calibration", i, 100))
    sink(Event("compile openvino · bf16", finished=True, seconds=4.0))
    assert all(re.match(r"\[\d\d:\d\d:\d\d\] ", line) for line in lines)
    texts = [line[11:] for line in lines]
    step_text = "compile openvino · bf16 — candidate 2/3"
    assert texts == [f"{step_text} (for 2 s)", f"{step_text} (for 5 s)", "calibration 1/100", "calibration 100/100",
                     "done compile openvino · bf16 (4.0 s)"]


def test_a_quick_failing_command_prints_only_its_error(tmp_path) -> None:
    model = tiny_conv_model(tmp_path / "tiny.onnx")
    result = CliRunner().invoke(app, ["compile", str(model), "-o", str(tmp_path / "b"), "-b", "tflite"])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [result.stderr.strip()]


def test_cli_shows_long_steps_and_stays_quiet_with_json_on_stdout(tmp_path, monkeypatch) -> None:
    import edgekit.cli._progress as cli_progress

    # no real step here lasts 2 s: shorten the quiet start so the test sees what a long one shows
    monkeypatch.setattr(cli_progress.LogSink, "__init__",
                        lambda self, console, every=2.0, delay=2.0: LineSink.__init__(
                            self, lambda line: console.print(line, highlight=False, markup=False), 0.0, 0.0))
    model = tiny_conv_model(tmp_path / "tiny.onnx")
    runner = CliRunner()
    result = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    steps = re.findall(r"\[\d\d:\d\d:\d\d\] compile (\w+) · fp32", result.stderr)
    assert "onnxruntime" in steps and "timing side by side" in result.stderr
    quiet = runner.invoke(app, ["compile", str(model), "-o", str(tmp_path / "c"), "--json"])
    assert quiet.exit_code == 0 and "compile onnxruntime · fp32" not in quiet.stderr
