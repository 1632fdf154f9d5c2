"""Status is computed from what children report; conditions are honest."""

from __future__ import annotations

from llmops.render import ResolvedSharding
from llmops.api.v1alpha1 import LLMDeploymentStatus
from llmops.status import Observed, compute_status, status_changed
from llmops.validation import validate_manifest

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def make(replicas=2, generation=4):
    return validate_manifest({
        "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment",
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "spec": {"model": {"source": "hf://a/b"}, "sharding": {"tensorParallelSize": 1}, "replicas": replicas},
    })


def workload(desired=2, ready=0, updated=None, replicas=None, generation=1, observed=1):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": desired},
        "status": {"replicas": desired if replicas is None else replicas, "readyReplicas": ready,
                   "updatedReplicas": desired if updated is None else updated, "observedGeneration": observed},
    }


def pending_pod(message="0/4 nodes are available: 4 Insufficient nvidia.com/gpu."):
    return {"metadata": {"name": "m-abc"}, "status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}}


def conds(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def status_of(d, observed, previous=None, now=NOW):
    return compute_status(d, observed, ResolvedSharding(2, 1), previous, now)


def test_all_ready_is_ready():
    s = status_of(make(), Observed(workload=workload(ready=2)))
    assert s["phase"] == "Ready"
    assert conds(s) == {"Ready": ("True", "AllReplicasReady"), "Progressing": ("False", "RolloutComplete"),
                        "Degraded": ("False", "AsExpected")}
    assert (s["replicas"], s["readyReplicas"]) == (2, 2)
    assert s["selector"] == "app.kubernetes.io/instance=m,app.kubernetes.io/name=llmops-vllm"
    assert s["endpoint"] == "http://m.ns.svc.cluster.local:8000/v1"
    assert (s["tensorParallelSize"], s["pipelineParallelSize"], s["observedGeneration"]) == (2, 1, 4)


def test_rolling_out_is_progressing_not_ready():
    s = status_of(make(), Observed(workload=workload(ready=2, updated=1, generation=2, observed=2)))
    assert s["phase"] == "Progressing"
    assert conds(s)["Progressing"] == ("True", "RollingOut")
    assert conds(s)["Ready"] == ("True", "PartiallyReady")


def test_stale_workload_generation_is_progressing():
    s = status_of(make(), Observed(workload=workload(ready=2, generation=3, observed=2)))
    assert conds(s)["Progressing"] == ("True", "RollingOut")


def test_loading_pods_are_not_capacity():
    s = status_of(make(), Observed(workload=workload(ready=0)))
    assert s["phase"] == "Progressing"
    assert conds(s)["Ready"] == ("False", "NoReplicasReady")
    assert conds(s)["Progressing"] == ("True", "WaitingForReplicas")


def test_unschedulable_pod_degrades_with_scheduler_message():
    s = status_of(make(), Observed(workload=workload(ready=1), pods=[pending_pod()]))
    assert s["phase"] == "Degraded"
    degraded = next(c for c in s["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in degraded["message"]


def test_crash_looping_container_degrades():
    pod = {"metadata": {"name": "m-x"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "vllm", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}}]}}
    s = status_of(make(), Observed(workload=workload(ready=0), pods=[pod]))
    assert conds(s)["Degraded"] == ("True", "CrashLoopBackOff")


def test_no_workload_yet_is_pending():
    s = status_of(make(), Observed())
    assert s["phase"] == "Pending" and conds(s)["Progressing"] == ("True", "Creating")


def test_scaled_to_zero():
    s = status_of(make(replicas=0), Observed(workload=workload(desired=0, ready=0, replicas=0)))
    assert s["phase"] == "ScaledToZero"
    assert conds(s)["Ready"] == ("False", "ScaledToZero")


def test_transition_time_moves_only_when_status_changes():
    d = make()
    first = status_of(d, Observed(workload=workload(ready=0)))
    same = status_of(d, Observed(workload=workload(ready=1)), previous=first, now=LATER)
    ready_first = next(c for c in first["conditions"] if c["type"] == "Ready")
    ready_same = next(c for c in same["conditions"] if c["type"] == "Ready")
    assert ready_first["status"] == "False" and ready_same["status"] == "True"
    assert ready_same["lastTransitionTime"] == LATER
    progressing = [next(c for c in s["conditions"] if c["type"] == "Progressing") for s in (first, same)]
    assert progressing[1]["lastTransitionTime"] == NOW  # stayed True


def test_the_autoscalers_fields_are_never_written_back():
    # A stale copy of the autoscaler's state must not be re-sent: that rolled back its windows.
    previous = {"autoscaling": {"desiredReplicas": 3},
                "conditions": [{"type": "Autoscaling", "status": "False", "reason": "MetricsStale"}]}
    s = status_of(make(), Observed(workload=workload(ready=2)), previous=previous)
    assert "autoscaling" not in s
    assert [c["type"] for c in s["conditions"]] == ["Ready", "Progressing", "Degraded"]


def test_another_writers_condition_is_not_a_change():
    first = status_of(make(), Observed(workload=workload(ready=2)))
    held = {**first, "conditions": first["conditions"] + [{"type": "Autoscaling", "status": "True", "reason": "x"}],
            "autoscaling": {"desiredReplicas": 2}}
    assert not status_changed(held, first)
    moved = {**first, "conditions": [{**c, "reason": "Other"} if c["type"] == "Ready" else c for c in first["conditions"]]}
    assert status_changed(moved, first)


def test_an_empty_message_is_left_out():
    # A 1.20 API server reads message "" as null and refuses the whole status write.
    from llmops.api.v1alpha1 import Condition
    from llmops.conditions import merge_condition
    merged = merge_condition([], Condition(type="Ready", status="True", reason="AllReplicasReady", message=""), NOW)
    assert "message" not in LLMDeploymentStatus(conditions=[merged]).to_patch()["conditions"][0]


# -- model pre-staging -------------------------------------------------------------------

def staged(**prestage):
    d = make(replicas=1)
    return validate_manifest({**d.model_dump(by_alias=True, exclude_none=True),
                              "spec": {**d.spec.to_wire(), "model": {"source": "hf://a/b", "prestage": {"enabled": True, **prestage}}}})


def daemonset(desired, ready, generation=1, observed=1):
    return {"metadata": {"generation": generation},
            "status": {"desiredNumberScheduled": desired, "numberReady": ready, "observedGeneration": observed}}


def model_staged(status):
    return next(((c["status"], c["reason"], c.get("message", "")) for c in status["conditions"]
                 if c["type"] == "ModelStaged"), None)


def test_model_staged_counts_nodes_holding_a_checked_copy():
    d = staged()
    assert model_staged(status_of(d, Observed(workload=workload(1)))) == (
        "False", "Creating", "creating the model-stage DaemonSet")
    partial = model_staged(status_of(d, Observed(workload=workload(1), staging=daemonset(4, 1))))
    assert partial[:2] == ("False", "Staging") and "1/4 eligible nodes" in partial[2]
    assert model_staged(status_of(d, Observed(workload=workload(1), staging=daemonset(4, 4))))[:2] == ("True", "Staged")
    # A DaemonSet the controller has not caught up with is not "staged" yet.
    assert model_staged(status_of(d, Observed(workload=workload(1), staging=daemonset(4, 4, 2, 1))))[0] == "False"


def test_no_eligible_node_and_a_failing_stager_are_explained():
    d = staged()
    nowhere = model_staged(status_of(d, Observed(workload=workload(1), staging=daemonset(0, 0))))
    assert nowhere[:2] == ("False", "NoEligibleNodes") and "spec.placement" in nowhere[2]
    crashing = {"metadata": {"name": "edge-llama-stage-x"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "stage", "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                "message": "error: cannot list org/m@main: 401"}}}]}}
    failing = model_staged(status_of(d, Observed(workload=workload(1), staging=daemonset(2, 1), stage_pods=[crashing])))
    assert failing[:2] == ("False", "CrashLoopBackOff") and "401" in failing[2] and "1/2" in failing[2]


def test_a_serving_pod_whose_init_container_crashes_makes_the_deployment_degraded():
    pod = {"metadata": {"name": "m-1"}, "status": {"phase": "Pending", "initContainerStatuses": [
        {"name": "model-stage-wait", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "damaged"}}}]}}
    status = status_of(staged(), Observed(workload=workload(1), pods=[pod], staging=daemonset(1, 1)))
    assert conds(status)["Degraded"] == ("True", "CrashLoopBackOff")


def test_turning_prestage_off_drops_the_condition():
    before = status_of(staged(), Observed(workload=workload(1), staging=daemonset(1, 1)))
    after = status_of(make(replicas=1), Observed(workload=workload(1)), previous=before)
    assert model_staged(before) and model_staged(after) is None


def test_a_crash_loop_shows_what_the_process_said_last():
    pod = {"metadata": {"name": "m-1"}, "status": {"phase": "Running", "containerStatuses": [{
        "name": "vllm", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"}},
        "lastState": {"terminated": {"exitCode": 1, "message": "INFO loading\ntorch.OutOfMemoryError: CUDA out of memory\n"}},
    }]}}
    status = status_of(make(replicas=1), Observed(workload=workload(1), pods=[pod]))
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["message"] == "pod m-1 container vllm: CrashLoopBackOff: torch.OutOfMemoryError: CUDA out of memory"
