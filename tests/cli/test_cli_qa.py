"""QA regressions found by trying the CLI as a new user (one test per bug fixed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
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


def test_weights_that_do_not_fit_name_the_keys(tmp_path: Path) -> None:
    """The error once stopped at "Error(s) in loading state_dict for LeNet5:", hiding which keys differ."""
    torch = pytest.importorskip("torch")
    weights = tmp_path / "sd.pt"
    torch.save(torch.nn.Conv2d(3, 4, 3).state_dict(), weights)
    result = runner.invoke(app, ["export", "zoo:lenet5", "--weights", str(weights), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2
    line = " ".join(result.stderr.split())
    assert "do not fit" in line and "Missing key(s)" in line and "Unexpected key(s)" in line
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("hello")
    result = runner.invoke(app, ["export", "zoo:lenet5", "--weights", str(garbage), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "Error" in result.stderr  # the exception kind, not a bare "(101)"
    assert not (tmp_path / "x.onnx").exists()


def test_check_renders_node_names_verbatim_and_labels_macs(tmp_path: Path) -> None:
    """`check --nodes` ate "[...]" in node names (Rich markup); partition MACs were unlabelled and
    a model without MAC-counted ops showed "100.0% of 0.0 M MACs on the NPU"."""
    from tests._npu_helpers import detector, loop_model

    det = detector(tmp_path / "det.onnx")
    result = runner.invoke(app, ["check", str(det), "--target", "ascend310"])
    assert result.exit_code == 0, result.output
    assert "MACs (estimated)" in " ".join(result.stdout.split())

    model = onnx.load(str(loop_model(tmp_path / "loop.onnx")))
    loop = next(n for n in model.graph.node if n.op_type == "Loop")
    loop.name = "body[step]"
    path = tmp_path / "loop_named.onnx"
    onnx.save(model, str(path))
    result = runner.invoke(app, ["check", str(path), "--target", "ascend310", "--nodes"])
    assert result.exit_code == 3
    text = " ".join(result.stdout.split())
    assert "body[step] (Loop): unsupported" in text

    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    relu = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [value],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(relu, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    result = runner.invoke(app, ["check", str(path), "--target", "ascend310"])
    assert result.exit_code == 0 and "no MACs counted" in " ".join(result.stdout.split())


def test_missing_external_data_is_named(tmp_path: Path) -> None:
    """An .onnx whose external weights file is missing was reported as "not a valid ONNX file"."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    assert runner.invoke(app, ["inspect", str(path)]).exit_code == 0
    (tmp_path / "m.data").unlink()
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert "external data file(s) not found: m.data" in " ".join(result.stderr.split())


