"""What a device needs to load and bench a bundle: no torch, no onnxsim, no Typer/Rich.

`python -m edgekit.runtime bench BUNDLE/` gives the same JSON (`edgekit.bench/1`) as
`edgekit bench BUNDLE/`, so a bundle can be gated on the edge device itself with only the
backend's runtime installed. Only the bundle's adapter module is imported (adapters never import
torch), plus numpy and onnx for tensor specs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.adapters.loading import load_bundle

if TYPE_CHECKING:
    from edgekit.checks.latency import BenchResult

__all__ = ["bench", "load"]

# The public torch-free loader: verified, contained and trusted (see edgekit.adapters.loading).
load = load_bundle


def bench(bundle: str | Path, *, trust: bool = False, **kwargs: Any) -> BenchResult:
    """`edgekit.checks.latency.bench` on a bundle (loaded by `load`; `trust` as for `load`)."""
    from edgekit.checks.latency import bench as _bench

    return _bench(bundle, trust=trust, **kwargs)
