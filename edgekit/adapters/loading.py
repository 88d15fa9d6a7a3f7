"""The one way to get a Runner for a bundle: verified, contained, trusted, then the adapter's `load`.

Stages, checks, the pipeline and the torch-free runtime all call `load_bundle`; the checks
themselves (containment, integrity, trust, thread bounds) live in the core module edgekit/bundle.py.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.adapters.base import CompiledModel, Runner, require_available
from edgekit.adapters.registry import adapter_names, get_adapter
from edgekit.bundle import check_threads, require_trust, verify_bundle
from edgekit.errors import BadInputError, ToolchainMissingError
from edgekit.targets import get_profile

__all__ = ["load_bundle"]


def load_bundle(path: str | Path, *, threads: int | None = None, trust: bool = False) -> Runner:
    """A Runner for the bundle at `path`.

    Refused with exit 2 before any bundle file reaches a backend: a malformed manifest, a path
    leaving the bundle, an unlisted or altered file, threads outside 1..max_threads(), and native
    code (a TVM `.so`) from a bundle that is neither signed with this user's key nor `trust`ed.
    Exit 4 when the bundle's adapter, toolchain or device is not here.
    """
    threads = check_threads(threads)
    artifact = verify_bundle(path)
    manifest = artifact.manifest
    info = manifest.info
    name = info.get("adapter")
    if not isinstance(name, str) or not name:
        raise BadInputError("bundle manifest names no adapter (info.adapter)", path=artifact.manifest_path,
                            hint="recompile the bundle with `edgekit compile`")
    if name not in adapter_names():
        raise ToolchainMissingError(f"bundle needs adapter {name!r}, not installed here", path=path,
                                    hint=f"installed: {', '.join(adapter_names())}")
    adapter = get_adapter(name)
    if adapter.loads_native_code:
        require_trust(artifact, needs=f"native code ({adapter.name} library)", trust=trust)
    target = str(info.get("target", ""))
    try:
        profile = get_profile(target)
    except BadInputError:
        profile = None  # a plugin's target not installed here: let the adapter decide
    if profile is not None:
        require_available(adapter, profile)
    compiled = CompiledModel(path=artifact.path, adapter=name, target=target,
                             precision=str(info.get("precision", "fp32")), files=sorted(manifest.files),
                             info=dict(info), manifest=manifest)
    return adapter.load(compiled, threads=threads)