def test_default_check_does_not_call_custom_ops_supported(tmp_path: Path) -> None:
    """`check --target cpu` once said a custom-domain op "executes the standard ONNX op"."""
    from onnx import TensorProto, helper

    from edgekit.adapters.base import NodeVerdict
    from edgekit.adapters.null import NullAdapter
    from edgekit.targets import get_profile

    nodes = [helper.make_node("MyOp", ["x"], ["y"], name="mine", domain="com.acme"),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, ir_version=8,
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    report = NullAdapter().check(path, get_profile("cpu"))
    verdicts = {v.node: v for v in report.verdicts}
    assert isinstance(verdicts["mine"], NodeVerdict) and verdicts["mine"].verdict == "unknown"
    assert verdicts["relu"].verdict == "supported"


def test_budget_table_shows_accuracy_to_six_digits() -> None:
    """A cosine of 0.999998 was shown as "1" (4 significant digits) beside its limit."""
    from rich.console import Console

    from edgekit.checks.budgets import BudgetVerdict
    from edgekit.cli.bench import budget_table

    verdict = BudgetVerdict("min_cosine=0.9999", "accuracy", "min_cosine", ">=", 0.9999, 0.99985, "", "fail",
                            "measured", "manifest")
    console = Console(width=200, record=True)
    console.print(budget_table([verdict]))
    text = console.export_text()
    assert "0.99985" in text and ">= 0.9999" in text


def test_check_dynamic_dims_note_keeps_brackets(tmp_path: Path) -> None:
    """The rk* profiles' note `config(dynamic_input=[[shapes...], ...])` lost "[shapes...]" to Rich markup."""
    from tests._npu_helpers import detector

    model = detector(tmp_path / "dyn.onnx", batch="N")
    result = runner.invoke(app, ["check", str(model), "--target", "rk3588"])
    assert result.exit_code == 0, result.output
    assert "dynamic_input=[[shapes...], ...]" in " ".join(result.stdout.split())


def test_notes_with_brackets_do_not_crash_rendering() -> None:
    """A note holding "[/tmp/x]" raised rich.errors.MarkupError (a traceback) instead of printing."""
    from rich.console import Console

    from edgekit.checks.budgets import BudgetVerdict
    from edgekit.cli.bench import print_verdict_notes

    verdict = BudgetVerdict("p90<=1ms", "latency", "p90", "<=", 1.0, 0.5, "ms", "pass", "measured", "--budget",
                            note="baseline in [/tmp/x] and [bold]")
    console = Console(width=200, record=True)
    print_verdict_notes([verdict], console)
    assert "baseline in [/tmp/x] and [bold]" in console.export_text()


def test_ci_example_installs_what_its_recipe_needs() -> None:
    """The example workflow ran the digits recipe after `pip install edgekit[plot]`: no scikit-learn
    (exit 4), and `recipes/...` only exists inside the edgekit repository."""
    workflow = Path(__file__).parents[2] / "docs" / "ci" / "github-actions-edgekit.yml"
    if not workflow.is_file():
        pytest.skip("docs/ci not in this checkout")
    text = workflow.read_text()
    if "lenet-digits" in text:
        assert any("pip install" in line and "scikit-learn" in line for line in text.splitlines())
        assert "data_dir(\"recipes\")" in text


def test_unwritable_output_is_one_line_exit_2(tmp_path: Path) -> None:
    """Writing under a path that is a file (or /proc) raised FileNotFoundError with a traceback."""
    from edgekit.artifact import atomic_dir, atomic_path
    from edgekit.errors import BadInputError

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(BadInputError, match="cannot write here"), atomic_path(blocker / "out.onnx"):
        pass
    with pytest.raises(BadInputError, match="cannot write here"), atomic_dir(blocker / "bundle"):
        pass
    result = runner.invoke(app, ["zoo", "--json", str(blocker / "zoo.json")])
    assert result.exit_code == 2 and "cannot write here" in result.stderr
    assert "Traceback" not in result.output
    folder = tmp_path / "out.json"
    folder.mkdir()
    result = runner.invoke(app, ["zoo", "--json", str(folder)])
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_toolchain_install_into_unwritable_path_is_exit_2(tmp_path: Path) -> None:
    """`toolchain install rknn --path /proc/tc` ended in a FileNotFoundError traceback."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = runner.invoke(app, ["toolchain", "install", "rknn", "--path", str(blocker / "tc")])
    assert result.exit_code == 2 and "cannot create the toolchain folder" in result.stderr
    assert "Traceback" not in result.output


# --- second QA pass: compile/targets/compare/run/usage errors ------------------------------------------------


def _tiny(tmp_path: Path) -> Path:
    from tests._adapters_helpers import tiny_conv_model

    return tiny_conv_model(tmp_path / "tiny.onnx")


def test_auto_precision_the_target_does_not_offer_is_exit_3(tmp_path: Path) -> None:
    """`compile --target rk3588 --precision fp32` (auto) said exit 4 "no backend available"; docs/rknn.md says 3."""
    result = runner.invoke(app, ["compile", str(_tiny(tmp_path)), "--target", "rk3588", "--precision", "fp32",
                                 "-o", str(tmp_path / "b")])
    assert result.exit_code == 3, result.output
    assert "fp32 is not offered on rk3588" in result.stderr and "offered: " in result.stderr


def test_compile_into_unwritable_folder_is_one_line_exit_2(tmp_path: Path) -> None:
    """`compile -o /proc/b` raised FileNotFoundError from the `.b.work-*` temp dir with a traceback."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = runner.invoke(app, ["compile", str(_tiny(tmp_path)), "-b", "onnxruntime", "-o", str(blocker / "b")])
    assert result.exit_code == 2 and "cannot write here" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_emulated_figures_say_so_on_their_own_line(tmp_path: Path, monkeypatch) -> None:
    """NPU bundles printed "verified … cosine …" and the candidates with no `emulated` label on those lines."""
    import shutil

    from tests._npu_helpers import detector

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # no `atc`: the emulator runs
    result = runner.invoke(app, ["compile", str(detector(tmp_path / "det.onnx")), "--target", "ascend310",
                                 "--precision", "fp16", "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    verified = [line for line in lines if line.startswith("verified vs ONNX reference")]
    assert verified and "emulated" in verified[0] and "cosine" in result.output
    # the candidates block appears only for an explicit --backend auto; wherever numerics show, so does "emulated"
    numerics = [line for line in lines if "cosine" in line and "ascend-atc" in line]
    assert all("emulated" in line for line in numerics)


def test_candidates_table_rows_carry_provenance() -> None:
    from rich.console import Console

    from edgekit.cli.compile import candidates_table
    from edgekit.stages.compile import Candidate

    rows = [Candidate("npu", "int8", "chosen", "", min_cosine=0.999, numerics_provenance="emulated"),
            Candidate("ort", "fp32", "passed", "", median_ms=1.5, p90_ms=2.0, runs=5, timing_provenance="measured",
                      min_cosine=1.0, numerics_provenance="measured")]
    console = Console(width=250, record=True)
    console.print(candidates_table(rows))
    text = console.export_text()
    npu = next(line for line in text.splitlines() if "npu" in line)
    ort = next(line for line in text.splitlines() if "ort" in line and "fp32" in line)
    assert "emulated" in npu and "not-run" in npu  # numerics emulated; no timing
    assert ort.count("measured") == 2


def test_targets_show_keeps_brackets_of_profile_text() -> None:
    """`targets show rk3588` printed `dynamic_input=[, ...]`: Rich ate `[[shapes...]`."""
    result = runner.invoke(app, ["targets", "show", "rk3588"])
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())  # Rich wraps long lines
    assert "dynamic_input=[[" in text


def test_targets_list_does_not_import_tvm_and_says_so() -> None:
    """`edgekit targets` took ~6 s: it imported TVM (which imports torch) only to list it."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from edgekit.cli import app; "
            "r = CliRunner().invoke(app, ['targets']); "
            "print(r.exit_code, 'tvm' in sys.modules, 'torch' in sys.modules); print(r.output)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    first, _, output = proc.stdout.partition("\n")
    assert first == "0 False False", proc.stdout + proc.stderr
    assert "tvm" in output


def test_targets_quick_status_is_honest(monkeypatch) -> None:
    import importlib.util

    from edgekit.cli import targets as targets_cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tvm" else real(name, *a))
    missing = targets_cli.quick_status("tvm")
    assert missing is not None and missing["available"] is False and "not installed" in missing["reason"]
    assert targets_cli.quick_status("onnxruntime") is None  # cheap adapters are probed for real
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tvm" else real(name, *a))
    found = targets_cli.quick_status("tvm")
    assert found is not None and found["available"] is None and "not imported" in found["reason"]


def test_compare_errors_name_the_backends_option(tmp_path: Path) -> None:
    """compare's option is --backends but its error said `--backend`."""
    result = runner.invoke(app, ["compare", str(_tiny(tmp_path)), "--backends", "onnxruntime,tflite"])
    assert result.exit_code == 2 and "--backends: unknown backend 'tflite'" in result.stderr
    assert "auto" not in result.stderr  # compare has no `auto`
    result = runner.invoke(app, ["compare", str(_tiny(tmp_path)), "-b", "onnxruntime"])
    assert result.exit_code == 0, result.output


def test_run_finds_shipped_recipes_by_name(tmp_path: Path, monkeypatch) -> None:
    """`edgekit run lenet-digits-cpu-int8` said "no such recipe file"."""
    from edgekit.recipe import find_recipe, load_recipe, shipped_recipes

    monkeypatch.chdir(tmp_path)
    names = [p.stem for p in shipped_recipes()]
    assert "lenet-digits-cpu-int8" in names
    assert find_recipe("lenet-digits-cpu-int8") == find_recipe("lenet-digits-cpu-int8.toml") is not None
    assert find_recipe("sub/lenet-digits-cpu-int8") is None  # a path with a folder is taken literally
    assert load_recipe("lenet-digits-cpu-int8").name
    result = runner.invoke(app, ["run", "no-such-recipe"])
    assert result.exit_code == 2 and "no such recipe file" in result.stderr
    assert all(name in result.stderr for name in names)


def test_gate_resolves_a_shipped_recipe_name(tmp_path: Path, monkeypatch) -> None:
    import edgekit

    seen: list[Path] = []

    def fake_gate(path, **_kw):
        from edgekit.errors import ToolchainMissingError

        seen.append(Path(path))
        raise ToolchainMissingError("stop here")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(edgekit, "gate", fake_gate, raising=False)
    result = runner.invoke(app, ["gate", "lenet-digits-cpu-int8"])
    assert result.exit_code == 4 and seen and seen[0].suffix == ".toml" and seen[0].is_file()


@pytest.mark.parametrize("args, words", [
    (["export"], "Missing argument"),
    (["bogus-verb"], "No such command"),
    (["targets", "--bogus"], "No such option"),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], words: str) -> None:
    """Click usage errors printed a multi-line Rich box."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: ") and words in line and "--help" in line
    assert "╭" not in result.output


def test_no_args_prints_help_exit_0_and_help_still_works() -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 0 and "Usage" in result.output and result.output.count("Usage") == 1
    result = runner.invoke(app, ["compile", "--help"])
    assert result.exit_code == 0 and "--backend" in result.output


def test_help_shows_no_value_for_flags() -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    runner = CliRunner()
    for args in (["--help"], ["run", "--help"], ["bench", "--help"], ["toolchain", "--help"],
                 ["toolchain", "install", "--help"], ["device", "add", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "<bool>" not in result.output, (args, result.output)


def test_targets_show_prints_readable_sections_not_python_dicts() -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    result = CliRunner().invoke(app, ["targets", "show", "ascend310"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "{'" not in result.output and "['" not in result.output  # no repr of dicts or lists
    assert "int8: 16 TOPS (source: HiSilicon Ascend 310 launch" in result.output
    assert "bandwidth: 51.2 GB/s (assumed:" in result.output
