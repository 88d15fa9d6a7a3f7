"""edgekit: PyTorch → fast, accuracy-checked artifacts for edge devices, gated in CI.

The public Python API. Names are resolved lazily so `import edgekit` stays cheap and never
imports torch, TVM or OpenVINO until a function that needs them is called.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("edgekit")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0.dev0"

# public name -> "module:attribute"
_API: dict[str, str] = {
    # errors and data
    "EdgekitError": "edgekit.errors:EdgekitError",
    "BadInputError": "edgekit.errors:BadInputError",
    "CheckFailedError": "edgekit.errors:CheckFailedError",
    "UnsupportedError": "edgekit.errors:UnsupportedError",
    "ToolchainMissingError": "edgekit.errors:ToolchainMissingError",
    "TensorSpec": "edgekit.specs:TensorSpec",
    "Artifact": "edgekit.artifact:Artifact",
    "Manifest": "edgekit.artifact:Manifest",
    "Provenance": "edgekit.adapters.base:Provenance",
    # stages
    "export": "edgekit.stages.export:export",
    "simplify": "edgekit.stages.simplify:simplify",
    "inspect": "edgekit.stages.inspect:inspect",
    "quantize": "edgekit.stages.quantize:quantize",
    "compile": "edgekit.pipeline:compile",
    "compare": "edgekit.stages.compile:compare",
    "load": "edgekit.adapters.loading:load_bundle",
    "check": "edgekit.checks.support:check",
    "bench": "edgekit.checks.latency:bench",
    "gate": "edgekit.pipeline:gate",
    "Pipeline": "edgekit.pipeline:Pipeline",
    "load_recipe": "edgekit.recipe:load_recipe",
    "compile_auto": "edgekit.pipeline:compile_auto",
    # option and result types
    "Recipe": "edgekit.recipe:Recipe",
    "CompileResult": "edgekit.stages.compile:CompileResult",
    "AutoCompileResult": "edgekit.pipeline:AutoCompileResult",
    "PipelineResult": "edgekit.pipeline:PipelineResult",
    "TargetResult": "edgekit.pipeline:TargetResult",
    "Candidate": "edgekit.pipeline:Candidate",
    "LatencyFigure": "edgekit.pipeline:LatencyFigure",
    "BenchResult": "edgekit.checks.latency:BenchResult",
    "GateResult": "edgekit.checks.gate:GateResult",
    "BudgetVerdict": "edgekit.checks.budgets:BudgetVerdict",
    "AccuracyFigures": "edgekit.checks.verify:AccuracyFigures",
    "get_metric": "edgekit.checks.metrics:get_metric",
    "metric_names": "edgekit.checks.metrics:metric_names",
    "Thresholds": "edgekit.stages.compile:Thresholds",
    "zoo": "edgekit.zoo",
    "runtime": "edgekit.runtime",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'edgekit' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
