"""export(): every MODEL form, verification against torch, manifests, atomicity and bad inputs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgekit import onnxio, zoo
from edgekit.artifact import Manifest, manifest_path_for, sha256_file
from edgekit.errors import BadInputError, CheckFailedError
from edgekit.stages.export import export

torch = pytest.importorskip("torch")

FACTORY_MODULE = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return torch.relu(self.fc(x)), self.fc(x).sum(-1)


    class Liar(nn.Module):
        """Returns something else while being exported: ONNX and torch disagree."""

        def forward(self, x):
            if torch.onnx.is_in_onnx_export():
                return x + 1.0
            return x


    def build():
        torch.manual_seed(0)
        return Tiny()


    def broken():
        raise RuntimeError("weights server unreachable")


    def liar():
        return Liar()


    def not_a_module():
        return 42


    class BatchOne(nn.Module):
        def forward(self, x):
            batch = int(x.shape[0])  # a Python int: traced as the constant 1
            return x.reshape(batch, -1) * 2


    def batch_one():
        return BatchOne()


    class PNet(nn.Module):
        """MTCNN's P-Net: fully convolutional, unpadded 3x3 convs, any H,W >= 12 (not 1x1)."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 10, 3), nn.PReLU(10), nn.MaxPool2d(2, 2, ceil_mode=True),
                                      nn.Conv2d(10, 16, 3), nn.PReLU(16), nn.Conv2d(16, 32, 3), nn.PReLU(32))
            self.prob = nn.Conv2d(32, 2, 1)
            self.box = nn.Conv2d(32, 4, 1)

        def forward(self, x):
            y = self.body(x)
            return torch.softmax(self.prob(y), dim=1), self.box(y)


    def pnet():
        torch.manual_seed(0)
        return PNet()
