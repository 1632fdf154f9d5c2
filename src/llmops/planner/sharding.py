"""The layout a deployment renders with: the planner's choice where the spec leaves it open.

Pure (the deployment and, optionally, the cluster's GPU nodes in; a layout or the reasons
none fits out), so `llmops render` and the operator's reconcile share it without the CLI
importing the module that does Kubernetes I/O."""

from __future__ import annotations

from typing import Optional

from llmops.api.v1alpha1 import LLMDeployment
from llmops.inventory import GPUNode, inventory_or_none
from llmops.planner.fit import plan_deployment
from llmops.render.context import ResolvedSharding


def resolve_sharding(d: LLMDeployment, nodes: Optional[list[GPUNode]] = None) -> tuple[Optional[ResolvedSharding], list[str]]:
    """The layout to render (planner for `auto` and for node counts), or why none fits."""
    report = plan_deployment(d, inventory_or_none(d, nodes))
    plan = report.plan
    if plan is None:
        if report.problems:
            return None, [str(p) for p in report.problems]
        s = d.spec.sharding  # the planner knows too little (no GPU type, unknown model): trust the spec
        return ResolvedSharding(s.tensor_parallel_size or 1, s.pipeline_parallel_size or 1), []
    return ResolvedSharding(
        tensor_parallel_size=plan.tensor_parallel_size,
        pipeline_parallel_size=plan.pipeline_parallel_size,
        nodes_per_replica=plan.nodes_per_replica,
        gpu_product=None if d.spec.resources.gpu.type else plan.gpu_product,
        source="planner" if plan.auto else "spec",
    ), []
