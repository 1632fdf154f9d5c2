"""Real sandbox nodes (kubelet + containerd + kube-proxy), on a sandbox of their own (own
--dir, bridge and pod range: LLMOPS_SANDBOX_REAL_BRIDGE / LLMOPS_SANDBOX_REAL_POD_CIDR), so
the session's sandbox is untouched. Three nodes: a 2-GPU datacentre node and two 1-GPU
edge nodes. Ends with `down` and a check that nothing of it is left on the host."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

from llmops_sandbox import cgroups, lifecycle, realnodes
from llmops_sandbox.state import StateDir
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

BRIDGE = os.environ.get("LLMOPS_SANDBOX_REAL_BRIDGE", "llmopsr0")
POD_CIDR = os.environ.get("LLMOPS_SANDBOX_REAL_POD_CIDR", "10.246.0.0/16")
NODES = {
    "defaults": {"region": "r1", "cpu": "2", "memory": "8Gi", "pods": 30},
    "nodes": [
        {"name": "dc", "zone": "r1-a", "gpu": {"product": "NVIDIA-A100-SXM4-80GB", "count": 2, "memoryMiB": 81920}},
        {"name": "edge", "count": 2, "zone": "r1-edge", "edge": True, "cpu": "1", "memory": "4Gi",
         "gpu": {"product": "NVIDIA-L4", "count": 1, "memoryMiB": 23034}},
    ],
}
EDGE_TOLERATION = [{"key": "llmops.io/edge", "operator": "Exists"}]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if os.environ.get("LLMOPS_TEST_KUBECONFIG") or os.geteuid() != 0:
        pytest.skip("starts real nodes of its own: needs root and no LLMOPS_TEST_KUBECONFIG")
    root = Path(os.environ.get("LLMOPS_SANDBOX_DIR", "/tmp/llmops-sandbox") + "-realnodes-test")
    nodes_file = tmp_path_factory.mktemp("realnodes") / "nodes.yaml"
    nodes_file.write_text(yaml.safe_dump(NODES))
    iptables_before = realnodes.host_iptables()
    messages: list[str] = []
    try:
        info, _ = lifecycle.up(lifecycle.UpOptions(dir=root, nodes_file=str(nodes_file), bridge=BRIDGE,
                                                   pod_cidr=POD_CIDR, prometheus=False),
                               progress=messages.append)
    except lifecycle.SandboxError as exc:
        lifecycle.down(root, progress=lambda m: None)
        pytest.fail(f"real nodes did not come up: {exc}", pytrace=False)
    import kubernetes
    api = kubernetes.config.new_client_from_config(config_file=info.kubeconfig)
    cgroup_prefix = realnodes.records(StateDir(root))[0].cgroup.rsplit("/", 1)[0]
    yield {"info": info, "api": api, "core": kubernetes.client.CoreV1Api(api), "root": root,
           "iptables_before": iptables_before, "cgroup_prefix": cgroup_prefix, "messages": messages}
    api.close()
    lifecycle.down(root, progress=lambda m: None)


@pytest.fixture
def ns(real):
    core = real["core"]
    name = f"rn-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: core.list_namespaced_service_account(name).items and
             core.read_namespaced_service_account("default", name).secrets, 30,
             f"default ServiceAccount token of {name} not created")
    yield name
    core.delete_namespace(name)


def pod(name: str, node: str, image: str, command: list[str] | None = None, gpus: int = 0, **extra) -> dict:
    spec_extra = extra.pop("spec", {})
    container = {"name": "c", "image": image, **({"command": command} if command else {}), **extra}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {**({"nodeName": node} if node else {}), "tolerations": EDGE_TOLERATION,
                     "containers": [container], "terminationGracePeriodSeconds": 2, **spec_extra}}


def wait_ready(core, ns: str, name: str, timeout: float = 90) -> object:
    def ready():
        p = core.read_namespaced_pod(name, ns)
        return p if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ()) else None
    return wait_for(ready, timeout, f"pod {ns}/{name} not Ready within {timeout:g}s")


def exec_out(api, ns: str, name: str, command: list[str]) -> str:
    from kubernetes.stream import stream
    import kubernetes
    return stream(kubernetes.client.CoreV1Api(api).connect_get_namespaced_pod_exec, name, ns, command=command,
                  stderr=True, stdin=False, stdout=True, tty=False)


def test_nodes_register_with_the_node_files_labels_taints_and_gpus(real):
    nodes = {n.metadata.name: n for n in real["core"].list_node().items}
    assert set(nodes) == {"dc", "edge-0", "edge-1"}
    dc, edge = nodes["dc"], nodes["edge-0"]
    assert dc.status.allocatable["nvidia.com/gpu"] == "2" and edge.status.allocatable["nvidia.com/gpu"] == "1"
    assert dc.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert edge.metadata.labels["node-role.kubernetes.io/edge"] == ""        # patched in after registration
    assert [(t.key, t.effect) for t in edge.spec.taints] == [("llmops.io/edge", "NoSchedule")]
    assert not dc.spec.taints
    assert dc.status.node_info.container_runtime_version.startswith("containerd://")
    # Allocatable is the node file's size (the kubelet reserves the rest of the machine).
    from kubernetes.utils.quantity import parse_quantity
    assert parse_quantity(dc.status.allocatable["memory"]) == 8 * 2**30
    assert parse_quantity(edge.status.allocatable["memory"]) == 4 * 2**30
    assert parse_quantity(edge.status.allocatable["cpu"]) == 1
    ips = sorted(n.status.addresses[0].address for n in nodes.values())
    assert len(set(ips)) == 3 and all(ip.startswith(POD_CIDR.split(".0.0/")[0]) for ip in ips)


def test_gpu_pods_get_distinct_devices_from_the_device_plugin(real, ns):
    core = real["core"]
    for name in ("g1", "g2"):
        core.create_namespaced_pod(ns, pod(name, "dc", "llmops/busybox:1",
                                           ["sh", "-c", "env | grep -E '^(NVIDIA|LLMOPS_SIM)_' | sort; sleep 3600"], gpus=1))
    seen = []
    for name in ("g1", "g2"):
        wait_ready(core, ns, name)
        env = dict(line.split("=", 1) for line in exec_out(real["api"], ns, name, ["env"]).splitlines() if "=" in line)
        assert env["NVIDIA_VISIBLE_DEVICES"].startswith("GPU-") and env["LLMOPS_SIM_GPU"] == "NVIDIA-A100-SXM4-80GB"
        seen.append(env["NVIDIA_VISIBLE_DEVICES"])
    assert len(set(seen)) == 2, f"two pods were given the same GPU: {seen}"
    third = core.create_namespaced_pod(ns, pod("g3", "", "llmops/busybox:1", ["sleep", "3600"], gpus=1,
                                               spec={"nodeSelector": {"kubernetes.io/hostname": "dc"}}))
    assert third
    wait_for(lambda: any(c.reason == "Unschedulable" for c in core.read_namespaced_pod("g3", ns).status.conditions or ()),
             30, "a third 1-GPU pod on the 2-GPU node was not refused by the scheduler")


def test_unchanged_vllm_manifest_serves_and_is_reached_by_service_name_from_another_node(real, ns):
    core = real["core"]
    vllm = pod("vllm", "edge-0", "vllm/vllm-openai:v0.33.0", gpus=1,
               args=["--model", "meta-llama/Meta-Llama-3-8B-Instruct", "--port", "8000"],
               readinessProbe={"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1})
    core.create_namespaced_pod(ns, vllm)
    core.create_namespaced_service(ns, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "vllm"}, "ports": [{"port": 80, "targetPort": 8000}]}})
    wait_ready(core, ns, "vllm", 120)
    client = pod("client", "edge-1", "vllm/vllm-openai:v0.33.0", ["sleep", "3600"])
    core.create_namespaced_pod(ns, client)
    wait_ready(core, ns, "client")
    # Through cluster DNS (dnsmasq) and the ClusterIP (kube-proxy), from the other edge node.
    out = exec_out(real["api"], ns, "client", ["python3", "-c",
                   "import urllib.request;print(urllib.request.urlopen('http://llm/v1/models',timeout=5).read().decode())"])
    assert "meta-llama/Meta-Llama-3-8B-Instruct" in out
    log = core.read_namespaced_pod_log("vllm", ns, container="c")
    assert "NVIDIA-L4" in log, f"the simulator did not see the node's GPU product: {log[-400:]}"


def test_host_path_belongs_to_the_node_alone(real, ns):
    core = real["core"]
    marker = f"written-{uuid.uuid4().hex[:6]}"
    spec = pod("writer", "edge-1", "llmops/busybox:1", ["sh", "-c", f"echo {marker} > /cache/m && sleep 3600"],
               volumeMounts=[{"name": "cache", "mountPath": "/cache"}])
    spec["spec"]["volumes"] = [{"name": "cache", "hostPath": {"path": "/var/lib/llmops/rn-test", "type": "DirectoryOrCreate"}}]
    core.create_namespaced_pod(ns, spec)
    wait_ready(core, ns, "writer")
    node_copy = StateDir(real["root"]).node_root("edge-1") / "var/lib/llmops/rn-test/m"
    wait_for(lambda: node_copy.exists(), 10, f"{node_copy} not written")
    assert node_copy.read_text().strip() == marker
    assert not Path("/var/lib/llmops/rn-test/m").exists(), "the hostPath write leaked onto the host's /"
    assert not (StateDir(real["root"]).node_root("edge-0") / "var/lib/llmops/rn-test/m").exists()


def test_restart_back_off_is_the_kubelets(real, ns):
    core = real["core"]
    core.create_namespaced_pod(ns, pod("crash", "dc", "llmops/busybox:1", ["sh", "-c", "echo boom; exit 3"]))

    def backing_off():
        st = core.read_namespaced_pod("crash", ns).status.container_statuses
        return st and st[0].restart_count >= 1 and st[0].state.waiting and st[0].state.waiting.reason == "CrashLoopBackOff"
    wait_for(backing_off, 60, "the crashing container never reached CrashLoopBackOff")
    st = core.read_namespaced_pod("crash", ns).status.container_statuses[0]
    assert st.last_state.terminated.exit_code == 3


def test_zz_down_leaves_nothing_behind(real):
    """Runs last in this module (name order): takes the real-node sandbox down and checks."""
    root = real["root"]
    lifecycle.down(root, progress=lambda m: None)
    left = realnodes.leftovers(root, BRIDGE, POD_CIDR, real["cgroup_prefix"])
    assert not left, "left behind by `down`:\n" + "\n".join(left)
    assert realnodes.host_iptables() == real["iptables_before"], "the host's iptables rules changed"
    assert not cgroups.leftovers(real["cgroup_prefix"])