''')


@pytest.fixture
def factory_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "ek_models.py").write_text(FACTORY_MODULE)
    monkeypatch.chdir(tmp_path)  # module:factory is importable from the current folder
    monkeypatch.syspath_prepend(str(tmp_path))  # and from the test itself
    return tmp_path


# The same shapes as tests/test_zoo.py's MAC check, so the session-cached exports are shared (fast on 2 cores).
SMALL = {"lenet5": None, "resnet18": None, "mobilenetv2": None, "yolov5n": "images:1,3,320,320",
         "unet": "image:1,1,128,128"}


@pytest.mark.parametrize("name", list(SMALL))
def test_every_zoo_model_exports_and_verifies(zoo_onnx, name: str) -> None:
    path = zoo_onnx(name, SMALL[name])
    manifest = Manifest.read(manifest_path_for(path))
    record = manifest.history[0]
    assert record.stage == "export" and record.metrics["passed"] is True
    assert manifest.files == {path.name: sha256_file(path)} == record.outputs
    assert [o.name for o in manifest.outputs] == zoo.get_entry(name).outputs
    assert manifest.info["zoo"] == name
    for out in record.metrics["per_output"].values():
        assert out["within_tolerance"] and out["cosine"] > 0.99999


def test_manifest_records_versions_options_and_errors(tmp_path: Path) -> None:
    result = export("zoo:lenet5", None, tmp_path / "l.onnx", opset=13, seed=5)
    data = json.loads(result.artifact.manifest_path.read_text())
    rec = data["history"][0]
    assert rec["options"]["opset"] == 13 and rec["options"]["seed"] == 5 and rec["options"]["source"] == "zoo:lenet5"
    assert {"torch", "onnx", "onnxruntime", "edgekit"} <= set(rec["tool_versions"])
    assert rec["metrics"]["per_output"]["logits"]["max_abs"] == result.comparison.max_abs
    assert onnxio.opset_version(onnxio.load_onnx(result.path)) == 13
    assert result.to_json()["verification"]["passed"] is True


def test_dynamic_batch_names_dim0_and_runs_at_other_batches(tmp_path: Path) -> None:
    result = export("zoo:lenet5", ["input:1,1,32,32"], tmp_path / "d.onnx", dynamic_batch=True)
    assert result.inputs[0].shape[0] == "batch" and result.outputs[0].shape[0] == "batch"
    out = onnxio.run_reference(result.path, {"input": np.zeros((3, 1, 32, 32), np.float32)})
    assert out["logits"].shape == (3, 10)
    assert result.artifact.manifest.history[0].metrics["batch_check"]["passed"] is True


def test_dynamic_batch_catches_a_baked_in_batch(factory_dir: Path) -> None:
    with pytest.raises(CheckFailedError, match="batch 2"):
        export("ek_models:batch_one", ["x:1,4"], factory_dir / "b.onnx", dynamic_batch=True)
    assert not (factory_dir / "b.onnx").exists()
    assert export("ek_models:batch_one", ["x:1,4"], factory_dir / "b.onnx").comparison.passed  # fine at batch 1


def test_default_output_is_model_name_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = export("zoo:lenet5")
    assert result.path == tmp_path / "lenet5.onnx" and result.path.exists()
    assert manifest_path_for(result.path).exists()


def test_factory_with_weights_and_several_outputs(factory_dir: Path) -> None:
    from ek_models import build  # type: ignore[import-not-found]

    model = build()
    torch.nn.init.constant_(model.fc.bias, 0.5)
    torch.save(model.state_dict(), factory_dir / "w.pt")
    result = export("ek_models:build", ["x:2,8"], factory_dir / "f.onnx", weights=factory_dir / "w.pt")
    assert [o.name for o in result.outputs] == ["output0", "output1"]
    assert result.comparison.passed and "w.pt" in result.artifact.manifest.history[0].inputs
    init = {i.name: i for i in onnxio.load_onnx(result.path).graph.initializer}
    from onnx import numpy_helper

    assert any(np.allclose(numpy_helper.to_array(t), 0.5) for t in init.values() if t.dims == [4])


def test_weights_that_do_not_fit(factory_dir: Path) -> None:
    torch.save({"fc.weight": torch.zeros(3, 3)}, factory_dir / "bad.pt")
    with pytest.raises(BadInputError, match="do not fit"):
        export("ek_models:build", ["x:2,8"], factory_dir / "f.onnx", weights=factory_dir / "bad.pt")


def test_torchscript_file_and_module_object(tmp_path: Path) -> None:
    model = zoo.create("lenet5")
    scripted = torch.jit.trace(model, torch.zeros(1, 1, 32, 32))
    scripted.save(str(tmp_path / "lenet.ts"))
    result = export(tmp_path / "lenet.ts", ["input:1,1,32,32"], tmp_path / "ts.onnx")
    assert result.comparison.passed and result.source.endswith("lenet.ts")
    assert export(model, ["input:1,1,32,32"], tmp_path / "obj.onnx").source == "python:LeNet5"


@pytest.mark.slow
def test_pt2_exported_program(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    model = zoo.create("lenet5")
    program = torch.export.export(model, (torch.zeros(1, 1, 32, 32),))
    torch.export.save(program, str(tmp_path / "lenet.pt2"))
    result = export(tmp_path / "lenet.pt2", ["input:1,1,32,32"], tmp_path / "p.onnx")
    assert result.comparison.passed and result.options.exporter == "dynamo"  # the only exporter that takes a program


def test_pickled_module_needs_trust(factory_dir: Path) -> None:
    from ek_models import build  # type: ignore[import-not-found]

    torch.save(build(), factory_dir / "full.pt")
    with pytest.raises(BadInputError, match="trust-pickle"):
        export(factory_dir / "full.pt", ["x:1,8"], factory_dir / "u.onnx")
    assert not (factory_dir / "u.onnx").exists()
    assert export(factory_dir / "full.pt", ["x:1,8"], factory_dir / "t.onnx", trust_pickle=True).comparison.passed


def test_state_dict_as_model_points_to_weights_flag(factory_dir: Path) -> None:
    from ek_models import build  # type: ignore[import-not-found]

    torch.save(build().state_dict(), factory_dir / "sd.pt")
    with pytest.raises(BadInputError, match="--weights"):
        export(factory_dir / "sd.pt", ["x:1,8"], factory_dir / "o.onnx")


def test_mismatch_beyond_tolerance_names_output_and_writes_nothing(factory_dir: Path) -> None:
    with pytest.raises(CheckFailedError) as info:
        export("ek_models:liar", ["x:1,4"], factory_dir / "liar.onnx")
    assert info.value.exit_code == 1 and "'output'" in info.value.message
    assert not (factory_dir / "liar.onnx").exists() and not manifest_path_for(factory_dir / "liar.onnx").exists()
    assert [p.name for p in factory_dir.iterdir() if p.name.startswith(".liar")] == []


@pytest.mark.parametrize(("model", "shapes", "words"), [
    ("zoo:resnet19", None, "unknown zoo model"),
    ("no_such_pkg_xyz.models:build", ["x:1,8"], "cannot import module"),
    ("ek_models:missing", ["x:1,8"], "no attribute"),
    ("ek_models:broken", ["x:1,8"], "factory raised RuntimeError: weights server unreachable"),
    ("ek_models:not_a_module", ["x:1,8"], "not an nn.Module"),
    ("ek_models:build", None, "input shapes are needed"),
    ("ek_models:build", ["x:1,8,3"], "forward failed"),
    ("ek_models:build", ["x:1;8"], "bad dim"),
    ("ek_models:build", ["x=1,8"], "cannot parse"),
    ("zoo:lenet5", ["input:1,32,32"], "rank 3"),
    ("zoo:lenet5", ["pixels:1,1,32,32"], "no input 'pixels'"),
    ("missing_model.pt", ["x:1,8"], "no such file"),
    ("model.onnx", None, "already an ONNX model"),
    ("garbage.pt", ["x:1,8"], "not a TorchScript"),
])
def test_bad_inputs_are_one_line_exit_2(factory_dir: Path, model: str, shapes: list[str] | None, words: str) -> None:
    (factory_dir / "model.onnx").write_bytes(b"x")
    (factory_dir / "garbage.pt").write_bytes(b"\x00\x01 not a torch file")
    with pytest.raises(BadInputError) as info:
        export(model, shapes, factory_dir / "out.onnx")
    assert words in info.value.one_line()
    assert info.value.exit_code == 2 and "\n" not in info.value.one_line()
    assert not (factory_dir / "out.onnx").exists()


def test_bad_options(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="exporter"):
        export("zoo:lenet5", None, tmp_path / "o.onnx", exporter="tflite")
    with pytest.raises(BadInputError, match="opset"):
        export("zoo:lenet5", None, tmp_path / "o.onnx", opset=99)


@pytest.mark.slow
def test_dynamo_exporter(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript")
    result = export("zoo:lenet5", None, tmp_path / "dyn.onnx", exporter="dynamo", dynamic_batch=True)
    assert result.comparison.passed and result.inputs[0].shape[0] == "batch"
    assert result.artifact.manifest.history[0].options["exporter"] == "dynamo"


def test_fully_convolutional_dims_are_traced_at_the_given_size_and_stay_dynamic(factory_dir: Path) -> None:
    result = export("ek_models:pnet", ["input:1,3,h=12,w=12"], factory_dir / "pnet.onnx")
    assert result.comparison.passed
    assert result.inputs[0].shape == (1, 3, "h", "w")
    assert result.comparison.outputs[0].shape == (1, 2, 1, 1)  # verified at the trace size, 12x12
    record = result.artifact.manifest.history[-1]
    assert record.options["trace_sizes"] == {"h": 12, "w": 12}
    feeds = {"input": np.random.default_rng(1).standard_normal((1, 3, 31, 47)).astype(np.float32)}
    prob, box = onnxio.run_reference(result.path, feeds).values()
    assert prob.shape == (1, 2, 11, 19) and box.shape == (1, 4, 11, 19)  # another size runs: dims are dynamic


def test_cli_export_takes_a_trace_size(factory_dir: Path) -> None:
    from typer.testing import CliRunner

    from edgekit.cli import app

    got = CliRunner().invoke(app, ["export", "ek_models:pnet", "-s", "input:1,3,h=24,w=16", "-o", "p.onnx"])
    assert got.exit_code == 0, got.output
    assert onnxio.input_specs(onnxio.load_onnx(factory_dir / "p.onnx"))[0].shape == (1, 3, "h", "w")


def test_a_net_that_cannot_run_at_1x1_says_how_to_give_the_trace_size(factory_dir: Path) -> None:
    with pytest.raises(BadInputError) as info:
        export("ek_models:pnet", ["input:1,3,h,w"], factory_dir / "pnet.onnx")
    assert "traced at 1" in info.value.one_line() and "input:1,3,h=12,w=12" in info.value.one_line()


@pytest.mark.parametrize(("shapes", "words"), [
    (["input:1,3,h=0,w=12"], "zero"),
    (["input:1,3,h=12,w=x"], "bad trace size"),
    (["input:1,3,h=12,h=14"], "twice"),
])
def test_bad_trace_sizes_are_exit_2(factory_dir: Path, shapes: list[str], words: str) -> None:
    with pytest.raises(BadInputError, match=words):
        export("ek_models:pnet", shapes, factory_dir / "pnet.onnx")


def test_a_trace_size_is_refused_where_it_would_be_ignored() -> None:
    from edgekit.specs import parse_input_shape

    with pytest.raises(BadInputError, match="only for `edgekit export`"):
        parse_input_shape("images:1,3,h=640,w=640")
