"""What rendering needs besides the LLMDeployment: facts about the cluster and the sharding
actually chosen. Plain values, so rendering stays pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmops import __version__

# The operator image carries `llmops stage`; `llmops run --stager-image` overrides it.
DEFAULT_STAGER_IMAGE = f"llmops/operator:{__version__}"


@dataclass(frozen=True)
class ClusterCapabilities:
    """API versions and optional CRDs found by discovery (see kube.discover_capabilities),
    plus the one installation setting rendering needs (the stager image)."""

    pdb_api_version: str = "policy/v1"  # policy/v1beta1 before Kubernetes 1.21
    leader_worker_set: bool = False
    pod_monitor: bool = False
    stager_image: str = DEFAULT_STAGER_IMAGE
    # The activator's Service as NAMESPACE/NAME (`llmops run --activator`); None = not installed.
    activator: Optional[str] = None


@dataclass(frozen=True)
class ResolvedSharding:
    """Sharding after the planner filled in what the spec left to it."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    nodes_per_replica: int = 1
    gpu_product: Optional[str] = None  # a GPU type the planner chose when the spec named none
    source: str = "spec"                # "spec" or "planner"

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def gpus_per_node(self) -> int:
        return self.gpus_per_replica // self.nodes_per_replica
