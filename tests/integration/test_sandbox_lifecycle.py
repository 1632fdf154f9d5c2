"""`llmops sandbox up/down/status/kubeconfig` end to end, on a second sandbox of its own
(own --dir, bridge and pod range) so the session's shared sandbox is untouched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from kubernetes import client, config

from llmops_sandbox import cgroups, realnodes
from llmops_sandbox.processes import alive
from llmops_sandbox.state import StateDir
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

BRIDGE = "llmopst0"
POD_CIDR = "10.245.0.0/16"


def llmops(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmops.cli", *args], capture_output=True, text=True, timeout=120)


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


@pytest.fixture
def second_sandbox(tmp_path):
    if os.environ.get("LLMOPS_TEST_KUBECONFIG") or os.geteuid() != 0:
        pytest.skip("starts its own local sandbox: needs root and no LLMOPS_TEST_KUBECONFIG")
    root = tmp_path / "sandbox"
    yield root
    llmops("sandbox", "down", "--dir", str(root))   # in case the test failed half-way


NODES = """
nodes:
  - {name: solo-a100, cpu: "8", memory: 64Gi, gpu: {product: NVIDIA-A100-SXM4-80GB, count: 8, memoryMiB: 81920}}
  - {name: plain, cpu: "4", memory: 16Gi, labels: {pool: cpu}}
"""


def test_up_twice_status_kubeconfig_then_down_leaves_nothing(second_sandbox, tmp_path):
    root = str(second_sandbox)
    nodes_file = tmp_path / "nodes.yaml"
    nodes_file.write_text(NODES)
    iptables_before = realnodes.host_iptables()
    first = llmops("sandbox", "up", "--dir", root, "--bridge", BRIDGE, "--pod-cidr", POD_CIDR,
                   "--nodes", str(nodes_file))
    assert first.returncode == 0, first.stderr
    assert "nodes Ready" in first.stderr   # progress is shown
    again = llmops("sandbox", "up", "--dir", root)
    assert again.returncode == 0 and "already up" in again.stderr

    status = llmops("sandbox", "status", "--dir", root)
    assert status.returncode == 0 and "2/2 Ready" in status.stdout
    path = llmops("sandbox", "kubeconfig", "--dir", root).stdout.strip()
    content = llmops("sandbox", "kubeconfig", "--dir", root, "--print").stdout
    assert yaml.safe_load(content) == yaml.safe_load(open(path).read())

    # A running pod, so there is a container, its network namespace and cgroups to clean up.
    api = config.new_client_from_config(config_file=path)
    core = client.CoreV1Api(api)
    wait_for(lambda: core.read_namespaced_service_account("default", "default").secrets, 30,
             "default service account token was not created")
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "web", "image": "llmops/test-http:1", "args": ["--port", "8080"]}]}})
    wait_for(lambda: (core.read_namespaced_pod("p", "default").status.container_statuses or [None])[0]
             and core.read_namespaced_pod("p", "default").status.container_statuses[0].ready,
             30, "pod in the second sandbox did not become ready")
    nodes = {n.metadata.name: n for n in core.list_node().items}
    assert sorted(nodes) == ["plain", "solo-a100"]
    assert nodes["solo-a100"].status.allocatable["nvidia.com/gpu"] == "8"
    assert nodes["plain"].metadata.labels["pool"] == "cpu" and "nvidia.com/gpu" not in nodes["plain"].status.allocatable
    api.close()
    state = StateDir(second_sandbox)
    pod_node = core.read_namespaced_pod("p", "default").spec.node_name
    pids = [int(f.read_text().split()[0]) for f in state.root.glob("pids/*.pid")]
    pids += list(realnodes.container_pids(state, pod_node).values())
    # etcd, apiserver, controller-manager, scheduler, node services, dnsmasq, prometheus, two nodes, the container
    assert len(pids) >= 10, pids
    assert any(n.startswith(BRIDGE + "-") for n in netns_names())
    cgroup_prefix = cgroups.node_cgroup(BRIDGE, "x").rsplit("/", 1)[0]

    down = llmops("sandbox", "down", "--dir", root)
    assert down.returncode == 0, down.stderr
    assert [p for p in pids if alive(p)] == []
    assert [n for n in netns_names() if n.startswith(BRIDGE + "-")] == []
    assert not link_exists(BRIDGE)
    assert not second_sandbox.exists()
    assert realnodes.leftovers(second_sandbox, BRIDGE, POD_CIDR, cgroup_prefix) == []
    assert realnodes.host_iptables() == iptables_before

    twice = llmops("sandbox", "down", "--dir", root)
    assert twice.returncode == 0 and "nothing to stop" in twice.stderr
    assert llmops("sandbox", "status", "--dir", root).returncode == 1
