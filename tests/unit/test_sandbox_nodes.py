import pytest

from llmops_sandbox.nodes import NodeFileError, default_nodes_text, node_labels, node_taints, parse_nodes


def test_default_nodes_are_two_a100_hosts_and_two_edge_sites_of_two_tainted_l4_nodes():
    nodes = {n.name: n for n in parse_nodes(default_nodes_text())}
    assert sorted(nodes) == ["dc-a100-0", "dc-a100-1", "edge-a-l4-0", "edge-a-l4-1", "edge-b-l4-0", "edge-b-l4-1"]
    dc = nodes["dc-a100-0"]
    assert (dc.gpu.product, dc.gpu.count, dc.edge) == ("NVIDIA-A100-SXM4-80GB", 4, False)
    edge = [n for n in nodes.values() if n.edge]
    assert [n.name for n in edge] == ["edge-a-l4-0", "edge-a-l4-1", "edge-b-l4-0", "edge-b-l4-1"]
    assert all((n.gpu.product, n.gpu.count) == ("NVIDIA-L4", 1) for n in edge)
    assert [node_labels(n)["topology.kubernetes.io/zone"] for n in edge] == \
        ["sandbox-edge-site-a"] * 2 + ["sandbox-edge-site-b"] * 2
    assert {node_labels(n)["topology.kubernetes.io/region"] for n in nodes.values()} == {"sandbox-region-1"}


def test_labels_taints_and_capacity_of_an_edge_node():
    edge = next(n for n in parse_nodes(default_nodes_text()) if n.edge)
    labels = node_labels(edge)
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert labels["nvidia.com/gpu.memory"] == "23034"
    assert labels["nvidia.com/gpu.count"] == "1"
    assert labels["llmops.io/edge"] == "true" and labels["node-role.kubernetes.io/edge"] == ""
    assert labels["kubernetes.io/hostname"] == edge.name
    assert labels["topology.kubernetes.io/zone"] and labels["topology.kubernetes.io/region"]
    assert node_taints(edge) == [{"key": "llmops.io/edge", "value": "true", "effect": "NoSchedule"}]


def test_datacenter_node_is_untainted():
    dc = next(n for n in parse_nodes(default_nodes_text()) if not n.edge)
    assert node_taints(dc) == []
    assert node_labels(dc)["nvidia.com/gpu.count"] == "4"


def test_count_expands_names_and_defaults_apply():
    nodes = parse_nodes("""
defaults: {cpu: "8", memory: 32Gi, region: r1}
nodes:
  - {name: cpu-only, count: 3, zone: r1-b, labels: {team: a}}
""")
    assert [n.name for n in nodes] == ["cpu-only-0", "cpu-only-1", "cpu-only-2"]
    assert nodes[0].gpu is None and nodes[0].cpu == "8" and nodes[0].region == "r1"
    assert not any(k.startswith("nvidia.com/") for k in node_labels(nodes[0]))
    assert node_labels(nodes[0])["team"] == "a"


@pytest.mark.parametrize("text, field", [
    ("nodes: []", "nodes"),
    ("nodes: [{name: Bad_Name, cpu: '1', memory: 1Gi}]", "nodes[0].name"),
    ("nodes: [{name: a, cpu: lots, memory: 1Gi}]", "nodes[0].cpu"),
    ("nodes: [{name: a, cpu: '1', memory: 1Gi, gpu: {product: X, count: 0, memoryMiB: 1}}]", "nodes[0].gpu.count"),
    ("nodes: [{name: a, cpu: '1', memory: 1Gi}, {name: a, cpu: '1', memory: 1Gi}]", "duplicate"),
    ("nodes: [{name: a, cpu: '1', memory: 1Gi, taints: [{key: k, effect: Sometimes}]}]", "nodes[0].taints"),
    ("{{{", "YAML"),
])
def test_errors_name_the_offending_field(text, field):
    with pytest.raises(NodeFileError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_nodes(text)
