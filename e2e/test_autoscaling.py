"""Autoscaling end to end: real Prometheus scraping simulated vLLM pods, load from
`llmops load`, the operator scaling through the LLMDeployment's /scale subresource."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from llmops_load.generator import LoadConfig, run_load_sync
from llmops_testing.kube import wait_for_event_reasons
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"


def manifest(namespace: str, min_replicas: int = 1, max_replicas: int = 3) -> dict:
    return {
        "apiVersion": "llmops.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "chat", "namespace": namespace},
        "spec": {
            "model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
            # A slowed-down engine with 2 sequences per replica queues up quickly.
            "engine": {"image": "llmops/vllm-sim:latest", "maxModelLen": 4096, "maxNumSeqs": 2,
                       "env": [{"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "1"},
                               {"name": "LLMOPS_SIM_SPEED", "value": "0.1"}]},
            "sharding": {"tensorParallelSize": 1},
            "replicas": max(min_replicas, 1),
            "autoscaling": {
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "metrics": [{"type": "waitingRequests", "target": 2}],
                "behavior": {
                    "evaluationIntervalSeconds": 2,
                    "scaleUpStabilizationSeconds": 0,
                    "scaleDownStabilizationSeconds": 8,
                    "scaleToZeroAfterSeconds": 6,
                    "metricsMaxAgeSeconds": 10,
                },
            },
        },
    }


class Load:
    """`llmops load` in a background thread, closed loop, stopping by itself."""

    def __init__(self, namespace: str, kubeconfig: str, users: int, seconds: float):
        self.config = LoadConfig(service=f"{namespace}/chat", kubeconfig=kubeconfig, concurrency=users,
                                 duration=seconds, prompt_tokens=64, max_tokens=48, timeout=60,
                                 progress_interval=0, endpoint_refresh=2)
        self.report = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.report = run_load_sync(self.config)

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=self.config.duration + 90)


def cr(crs, namespace):
    return crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")


def replicas(crs, namespace) -> int:
    return cr(crs, namespace)["spec"]["replicas"]


def ready_replicas(crs, namespace) -> int:
    return (cr(crs, namespace).get("status") or {}).get("readyReplicas") or 0


def autoscaling_condition(crs, namespace):
    conditions = (cr(crs, namespace).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Autoscaling"), None)


def test_load_scales_up_then_back_down_with_explained_decisions(e2e_operator, crs, api_client, kubeconfig, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(namespace))
    wait_for(lambda: ready_replicas(crs, namespace) == 1, 90, "first replica never became ready")
    started = time.monotonic()
    with Load(namespace, str(kubeconfig), users=12, seconds=45) as load:
        wait_for(lambda: replicas(crs, namespace) > 1, 45, "replicas did not go up under load")
        reaction = time.monotonic() - started
        wait_for(lambda: ready_replicas(crs, namespace) == 3, 60, "did not reach maxReplicas=3 ready under load")
        status = cr(crs, namespace)["status"]["autoscaling"]
        decision = status["lastDecision"]
        assert decision["metrics"][0]["name"] == "waitingRequests"
        assert decision["metrics"][0]["value"] is not None and decision["metrics"][0]["target"] == 2
        assert status["history"] and all(h["reason"] for h in status["history"])
    assert load.report is not None and load.report.requests_ok > 0
    assert len(load.report.targets) >= 2, f"load was not spread over the new replicas: {load.report.targets}"
    wait_for(lambda: replicas(crs, namespace) == 1, 60, "replicas did not come back to minReplicas after load")
    wait_for_event_reasons(client.CoreV1Api(api_client), namespace, "chat", {"ScaledUp", "ScaledDown"})
    print(f"reaction time from load start to first scale-up: {reaction:.1f}s")


def test_idle_deployment_scales_to_zero_and_wakes_on_annotation(e2e_operator, crs, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(namespace, min_replicas=0))
    wait_for(lambda: ready_replicas(crs, namespace) == 1, 90, "first replica never became ready")
    wait_for(lambda: replicas(crs, namespace) == 0, 60, "idle deployment with minReplicas 0 did not scale to zero")
    wait_for(lambda: (cr(crs, namespace).get("status") or {}).get("phase") == "ScaledToZero", 60,
             "phase did not become ScaledToZero")
    crs.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat",
                                       {"metadata": {"annotations": {"llmops.io/wake": "now-1"}}})
    wait_for(lambda: ready_replicas(crs, namespace) == 1, 90, "wake annotation did not bring a replica back")


def test_prometheus_outage_holds_replicas_and_recovers(e2e_operator, sandbox, crs, kubeconfig, namespace):
    sandbox.require_sandbox("stops and restarts the sandbox's Prometheus")
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(namespace))
    wait_for(lambda: ready_replicas(crs, namespace) == 1, 90, "first replica never became ready")
    wait_for(lambda: (autoscaling_condition(crs, namespace) or {}).get("status") == "True", 30,
             "autoscaler never became healthy")
    sandbox.stop_prometheus()
    try:
        with Load(namespace, str(kubeconfig), users=12, seconds=20):
            cond = wait_for(lambda: (c := autoscaling_condition(crs, namespace)) and c["status"] == "False" and c,
                            30, "Prometheus outage did not set the Autoscaling condition to False")
            assert cond["reason"] in ("MetricsUnavailable", "MetricsStale"), cond
            assert replicas(crs, namespace) == 1  # held, despite the load
    finally:
        sandbox.start_prometheus()
    wait_for(lambda: (autoscaling_condition(crs, namespace) or {}).get("status") == "True", 60,
             "autoscaler did not recover after Prometheus came back")
    with Load(namespace, str(kubeconfig), users=12, seconds=30):
        wait_for(lambda: replicas(crs, namespace) > 1, 40, "scaling did not resume after Prometheus returned")


def test_operator_restart_inside_the_scale_down_window_keeps_the_replicas(e2e_operator, sandbox, crs, kubeconfig,
                                                                          namespace):
    """Scale up under load, stop the load, restart the operator while the scale-down window
    still holds the replicas: the restarted operator must keep them until the window (whose
    state lives in status.autoscaling) runs out, then scale down. A restart that lost or rolled
    back that state would scale down at once."""
    sandbox.require_sandbox("restarts the operator process")
    window = 40
    body = manifest(namespace, min_replicas=1, max_replicas=3)
    body["spec"]["autoscaling"]["behavior"]["scaleDownStabilizationSeconds"] = window
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_for(lambda: ready_replicas(crs, namespace) == 1, 90, "first replica never became ready")
    with Load(namespace, str(kubeconfig), users=12, seconds=25):
        wait_for(lambda: replicas(crs, namespace) > 1, 45, "replicas did not go up under load")
    held = replicas(crs, namespace)
    load_stopped = time.monotonic()
    restarted_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    e2e_operator.restart()
    assert time.monotonic() - load_stopped < window / 2, "the restart took too long to land inside the window"

    def held_through_evaluations_since_restart() -> bool:
        current = cr(crs, namespace)
        if time.monotonic() - load_stopped < window - 10:  # well inside the window: must hold
            assert current["spec"]["replicas"] == held, (
                f"restart lost the scale-down window: {held} -> {current['spec']['replicas']} replicas")
        history = (current.get("status") or {}).get("autoscaling", {}).get("history", [])
        return len([h for h in history if h["time"] >= restarted_at]) >= 3 and \
            time.monotonic() - load_stopped >= window - 10

    wait_for(held_through_evaluations_since_restart, window + 20, "restarted operator did not resume autoscaling")
    wait_for(lambda: replicas(crs, namespace) < held, 60, "no scale-down after the window ran out")
