"""Multi-node replicas: each replica is a *group* of one leader and N-1 workers.

Tensor parallel stays within a node, pipeline stages span the group's nodes, and vLLM's Ray
executor ties them together: the leader runs `ray start --head` then `vllm serve`, workers
join the leader's Ray cluster. A group counts as one replica.

Two renderings:
- LeaderWorkerSet, when its CRD is installed: LWS creates, restarts and scales whole groups.
- Otherwise our own: one leader StatefulSet (ordinal g = group g) and one worker
  StatefulSet per group, found through a headless Service. Leaders carry a readiness gate
  the operator sets only when every member of the group is ready (llmops/groups.py), so the
  serving Service routes only to complete groups.
"""

from __future__ import annotations

import copy
from typing import Any

from llmops.api.v1alpha1 import VLLM_PORT, LLMDeployment
from llmops.render.context import ResolvedSharding
from llmops.render.drain import pre_stop_lifecycle
from llmops.render.meta import child_metadata, selector_labels
from llmops.render.pod import pod_template

ROLE_LABEL = "llmops.io/role"
GROUP_LABEL = "llmops.io/group"
GROUP_READY_GATE = "llmops.io/group-ready"
RAY_PORT = 6379
LEADER_SCRIPT = (
    f'ray start --head --port={RAY_PORT} --disable-usage-stats && exec vllm serve "$@"'
)
STS_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"


def group_service_name(d: LLMDeployment) -> str:
    return f"{d.name}-group"


def leader_set_name(d: LLMDeployment) -> str:
    return f"{d.name}-leader"


def worker_set_name(d: LLMDeployment, group: int) -> str:
    return f"{d.name}-workers-{group}"


def leader_address(d: LLMDeployment, group: int) -> str:
    return f"{leader_set_name(d)}-{group}.{group_service_name(d)}.{d.namespace}.svc.cluster.local"


def _group_env(sharding: ResolvedSharding) -> list[dict[str, Any]]:
    return [{"name": "LLMOPS_GROUP_SIZE", "value": str(sharding.nodes_per_replica)}]


def _with_role(template: dict[str, Any], role: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    template = copy.deepcopy(template)
    template["metadata"]["labels"].update({ROLE_LABEL: role, **(extra_labels or {})})
    return template


def leader_template(d: LLMDeployment, sharding: ResolvedSharding, gate: bool) -> dict[str, Any]:
    template = _with_role(pod_template(d, sharding), "leader")
    spec = template["spec"]
    container = spec["containers"][0]
    container["command"] = ["/bin/sh", "-c", LEADER_SCRIPT, "vllm-leader"]
    container["args"] = container["args"] + ["--distributed-executor-backend", "ray"]
    container["env"] = container["env"] + _group_env(sharding)
    container["ports"] = container["ports"] + [{"name": "ray", "containerPort": RAY_PORT, "protocol": "TCP"}]
    if gate:
        spec["readinessGates"] = [{"conditionType": GROUP_READY_GATE}]
    return template


def worker_template(d: LLMDeployment, sharding: ResolvedSharding, address_env: dict[str, Any],
                    group_labels: dict[str, str] | None = None) -> dict[str, Any]:
    template = _with_role(pod_template(d, sharding), "worker", group_labels)
    template["metadata"].pop("annotations", None)  # workers serve no metrics
    spec = template["spec"]
    container = spec["containers"][0]
    container["command"] = ["ray", "start", "--block", f"--address=$(LLMOPS_LEADER_ADDRESS):{RAY_PORT}"]
    container.pop("args", None)
    container["ports"] = []
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        container.pop(probe, None)  # a Ray worker has no HTTP endpoint; running is ready
    # A worker leaves with its group: it stays in the Ray cluster until its leader has drained.
    container["lifecycle"] = pre_stop_lifecycle(d.spec.engine.drain_seconds, host="env:LLMOPS_LEADER_ADDRESS")
    container["env"] = container["env"] + _group_env(sharding) + [address_env]
    return template


def _spread_from_leader(d: LLMDeployment, group: int, template: dict[str, Any]) -> None:
    """Prefer putting a group's members on different nodes (pipeline stages need GPUs each)."""
    term = {
        "weight": 100,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchExpressions": [
                {"key": STS_POD_NAME_LABEL, "operator": "In", "values": [f"{leader_set_name(d)}-{group}"]},
            ]},
        },
    }
    same_group = copy.deepcopy(term)
    same_group["podAffinityTerm"]["labelSelector"] = {"matchLabels": {**selector_labels(d), GROUP_LABEL: str(group)}}
    affinity = template["spec"].setdefault("affinity", {})
    anti = affinity.setdefault("podAntiAffinity", {})
    anti.setdefault("preferredDuringSchedulingIgnoredDuringExecution", []).extend([term, same_group])


def group_headless_service(d: LLMDeployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(d, group_service_name(d)),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(d),
            # Workers must find their leader before the group (and so the leader) is Ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "ray", "port": RAY_PORT, "protocol": "TCP"},
                      {"name": "http", "port": VLLM_PORT, "protocol": "TCP"}],
        },
    }


def leader_statefulset(d: LLMDeployment, sharding: ResolvedSharding) -> dict[str, Any]:
    template = leader_template(d, sharding, gate=True)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": child_metadata(d, leader_set_name(d)),
        "spec": {
            "replicas": d.spec.replicas,  # one leader per group
            "serviceName": group_service_name(d),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {**selector_labels(d), ROLE_LABEL: "leader"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": template,
        },
    }


def worker_statefulset(d: LLMDeployment, sharding: ResolvedSharding, group: int) -> dict[str, Any]:
    labels = {GROUP_LABEL: str(group)}
    address = {"name": "LLMOPS_LEADER_ADDRESS", "value": leader_address(d, group)}
    template = worker_template(d, sharding, address, labels)
    _spread_from_leader(d, group, template)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": child_metadata(d, worker_set_name(d, group)),
        "spec": {
            "replicas": sharding.nodes_per_replica - 1,
            "serviceName": group_service_name(d),
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {**selector_labels(d), ROLE_LABEL: "worker", **labels}},
            "template": template,
        },
    }


def leader_worker_set(d: LLMDeployment, sharding: ResolvedSharding) -> dict[str, Any]:
    # LWS injects LWS_LEADER_ADDRESS into every pod of a group.
    address = {"name": "LLMOPS_LEADER_ADDRESS", "value": "$(LWS_LEADER_ADDRESS)"}
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": child_metadata(d, d.name),
        "spec": {
            "replicas": d.spec.replicas,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {"type": "RollingUpdate",
                                "rollingUpdateConfiguration": {"maxSurge": 0, "maxUnavailable": 1}},
            "leaderWorkerTemplate": {
                "size": sharding.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader_template(d, sharding, gate=False),
                "workerTemplate": worker_template(d, sharding, address),
            },
        },
    }


def group_children(d: LLMDeployment, sharding: ResolvedSharding, use_lws: bool) -> list[dict[str, Any]]:
    if use_lws:
        return [group_headless_service(d), leader_worker_set(d, sharding)]
    return [
        group_headless_service(d),
        leader_statefulset(d, sharding),
        *(worker_statefulset(d, sharding, g) for g in range(d.spec.replicas)),
    ]
