"""Multi-node groups and edge placement end to end: a model that fits only across two
edge nodes runs as one two-node group; a lost member restarts the group; groups scale."""

from __future__ import annotations

import json
import urllib.request

import pytest

from llmops_testing.kube import wait_for_event_reasons
from llmops_testing.samples import sim_deployment
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
NAME = "llama-edge"


def edge_manifest(namespace: str, replicas: int = 1) -> dict:
    return {
        "apiVersion": "llmops.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            # 8B at its full 128k context needs more than one 24 GB L4: the planner picks
            # pipeline parallel 2 across two single-GPU edge nodes.
            "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
            "engine": {"image": "llmops/vllm-sim:latest",
                       "env": [{"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "1"}]},
            "sharding": {"allowMultiNode": True},
            "resources": {"gpu": {"type": "NVIDIA-L4"}},
            "placement": {"profile": "edge"},
            "replicas": replicas,
        },
    }


def cr(crs, namespace):
    return crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)


def ready_groups(crs, namespace, expected):
    status = cr(crs, namespace).get("status") or {}
    return status.get("readyReplicas") == expected and status.get("phase") == "Ready" and status


def wait_ready_replicas(crs, namespace, name, count, timeout=120):
    def ready():
        status = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
        return status.get("readyReplicas") == count

    wait_for(ready, timeout, f"{name} did not get {count} ready replicas")


def pods_by_role(core, namespace):
    pods = core.list_namespaced_pod(namespace, label_selector=f"llmops.io/deployment={NAME}").items
    live = [p for p in pods if not p.metadata.deletion_timestamp]
    return ({p.metadata.name: p for p in live if p.metadata.labels.get("llmops.io/role") == "leader"},
            {p.metadata.name: p for p in live if p.metadata.labels.get("llmops.io/role") == "worker"})


def gate(pod):
    return next((c.status for c in pod.status.conditions or [] if c.type == "llmops.io/group-ready"), None)


def test_model_fitting_only_across_two_edge_nodes_runs_as_a_ready_group(e2e_operator, crs, core, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, edge_manifest(namespace))
    status = wait_for(lambda: ready_groups(crs, namespace, 1), 120, "the two-node group never became Ready")
    assert (status["tensorParallelSize"], status["pipelineParallelSize"], status["nodesPerReplica"]) == (1, 2, 2)
    assert status["shardingSource"] == "planner"
    leaders, workers = pods_by_role(core, namespace)
    assert len(leaders) == 1 and len(workers) == 1
    [leader], [worker] = leaders.values(), workers.values()
    assert gate(leader) == "True"
    nodes = {leader.spec.node_name, worker.spec.node_name}
    assert len(nodes) == 2, "both pipeline stages landed on one node"
    for node in nodes:
        labels = core.read_node(node).metadata.labels
        assert labels.get("llmops.io/edge") == "true" and labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    # Only the leader serves the API; it answers as the served model.
    endpoints = core.read_namespaced_endpoints(NAME, namespace)
    addresses = [a.ip for s in endpoints.subsets or [] for a in s.addresses or []]
    assert addresses == [leader.status.pod_ip]
    with urllib.request.urlopen(f"http://{leader.status.pod_ip}:8000/v1/models", timeout=10) as r:
        assert json.load(r)["data"][0]["id"] == NAME


def test_losing_a_member_restarts_the_whole_group_which_recovers(e2e_operator, crs, core, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, edge_manifest(namespace))
    wait_for(lambda: ready_groups(crs, namespace, 1), 120, "the group never became Ready")
    leaders, workers = pods_by_role(core, namespace)
    old_leader_uid = next(iter(leaders.values())).metadata.uid
    core.delete_namespaced_pod(next(iter(workers)), namespace, _preload_content=False)

    def leader_replaced():
        current, _ = pods_by_role(core, namespace)
        return current and all(p.metadata.uid != old_leader_uid for p in current.values())

    wait_for(leader_replaced, 60, "deleting a worker did not restart the group's leader")
    wait_for(lambda: ready_groups(crs, namespace, 1), 120, "the restarted group did not become Ready again")
    wait_for_event_reasons(core, namespace, NAME, {"GroupRestarted"})


def test_groups_scale_one_two_one(e2e_operator, crs, core, apps_api, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, edge_manifest(namespace))
    wait_for(lambda: ready_groups(crs, namespace, 1), 120, "the first group never became Ready")
    crs.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, NAME, {"spec": {"replicas": 2}})
    wait_for(lambda: ready_groups(crs, namespace, 2), 120, "scaling to 2 groups did not give 2 ready groups")
    leaders, workers = pods_by_role(core, namespace)
    assert len(leaders) == 2 and len(workers) == 2
    assert len({p.spec.node_name for p in [*leaders.values(), *workers.values()]}) == 4
    crs.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, NAME, {"spec": {"replicas": 1}})

    def one_group_left():
        leaders, workers = pods_by_role(core, namespace)
        sets = [s.metadata.name for s in apps_api.list_namespaced_stateful_set(namespace).items]
        return len(leaders) == 1 and len(workers) == 1 and f"{NAME}-workers-1" not in sets

    wait_for(one_group_left, 60, "scaling back to 1 group did not remove the second group whole")
    wait_for(lambda: ready_groups(crs, namespace, 1), 60, "1 group not Ready after scaling down")


def test_edge_profile_lands_only_on_edge_nodes(e2e_operator, crs, core, namespace):
    body = sim_deployment("small-edge", namespace, placement={"profile": "edge"}, replicas=3)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_ready_replicas(crs, namespace, "small-edge", 3)
    pods = core.list_namespaced_pod(namespace, label_selector="llmops.io/deployment=small-edge").items
    for pod in pods:
        assert core.read_node(pod.spec.node_name).metadata.labels.get("llmops.io/edge") == "true", pod.spec.node_name


def test_required_zone_spread_puts_one_replica_in_each_edge_site(e2e_operator, crs, core, namespace):
    body = sim_deployment("spread-edge", namespace, placement={"profile": "edge", "zoneSpread": "required"},
                          replicas=2)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_ready_replicas(crs, namespace, "spread-edge", 2)
    pods = core.list_namespaced_pod(namespace, label_selector="llmops.io/deployment=spread-edge").items
    zones = {core.read_node(p.spec.node_name).metadata.labels["topology.kubernetes.io/zone"] for p in pods}
    assert len(zones) == 2, f"both replicas landed in one edge site: {zones}"
