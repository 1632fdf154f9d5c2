"""A multi-node vLLM group as plain pods on the sandbox: the leader's `/bin/sh -c` launcher runs
the simulator with its vllm serve args over the group's GPUs, the worker's `ray start` runs the
simulated Ray worker, both on the two 1-GPU nodes of one edge site; the worker stops on SIGTERM."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from llmops.waiting import wait_for
from llmops_sandbox.processes import alive

pytestmark = pytest.mark.cluster

TIMEOUT = 30
IMAGE = "vllm/vllm-openai:v0.11.0"
SITE_A = {"topology.kubernetes.io/zone": "sandbox-edge-site-a"}
EDGE_TOLERATION = {"key": "llmops.io/edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
LEADER_SCRIPT = 'ray start --head --port=6379 && exec vllm serve "$@"'


@pytest.fixture(autouse=True)
def _sandbox_only(sandbox):
    sandbox.require_sandbox("runs the sandbox's simulator image and reads its nodes' containerd")


def group_pod(name, role, container, grace=30):
    container = {"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": "1"}}, **container}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"llmops.io/role": role}},
            "spec": {"containers": [container], "nodeSelector": SITE_A, "tolerations": [EDGE_TOLERATION],
                     "terminationGracePeriodSeconds": grace}}


def pod_json(core, namespace, name):
    return json.loads(core.read_namespaced_pod(name, namespace, _preload_content=False).data)


def wait_ready(core, namespace, name):
    def ready():
        pod = pod_json(core, namespace, name)
        conditions = pod.get("status", {}).get("conditions") or ()
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and pod
    return wait_for(ready, TIMEOUT, f"pod {namespace}/{name} did not become Ready")


def test_leader_and_worker_of_a_two_node_group_run_on_one_edge_site(core, namespace, sandbox):
    group_env = [{"name": "LLMOPS_GROUP_SIZE", "value": "2"}, {"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "0"}]
    core.create_namespaced_pod(namespace, group_pod("grp-leader", "leader", {
        "command": ["/bin/sh", "-c", LEADER_SCRIPT, "vllm-leader"],
        "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--port", "8000", "--tensor-parallel-size", "1",
                 "--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray"],
        "env": [*group_env, {"name": "LLMOPS_GROUP_INDEX", "value": "0"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1},
    }))
    leader = wait_ready(core, namespace, "grp-leader")
    leader_ip = leader["status"]["podIP"]

    core.create_namespaced_pod(namespace, group_pod("grp-worker", "worker", {
        "command": ["ray", "start", "--block", "--address=$(LLMOPS_LEADER_ADDRESS):6379"],
        "env": [*group_env, {"name": "LLMOPS_GROUP_INDEX", "value": "1"},
                {"name": "LLMOPS_LEADER_ADDRESS", "value": leader_ip}],
    }))
    worker = wait_ready(core, namespace, "grp-worker")

    nodes = {leader["spec"]["nodeName"], worker["spec"]["nodeName"]}
    assert nodes == {"edge-a-l4-0", "edge-a-l4-1"}  # one GPU each: the group needs both nodes of site a
    log = wait_for(lambda: (text := core.read_namespaced_pod_log("grp-worker", namespace, container="vllm"))
                   and "joining" in text and text, TIMEOUT, "worker logged nothing")
    assert f"worker 1 of a 2-node group joining the Ray cluster at {leader_ip}:6379 with 1 x NVIDIA-L4" in log

    # The worker exits on SIGTERM at once, well inside the 30 s grace period.
    pid = sandbox.container_pid(pod_json(core, namespace, "grp-worker"), "vllm")
    core.delete_namespaced_pod("grp-worker", namespace)
    wait_for(lambda: not alive(pid), 10, "the worker was still running 10 s after deletion (did `sim worker` ignore "
             "SIGTERM?)")

    def gone():
        try:
            core.read_namespaced_pod("grp-worker", namespace)
            return False
        except client.ApiException as exc:
            return exc.status == 404
    wait_for(gone, TIMEOUT, "the worker pod object was not removed after its container stopped")
