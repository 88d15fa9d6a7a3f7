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
