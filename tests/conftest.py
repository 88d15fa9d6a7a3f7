"""Shared fixtures (keep small and generic; area-specific helpers live in tests/_<area>_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def zoo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: `zoo_onnx("resnet18", "input:1,3,64,64")` -> Path of a verified export, cached per session.

    Without a shape the zoo default is used. Needs torch (skips the test when it is missing).
    """
    pytest.importorskip("torch")
    cache: dict[tuple[str, str | None, bool], Path] = {}
    root = tmp_path_factory.mktemp("zoo_onnx")

    def make(name: str, shape: str | None = None, *, dynamic_batch: bool = False) -> Path:
        key = (name, shape, dynamic_batch)
        if key not in cache:
            from edgekit.stages.export import export

            stem = f"{name}-{len(cache)}"
            result = export(f"zoo:{name}", [shape] if shape else None, root / f"{stem}.onnx",
                            dynamic_batch=dynamic_batch)
            cache[key] = result.path
        return cache[key]

    return make
