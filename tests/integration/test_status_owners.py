"""Status has owners: the reconciler and the autoscaler write /status concurrently against the
real API server (server-side apply, one field manager each) and neither loses nor rolls back
the other's fields. No operator runs here: the writers are driven directly."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client, watch

from llmops.autoscale.actuator import AUTOSCALER_MANAGER, autoscaler_status
from llmops.kube import Kube
from llmops.planner.sharding import resolve_sharding
from llmops.status import RECONCILER_MANAGER, Observed, compute_status
from llmops_testing.samples import sim_deployment
from llmops.validation import api_view, validate_manifest

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
ROUNDS = 30


def _workload(ready: int) -> dict:
    return {"metadata": {"generation": 1}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": ready, "updatedReplicas": 1}}


def _autoscaling(seq: int) -> dict:
    # `seq` stands for the window state: a rollback would make it go down.
    return {"desiredReplicas": 2, "seq": seq, "history": [{"time": f"t{i}"} for i in range(max(0, seq - 9), seq + 1)]}


def test_concurrent_reconciler_and_autoscaler_lose_nothing(api_client, crd_installed, namespace):
    kube = Kube(api_client)
    crs = client.CustomObjectsApi(api_client)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, sim_deployment("chat", namespace))
    stale = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")  # no status yet
    d = validate_manifest(api_view(stale))
    sharding, _ = resolve_sharding(d)
    seen: list[dict] = []
    watching = threading.Event()

    def record() -> None:
        w = watch.Watch()
        stream = w.stream(crs.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                          field_selector="metadata.name=chat", timeout_seconds=60)
        watching.set()
        for event in stream:
            seen.append(event["object"].get("status") or {})
            status = seen[-1]
            if (status.get("autoscaling") or {}).get("seq") == ROUNDS - 1 and status.get("readyReplicas") == ROUNDS % 2:
                w.stop()

    def reconciler() -> None:
        for i in range(ROUNDS + 1):  # status computed from the stale body, as a slow reconcile would
            status = compute_status(d, Observed(workload=_workload(i % 2)), sharding, stale.get("status"),
                                    f"2026-01-01T00:00:{i:02d}Z")
            kube.apply_llmdeployment_status("chat", namespace, status, RECONCILER_MANAGER)

    def autoscaler() -> None:
        for i in range(ROUNDS):
            condition = {"type": "Autoscaling", "status": "True", "reason": "ScaledUp", "message": f"round {i}"}
            kube.apply_llmdeployment_status("chat", namespace, autoscaler_status(
                stale.get("status") or {}, condition, f"2026-01-01T00:01:{i:02d}Z", _autoscaling(i)), AUTOSCALER_MANAGER)

    watcher = threading.Thread(target=record, daemon=True)
    watcher.start()
    assert watching.wait(10), "the watch on the LLMDeployment did not open"
    writers = [threading.Thread(target=reconciler), threading.Thread(target=autoscaler)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    watcher.join(30)

    final = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")["status"]
    assert final["autoscaling"] == _autoscaling(ROUNDS - 1), "the autoscaler's last state was lost"
    assert final["readyReplicas"] == ROUNDS % 2, "the reconciler's last counts were lost"
    by_type = {c["type"]: c for c in final["conditions"]}
    assert set(by_type) == {"Ready", "Progressing", "Degraded", "Autoscaling"}
    assert by_type["Autoscaling"]["message"] == f"round {ROUNDS - 1}"

    # Every version the API server stored: the autoscaler's state only moves forward and,
    # once written, neither its state nor its condition is ever dropped by the other writer.
    seqs = [s["autoscaling"]["seq"] if "autoscaling" in s else None for s in seen]
    first = next(i for i, v in enumerate(seqs) if v is not None)
    assert None not in seqs[first:], "a reconciler write removed status.autoscaling"
    assert seqs[first:] == sorted(seqs[first:]), f"autoscaler state rolled back: {seqs}"
    kept = [any(c["type"] == "Autoscaling" for c in s.get("conditions") or []) for s in seen[first:]]
    assert all(kept), "a reconciler write dropped the Autoscaling condition"
    assert len(seen) >= ROUNDS, f"expected to observe each write, saw {len(seen)} versions"


def test_a_writer_stops_owning_what_it_no_longer_sends(api_client, crd_installed, namespace):
    """Turning pre-staging off removes the ModelStaged condition (the reconciler stopped sending
    it) while the autoscaler's condition stays: server-side apply, not merge-and-keep."""
    kube = Kube(api_client)
    crs = client.CustomObjectsApi(api_client)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, sim_deployment("chat", namespace))
    stage = [{"type": "ModelStaged", "status": "False", "reason": "Staging"}]
    kube.apply_llmdeployment_status("chat", namespace, {"phase": "Pending", "conditions": stage}, RECONCILER_MANAGER)
    kube.apply_llmdeployment_status("chat", namespace, autoscaler_status(
        {}, {"type": "Autoscaling", "status": "False", "reason": "MetricsStale", "message": "old"}, "t"), AUTOSCALER_MANAGER)
    kube.apply_llmdeployment_status("chat", namespace, {"phase": "Ready", "conditions": [
        {"type": "Ready", "status": "True", "reason": "AllReplicasReady"}]}, RECONCILER_MANAGER)
    status = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")["status"]
    assert sorted(c["type"] for c in status["conditions"]) == ["Autoscaling", "Ready"]
    assert status["phase"] == "Ready"
