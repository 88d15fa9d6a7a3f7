"""What a device needs to load and bench a bundle: no torch, no onnxsim, no Typer/Rich.

`python -m edgekit.runtime bench BUNDLE/` gives the same JSON (`edgekit.bench/1`) as
`edgekit bench BUNDLE/`, so a bundle can be gated on the edge device itself with only the
backend's runtime installed. Only the bundle's adapter module is imported (adapters never import
torch), plus numpy and onnx for tensor specs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekit.adapters.base import Runner
    from edgekit.checks.latency import BenchResult

__all__ = ["bench", "load"]


def load(bundle: str | Path, *, threads: int | None = None) -> Runner:
    """Verify a bundle's sha256 list (tampered bundles are refused, exit 2) and load its runner."""
    from edgekit.adapters.base import CompiledModel, require_available
    from edgekit.adapters.registry import adapter_names, get_adapter
    from edgekit.artifact import verify_bundle
    from edgekit.errors import BadInputError, ToolchainMissingError
    from edgekit.targets import get_profile

    artifact = verify_bundle(bundle)
    if artifact.manifest.kind != "bundle":
        raise BadInputError(f"manifest kind is {artifact.manifest.kind!r}, not a bundle", path=bundle)
    info = artifact.manifest.info
    adapter_name = info.get("adapter")
    if not adapter_name:
        raise BadInputError("bundle manifest names no adapter (info.adapter)", path=artifact.manifest_path,
                            hint="recompile the bundle with `edgekit compile`")
    if adapter_name not in adapter_names():
        raise ToolchainMissingError(f"bundle needs adapter {adapter_name!r}, not installed here", path=bundle,
                                    hint=f"installed: {', '.join(adapter_names())}")
    adapter = get_adapter(str(adapter_name))
    try:
        profile = get_profile(str(info.get("target", "")))
    except BadInputError:
        profile = None  # a plugin's target not installed here: let the adapter decide
    if profile is not None:
        require_available(adapter, profile)
    compiled = CompiledModel(
        path=artifact.path, adapter=str(adapter_name), target=str(info.get("target", "")),
        precision=str(info.get("precision", "fp32")), files=sorted(artifact.manifest.files),
        info=dict(info), manifest=artifact.manifest,
    )
    return adapter.load(compiled, threads=threads)


def bench(bundle: str | Path, **kwargs: Any) -> BenchResult:
    """`edgekit.checks.latency.bench` on a bundle, loaded by this torch-free loader."""
    from edgekit.checks.latency import bench as _bench

    kwargs.setdefault("loader", load)
    return _bench(bundle, **kwargs)
