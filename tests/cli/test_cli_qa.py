"""QA regressions found by trying the CLI as a new user (one test per bug fixed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from edgekit.cli import app

runner = CliRunner()


def test_error_line_keeps_user_text_verbatim(tmp_path: Path) -> None:
    """`pkg.mod:boom` once printed as `pkg.mod💥` (Rich emoji) and `[x]` vanished (Rich markup)."""
    missing = tmp_path / "a[x]:boom:.onnx"
    result = runner.invoke(app, ["inspect", str(missing)])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "a[x]:boom:.onnx" in line.replace("\n", "")
