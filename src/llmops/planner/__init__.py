"""The fit planner (pure): model and GPU catalogues, per-GPU memory estimate, sharding choice.

Entry points:
- check_fit(deployment, inventory=None) -> list[Problem]: the admission check.
- plan_sharding(deployment, inventory=None) -> ShardingPlan | None: the layout to render.
- plan_deployment(deployment, inventory=None, gpu_type=None) -> FitReport: both, with the
  memory breakdown, warnings and the model/GPU figures used (what `llmops plan` prints).
"""

from llmops.planner.fit import (
    AUTO_MIN_KV_SHARE,
    FitReport,
    NodeGPUs,
    ShardingPlan,
    check_fit,
    plan_deployment,
    plan_sharding,
)
from llmops.planner.gpus import GPUInfo, lookup_gpu
from llmops.planner.memory import EngineSettings, MemoryBreakdown, engine_settings, estimate_memory
from llmops.planner.models import ModelInfo, lookup_model, resolve_model

__all__ = [
    "AUTO_MIN_KV_SHARE",
    "EngineSettings",
    "FitReport",
    "GPUInfo",
    "MemoryBreakdown",
    "ModelInfo",
    "NodeGPUs",
    "ShardingPlan",
    "check_fit",
    "engine_settings",
    "estimate_memory",
    "lookup_gpu",
    "lookup_model",
    "plan_deployment",
    "plan_sharding",
    "resolve_model",
]
