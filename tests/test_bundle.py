"""edgekit.bundle: containment, integrity, the local signing key, thread bounds; the one loader."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from edgekit.adapters.base import Runner
from edgekit.artifact import Manifest, hash_dir, hash_tree, sha256_bytes
from edgekit.bundle import (
    KEY_FILE,
    THREADS_HARD_CAP,
    check_threads,
    finalize_manifest,
    inside,
    key_path,
    local_key,
    max_threads,
    require_trust,
    sign,
    signed_here,
    verify_bundle,
)
from edgekit.errors import BadInputError
from edgekit.specs import TensorSpec
from tests._bench_helpers import compile_bundle, tiny_model


def make_bundle(root: Path, **info: object) -> Path:
    """A minimal bundle on disk (source.onnx + model.bin), listed and valid, without compiling."""
    root.mkdir(parents=True)
    tiny_model(root / "source.onnx")
    (root / "model.bin").write_bytes(b"weights")
    manifest = Manifest(kind="bundle", files=hash_tree(root), info={"adapter": "onnxruntime", **info})
    (root / "manifest.json").write_text(manifest.dumps())
    return root


def rewrite(bundle: Path, **top: object) -> None:
    data = json.loads((bundle / "manifest.json").read_text())
    data.update(top)
    (bundle / "manifest.json").write_text(json.dumps(data))


# ------------------------------------------------------------------------------- containment


def test_inside_accepts_nested_and_refuses_every_way_out(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "sub").mkdir()
    assert inside(bundle, "sub/x.bin", what="t") == bundle / "sub" / "x.bin"
    for bad in ("../x", "/etc/passwd", "a/../../x", "./source.onnx", "", "a\\b", 3, None):
        with pytest.raises(BadInputError):
            inside(bundle, bad, what="t")
    (bundle / "out").symlink_to(tmp_path)
    with pytest.raises(BadInputError, match="resolves outside"):
        inside(bundle, "out/outside.bin", what="t")


def test_verify_bundle_accepts_a_valid_bundle_logs_and_inner_links(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "logs").mkdir()
    (bundle / "logs" / "build.txt").write_text("log")  # logs/* may be unlisted
    (bundle / "alias.bin").symlink_to("model.bin")  # a link that stays inside is fine ...
    with pytest.raises(BadInputError, match=r"alias\.bin is not in the manifest"):  # ... but must be listed
        verify_bundle(bundle)
    (bundle / "alias.bin").unlink()
    art = verify_bundle(bundle)
    assert set(art.manifest.files) == {"source.onnx", "model.bin"}


def test_named_paths_must_be_listed(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", model_file="model.bin", config_file="missing.json")
    with pytest.raises(BadInputError, match=r"info\.config_file 'missing\.json' is not in the manifest"):
        verify_bundle(bundle)


def test_verify_bundle_refuses_a_non_bundle_manifest(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    rewrite(bundle, kind="onnx")
    with pytest.raises(BadInputError, match="not a bundle"):
        verify_bundle(bundle)


# ------------------------------------------------------------------------------- manifest structure


@pytest.mark.parametrize("data, message", [
    ([], "not an edgekit manifest"),
    (None, "not an edgekit manifest"),
    ({"schema": "edgekit.manifest", "schema_version": 1}, "kind is missing"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle", "files": ["a"]}, "files is not an object"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle", "files": {"a": "xyz"}}, "not a sha256"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle", "inputs": [{"name": "x"}]}, "no shape"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle",
      "inputs": [{"name": "x", "shape": [1], "dtype": "float99"}]}, "unknown dtype"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle",
      "inputs": [{"name": "x", "shape": [100000, 100000, 100000]}]}, "elements"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle",
      "inputs": [{"name": "x", "shape": [-1]}]}, "bad dim"),
    ({"schema": "edgekit.manifest", "schema_version": 1, "kind": "bundle", "info": []}, "info is not an object"),
    ({"schema": "edgekit.manifest", "schema_version": "1", "kind": "bundle"}, "schema_version"),
])
def test_malformed_manifests_are_one_line_bad_input(tmp_path: Path, data: object, message: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError, match=message) as info:
        Manifest.read(path)
    assert "\n" not in info.value.one_line()


def test_manifest_signature_round_trips(tmp_path: Path) -> None:
    manifest = Manifest(kind="bundle", files={"a": sha256_bytes(b"a")}, inputs=[TensorSpec("x", ("batch", 3))])
    assert sign(manifest)
    again = Manifest.from_json(json.loads(manifest.dumps()))
    assert again.signature == manifest.signature and signed_here(again)
    assert "signature" not in Manifest(kind="onnx").to_json()


# ------------------------------------------------------------------------------- trust


def test_local_key_is_made_once_private_and_in_the_configured_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKIT_KEY_DIR", str(tmp_path / "keys"))
    assert local_key() is None  # never made by a reader
    key = local_key(create=True)
    assert key is not None and len(key) == 32
    assert key_path() == tmp_path / "keys" / KEY_FILE
    assert stat.S_IMODE(key_path().stat().st_mode) == 0o600
    assert local_key(create=True) == key


def test_signature_is_valid_only_for_this_key_and_this_file_list(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEKIT_KEY_DIR", str(tmp_path / "mine"))
    bundle = make_bundle(tmp_path / "b")
    art = verify_bundle(bundle)
    with pytest.raises(BadInputError, match="not signed") as info:
        require_trust(art, needs="native code", trust=False)
    assert "--trust-bundle" in info.value.one_line()
    assert "trusted" in require_trust(art, needs="native code", trust=True)
    sign(art.manifest)
    assert "signed with your local key" in require_trust(art, needs="native code", trust=False)
    art.manifest.files["model.bin"] = sha256_bytes(b"other")
    assert not signed_here(art.manifest)
    art.manifest.files["model.bin"] = sha256_bytes(b"weights")
    monkeypatch.setenv("EDGEKIT_KEY_DIR", str(tmp_path / "theirs"))
    with pytest.raises(BadInputError, match="not by your local key"):
        require_trust(art, needs="native code", trust=False)


def test_sign_without_a_writable_key_dir_leaves_the_bundle_unsigned(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EDGEKIT_KEY_DIR", str(blocker / "keys"))
    manifest = Manifest(kind="bundle")
    assert not sign(manifest) and manifest.signature == {}


def test_finalize_manifest_lists_new_files_and_signs(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "reference").mkdir()
    (bundle / "reference" / "eval.npz").write_bytes(b"data")
    with pytest.raises(BadInputError, match="not in the manifest"):
        verify_bundle(bundle)
    finalize_manifest(bundle, Manifest.read(bundle / "manifest.json"))
    art = verify_bundle(bundle)
    assert "reference/eval.npz" in art.manifest.files and signed_here(art.manifest)


# ------------------------------------------------------------------------------- numbers


def test_check_threads_bounds() -> None:
    cap = max_threads()
    assert cap == min(THREADS_HARD_CAP, 4 * (os.cpu_count() or 1))
    assert check_threads(None) is None and check_threads(1) == 1 and check_threads(cap) == cap
    for bad in (0, -1, cap + 1, 99999999, True, "4", 2.5):
        with pytest.raises(BadInputError, match="threads"):
            check_threads(bad, source="info.threads")
    assert check_threads(10**6, clamp=True) == cap
    with pytest.raises(BadInputError):
        check_threads(0, clamp=True)


# ------------------------------------------------------------------------------- hashing


def test_one_hasher_for_bundles_cache_entries_and_data(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a")
    (root / "sub" / "b.bin").write_bytes(b"b")
    (root / "manifest.json").write_text("{}")
    assert set(hash_tree(root)) == {"a.bin", "sub/b.bin"}
    assert set(hash_tree(root, exclude=())) == {"a.bin", "sub/b.bin", "manifest.json"}
    digest = hash_dir(root)
    (root / "sub" / "b.bin").write_bytes(b"B")
    assert hash_dir(root) != digest
    assert hash_dir(root / "a.bin") == sha256_bytes(b"a")


# ------------------------------------------------------------------------------- the loader


@pytest.fixture(scope="module")
def ort_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_bundle(tmp_path_factory.mktemp("bundle"))


def test_load_bundle_is_the_public_loader(ort_bundle: Path) -> None:
    import edgekit
    import edgekit.runtime
    from edgekit.adapters.loading import load_bundle

    assert edgekit.load is load_bundle and edgekit.runtime.load is load_bundle
    assert signed_here(verify_bundle(ort_bundle).manifest)  # compile signs what it writes
    with load_bundle(ort_bundle, threads=1) as runner:
        out = runner.run({"x": np.ones((1, 16), np.float32)})
    assert out["y"].shape == (1, 8)
    with pytest.raises(BadInputError, match="threads"):
        load_bundle(ort_bundle, threads=max_threads() + 1)


def test_load_bundle_refuses_a_manifest_without_adapter(tmp_path: Path, ort_bundle: Path) -> None:
    from edgekit.adapters.loading import load_bundle

    copy = Path(shutil.copytree(ort_bundle, tmp_path / "b"))
    data = json.loads((copy / "manifest.json").read_text())
    del data["info"]["adapter"]
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BadInputError, match="names no adapter"):
        load_bundle(copy)


class _Echo(Runner):
    def _run_impl(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"]}


def test_runner_run_checks_inputs_unless_told_not_to() -> None:
    runner = _Echo([TensorSpec("x", (1, 4))], ["y"])
    wrong = {"x": np.zeros((2, 4), np.float32)}
    with pytest.raises(BadInputError, match="shape"):
        runner.run(wrong)
    assert runner.run(wrong, check_inputs=False)["y"].shape == (2, 4)
