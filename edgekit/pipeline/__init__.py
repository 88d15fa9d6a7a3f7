"""The pipeline layer: a recipe run with the stage cache, the precision search, and the recipe gate.

- `results`: typed results (StageRun, Candidate, LatencyFigure, TargetResult, PipelineResult)
- `data`: evaluation/calibration samples from a recipe's sources
- `search`: the side-by-side choice between candidates (the rule and the figures it used)
- `run`: `Pipeline` (export → simplify → quantize → compile → accuracy → fresh bench → budgets)
- `gate`: `edgekit gate` for recipes and bundles
- `auto`: `compile(precision="auto")` for one model and target
- `many`: `run_many` (many recipes, in turn or one Ray task each on a cluster)
"""

from edgekit.pipeline.auto import AutoCompileResult, compile, compile_auto
from edgekit.pipeline.gate import gate, gate_recipe
from edgekit.pipeline.many import RecipeRun, run_many
from edgekit.pipeline.results import Candidate, LatencyFigure, PipelineResult, StageRun, TargetResult
from edgekit.pipeline.run import Pipeline
from edgekit.recipe import Recipe, load_recipe

__all__ = [
    "AutoCompileResult", "Candidate", "LatencyFigure", "Pipeline", "PipelineResult", "Recipe", "RecipeRun",
    "StageRun", "TargetResult", "compile", "compile_auto", "gate", "gate_recipe", "load_recipe", "run_many",
]
