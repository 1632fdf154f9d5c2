"""PURE: which GPU nodes an LLMDeployment may land on, for the planner's inventory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.api.v1alpha1 import LLMDeployment, PlacementProfile
from llmops.planner import NodeGPUs
from llmops.render.pod import EDGE_LABEL, EDGE_TOLERATION, GPU_PRODUCT_LABEL, GPU_TOLERATION


@dataclass(frozen=True)
class GPUNode:
    name: str
    labels: dict[str, str]
    taints: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    gpus: int = 0
    unschedulable: bool = False

    @classmethod
    def from_node(cls, name: str, labels: dict[str, str], spec: dict[str, Any], status: dict[str, Any],
                  resource: str = "nvidia.com/gpu") -> "GPUNode":
        allocatable = (status or {}).get("allocatable") or {}
        try:
            gpus = int(str(allocatable.get(resource, "0")))
        except ValueError:
            gpus = 0
        return cls(name, dict(labels or {}), tuple((spec or {}).get("taints") or ()), gpus,
                   bool((spec or {}).get("unschedulable")))


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    if taint.get("effect") not in ("NoSchedule", "NoExecute"):
        return True
    for t in tolerations:
        if t.get("effect") not in (None, "", taint.get("effect")):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and str(t.get("value", "")) == str(taint.get("value", "")):
            return True
    return False


def eligible_nodes(d: LLMDeployment, nodes: list[GPUNode]) -> list[NodeGPUs]:
    """GPU nodes whose labels match the pod's node selector and whose taints it tolerates."""
    placement = d.spec.placement
    selector = dict(placement.node_selector)
    tolerations = list(placement.tolerations) + [GPU_TOLERATION]
    if placement.profile is PlacementProfile.edge:
        selector.setdefault(EDGE_LABEL, "true")
    if placement.profile is not PlacementProfile.default:
        tolerations.append(EDGE_TOLERATION)
    if d.spec.resources.gpu.type:
        selector.setdefault(GPU_PRODUCT_LABEL, d.spec.resources.gpu.type)
    result = []
    for node in nodes:
        if node.unschedulable or node.gpus <= 0 or GPU_PRODUCT_LABEL not in node.labels:
            continue
        if any(node.labels.get(k) != v for k, v in selector.items()):
            continue
        if not all(_tolerates(tolerations, taint) for taint in node.taints):
            continue
        result.append(NodeGPUs(node.labels[GPU_PRODUCT_LABEL], node.gpus))
    return result


def inventory_or_none(d: LLMDeployment, nodes: Optional[list[GPUNode]]) -> Optional[list[NodeGPUs]]:
    """None (plan from the spec alone) when no labelled GPU node is eligible: then the pods'
    own scheduling failure, with the scheduler's message, is the honest report."""
    return eligible_nodes(d, nodes or []) or None
