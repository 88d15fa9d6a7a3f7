"""The torch-free runtime: `python -m edgekit.runtime bench BUNDLE/` in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.errors import BadInputError
from tests._bench_helpers import compile_bundle, edit_manifest

HEAVY = ("torch", "onnxsim", "typer", "rich", "tvm", "openvino", "matplotlib")

_PROBE = """
import json, runpy, sys
sys.argv = ["edgekit.runtime", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("edgekit.runtime", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_LIST))
print("PROBE" + json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("runtime"))


def _probe(args: list[str]) -> tuple[dict, subprocess.CompletedProcess]:
    script = _PROBE.replace("HEAVY_LIST", repr(list(HEAVY)))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(args)], capture_output=True, text=True,
                          timeout=120, check=False)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PROBE"))
    return json.loads(line[5:]), proc


def test_runtime_bench_imports_no_torch_and_writes_the_same_json(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    probe, proc = _probe(["bench", str(bundle), "--warmup", "2", "--iters", "20", "--budget", "p90<=10s",
                          "--json", str(out), "--junit", str(tmp_path / "j.xml")])
    assert probe["code"] == 0, proc.stderr
    assert probe["heavy"] == [], f"runtime imported {probe['heavy']}"
    data = json.loads(out.read_text())
    assert data["schema"] == "edgekit.bench/1" and data["provenance"] == "measured"
    jsonschema = pytest.importorskip("jsonschema")
    from edgekit.checks.budgets import bench_schema

    jsonschema.validate(data, bench_schema())
    assert (tmp_path / "j.xml").read_text().startswith("<?xml")


def test_runtime_exit_codes(bundle: Path) -> None:
    cmd = [sys.executable, "-m", "edgekit.runtime", "bench", str(bundle), "--warmup", "1", "--iters", "10"]
    failing = subprocess.run([*cmd, "--budget", "p50<0.001us"], capture_output=True, text=True, timeout=120,
                             check=False)
    assert failing.returncode == 1, failing.stderr
    assert "fail" in failing.stdout
    bad = subprocess.run([*cmd, "--budget", "p50<=fast"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "cannot parse budget" in bad.stderr
    stdout_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert stdout_json.returncode == 0 and json.loads(stdout_json.stdout)["schema"] == "edgekit.bench/1"


def test_runtime_gate_reads_the_stored_budgets(tmp_path: Path) -> None:
    gated = edit_manifest(compile_bundle(tmp_path), budgets={"latency": ["p90<=10s"]})
    probe, proc = _probe(["gate", str(gated), "--warmup", "1", "--iters", "10"])
    assert probe["code"] == 0, proc.stderr + proc.stdout
    assert probe["heavy"] == []
    assert "p90<=10s" in proc.stdout and "verdict: pass" in proc.stdout


def test_runtime_load_refuses_a_tampered_bundle(tmp_path: Path) -> None:
    from edgekit.runtime import load

    tampered = compile_bundle(tmp_path)
    with (tampered / "source.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BadInputError, match="sha256"):
        load(tampered)
