"""The autoscaler's actuator decisions, against a recording Kube and a scripted Prometheus:
what it writes (/scale, its own status share under its own field manager) and what not."""

from __future__ import annotations

import asyncio

from recording_kube import RecordingKube

from llmops.autoscale.actuator import AUTOSCALER_MANAGER, Scaled, autoscale_once
from llmops.autoscale.prometheus import OutcomeKind, QueryOutcome, Sample
from llmops.render.meta import DEPLOYMENT_LABEL
from llmops_testing.samples import sim_deployment

NOW = 1_800_000_000.0


class ScriptedPrometheus:
    """Every query answers `value` (fresh), or Prometheus is unreachable."""

    def __init__(self, value=None):
        self.value, self.queries = value, []

    async def instant_query(self, promql, *, at=None):
        self.queries.append(promql)
        if self.value is None:
            return QueryOutcome(OutcomeKind.unreachable, promql, message="connection refused")
        return QueryOutcome(OutcomeKind.ok, promql, (Sample({}, self.value, NOW),))


def body(replicas=1, status=None):
    b = sim_deployment("chat", "ns", replicas=replicas, autoscaling={
        "minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "waitingRequests", "target": 2}],
        "behavior": {"evaluationIntervalSeconds": 2, "scaleUpStabilizationSeconds": 0}})
    b["metadata"]["uid"] = "u"
    if status is not None:
        b["status"] = status
    return b


def ready_pod(i):
    return {"metadata": {"name": f"chat-{i}", "namespace": "ns", "labels": {DEPLOYMENT_LABEL: "chat"},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"ready": True, "state": {"running": {"startedAt": "2026-01-01T00:00:10Z"}}}]}}


def status_writes(kube):
    return [c for c in kube.calls if c[0] == "apply_status"]


def test_without_prometheus_it_holds_and_keeps_its_state():
    held = {"autoscaling": {"lastEvaluatedAt": 0, "history": [{"time": "t"}]}}
    kube = RecordingKube()
    assert asyncio.run(autoscale_once(kube, None, body(status=held), NOW)) is None
    [(_, manager, status)] = status_writes(kube)
    assert manager == AUTOSCALER_MANAGER
    assert set(status) == {"conditions", "autoscaling"}, "only the autoscaler's own fields"
    assert status["autoscaling"] == held["autoscaling"], "leaving it out would give the state up"
    assert status["conditions"][0]["reason"] == "PrometheusNotConfigured"
    assert not [c for c in kube.calls if c[0] == "scale"]


def test_unreachable_prometheus_holds_the_replica_count():
    kube = RecordingKube(pods=[ready_pod(0), ready_pod(1)])
    result = asyncio.run(autoscale_once(kube, ScriptedPrometheus(None), body(replicas=2), NOW))
    assert not isinstance(result, Scaled)
    assert not [c for c in kube.calls if c[0] == "scale"]
    [(_, manager, status)] = status_writes(kube)
    assert manager == AUTOSCALER_MANAGER and status["conditions"][0]["status"] == "False"
    assert set(status) <= {"conditions", "autoscaling"}


def test_a_queue_above_target_scales_through_the_scale_subresource():
    kube = RecordingKube(pods=[ready_pod(0)])
    result = asyncio.run(autoscale_once(kube, ScriptedPrometheus(6.0), body(replicas=1), NOW))
    assert isinstance(result, Scaled) and result.scaled_from == 1 and result.scaled_to > 1
    assert ("scale", result.scaled_to) in kube.calls
    [(_, manager, status)] = status_writes(kube)
    assert manager == AUTOSCALER_MANAGER and status["autoscaling"]["history"]


def test_not_due_means_no_query_and_no_write():
    prometheus = ScriptedPrometheus(6.0)
    kube = RecordingKube()
    asyncio.run(autoscale_once(kube, prometheus, body(status={"autoscaling": {"lastEvaluatedAt": NOW - 1}}), NOW))
    assert not kube.writes() and not prometheus.queries


def test_pods_from_the_cache_are_not_listed_again():
    kube = RecordingKube()
    asyncio.run(autoscale_once(kube, ScriptedPrometheus(6.0), body(replicas=1), NOW, pods=[ready_pod(0)]))
    assert not [c for c in kube.calls if c[0] == "list_pods"]
    assert [c for c in kube.calls if c[0] == "scale"]
