"""`llmops load --service NS/NAME` against the sandbox's real API server: requests are
balanced over the Service's ready endpoints (simulated vLLM pods in their own network
namespaces), and the list follows pods as they go away."""

from __future__ import annotations

import pytest
from kubernetes import client

from llmops_load.generator import LoadConfig, run_load_sync
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

TIMEOUT = 60


@pytest.fixture(autouse=True)
def _sandbox_only(sandbox):
    sandbox.require_sandbox("runs vllm/vllm-openai pods as simulators on the sandbox's nodes")


def vllm_pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "llm"}}, "spec": {
        "terminationGracePeriodSeconds": 5,
        "containers": [{
            "name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
            "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--served-model-name", "qwen", "--port", "8000"],
            "env": [{"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "0.5"}],
            "ports": [{"containerPort": 8000, "name": "http"}],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},  # without a GPU it fails, like vLLM
            "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1},
        }]}}


def ready_ips(core, namespace):
    endpoints = core.read_namespaced_endpoints("llm", namespace)
    return {a.ip for s in endpoints.subsets or () for a in s.addresses or ()}


def pods_report(core, sandbox, namespace) -> str:
    lines = []
    for pod in core.list_namespaced_pod(namespace).items:
        statuses = pod.status.container_statuses or []
        lines.append(f"{pod.metadata.name}: phase={pod.status.phase} ip={pod.status.pod_ip} "
                     f"states={[s.state.to_dict() for s in statuses]}")
        lines.append(sandbox.pod_log(namespace, pod.metadata.name, "vllm")[-1500:])
    return "\n".join(lines)


def test_requests_are_balanced_over_ready_endpoints_and_follow_pod_changes(api_client, kubeconfig, namespace,
                                                                           sandbox):
    core = client.CoreV1Api(api_client)
    for i in range(2):
        core.create_namespaced_pod(namespace, vllm_pod(f"llm-{i}"))
    core.create_namespaced_service(namespace, {"metadata": {"name": "llm"}, "spec": {
        "selector": {"app": "llm"}, "ports": [{"name": "http", "port": 80, "targetPort": 8000}]}})
    try:
        ips = wait_for(lambda: len(ready_ips(core, namespace)) == 2 and ready_ips(core, namespace), TIMEOUT,
                       "the Service did not get two ready simulator endpoints")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{pods_report(core, sandbox, namespace)}") from None

    config = dict(service=f"{namespace}/llm", kubeconfig=kubeconfig, concurrency=2, duration=20, max_requests=10,
                  max_tokens=4, progress_interval=0)
    report = run_load_sync(LoadConfig(**config))
    assert report.requests_ok == 10 and not report.errors
    assert report.targets == {f"http://{ip}:8000": 5 for ip in ips}  # round-robin over both pods

    core.delete_namespaced_pod("llm-1", namespace)
    wait_for(lambda: len(ready_ips(core, namespace)) == 1, TIMEOUT, "endpoints did not drop the deleted pod")
    report = run_load_sync(LoadConfig(**config))
    assert report.requests_ok == 10 and len(report.targets) == 1
