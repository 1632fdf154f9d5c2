"""The Kubernetes objects one LLMDeployment owns. Pure: objects in, dicts out."""

from __future__ import annotations

from typing import Any

from llmops.api.v1alpha1 import VLLM_PORT, LLMDeployment
from llmops.render.context import ClusterCapabilities, ResolvedSharding
from llmops.render.meta import child_metadata, selector_labels
from llmops.render.group import ROLE_LABEL, group_children
from llmops.render.pod import pod_template
from llmops.render.prestage import add_staging, pod_templates, stage_daemonset, staging_enabled


def deployment(d: LLMDeployment, sharding: ResolvedSharding) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(d, d.name),
        "spec": {
            # The LLMDeployment owns the replica count (autoscaler and /scale write it there).
            "replicas": d.spec.replicas,
            "selector": {"matchLabels": selector_labels(d)},
            # Replace pods one at a time without surging: a surge pod needs GPUs that
            # usually do not exist, so it would sit Pending and stall the rollout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "progressDeadlineSeconds": d.spec.engine.startup_timeout_seconds + 300,
            "template": pod_template(d, sharding),
        },
    }


def service(d: LLMDeployment, multi_node: bool = False) -> dict[str, Any]:
    selector = selector_labels(d)
    if multi_node:
        selector = {**selector, ROLE_LABEL: "leader"}  # only leaders serve the API
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(d, d.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(d: LLMDeployment, api_version: str) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(d, d.name),
        # Voluntary evictions (node drains) take one replica at a time.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(d)}},
    }


def render_children(
    d: LLMDeployment,
    sharding: ResolvedSharding | None = None,
    capabilities: ClusterCapabilities | None = None,
) -> list[dict[str, Any]]:
    """Every child object of `d`, in apply order."""
    sharding = sharding or ResolvedSharding(
        tensor_parallel_size=d.spec.sharding.tensor_parallel_size or 1,
        pipeline_parallel_size=d.spec.sharding.pipeline_parallel_size or 1,
    )
    capabilities = capabilities or ClusterCapabilities()
    if sharding.nodes_per_replica > 1:
        workloads = group_children(d, sharding, use_lws=capabilities.leader_worker_set)
    else:
        workloads = [deployment(d, sharding)]
    staging = []
    if staging_enabled(d):
        staging = [stage_daemonset(d, sharding, capabilities.stager_image)]
        for workload in workloads:
            for template in pod_templates(workload):
                add_staging(template, d, capabilities.stager_image)
    return [
        service(d, multi_node=sharding.nodes_per_replica > 1),
        *staging,  # before the serving pods, so staging starts first
        *workloads,
        pod_disruption_budget(d, capabilities.pdb_api_version),
    ]
