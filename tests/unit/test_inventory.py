"""Which GPU nodes the planner may count for a deployment."""

from __future__ import annotations

from llmops.inventory import GPUNode, eligible_nodes, inventory_or_none
from llmops.planner import NodeGPUs
from llmops.validation import validate_manifest

EDGE_TAINT = {"key": "llmops.io/edge", "value": "true", "effect": "NoSchedule"}
NODES = [
    GPUNode("dc-0", {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "topology.kubernetes.io/zone": "a"}, (), 4),
    GPUNode("edge-0", {"nvidia.com/gpu.product": "NVIDIA-L4", "llmops.io/edge": "true"}, (EDGE_TAINT,), 1),
    GPUNode("cpu-0", {"kubernetes.io/os": "linux"}, (), 0),
    GPUNode("cordoned", {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}, (), 4, unschedulable=True),
]


def deployment(**spec):
    return validate_manifest({"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "m"},
                              "spec": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, **spec}})


def test_default_placement_sees_untainted_gpu_nodes_only():
    assert eligible_nodes(deployment(), NODES) == [NodeGPUs("NVIDIA-A100-SXM4-80GB", 4)]


def test_edge_profile_sees_edge_nodes_only():
    assert eligible_nodes(deployment(placement={"profile": "edge"}), NODES) == [NodeGPUs("NVIDIA-L4", 1)]


def test_a_toleration_opens_tainted_nodes_and_a_selector_narrows():
    d = deployment(placement={"tolerations": [{"key": "llmops.io/edge", "operator": "Exists"}]})
    assert len(eligible_nodes(d, NODES)) == 2
    d = deployment(placement={"nodeSelector": {"topology.kubernetes.io/zone": "b"}})
    assert eligible_nodes(d, NODES) == []


def test_gpu_type_filters_and_no_match_means_plan_from_the_spec():
    d = deployment(resources={"gpu": {"type": "NVIDIA-H100-80GB-HBM3"}})
    assert inventory_or_none(d, NODES) is None


def test_node_from_api_object():
    node = GPUNode.from_node("n", {"a": "b"}, {"taints": [EDGE_TAINT]}, {"allocatable": {"nvidia.com/gpu": "2"}})
    assert (node.gpus, node.taints, node.unschedulable) == (2, (EDGE_TAINT,), False)


def test_edge_preferred_counts_edge_and_datacenter_nodes():
    assert len(eligible_nodes(deployment(placement={"profile": "edge-preferred"}), NODES)) == 2
