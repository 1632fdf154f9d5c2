"""reconcile's decisions, against a recording fake of the thin Kube interface: what it applies,
prunes, deletes and writes to status, and what it leaves alone."""

from __future__ import annotations

import copy

from recording_kube import RecordingKube

from llmops.groups import MEMBERS_ANNOTATION
from llmops.inventory import GPUNode
from llmops.reconcile import reconcile, refresh_status
from llmops.render import ClusterCapabilities
from llmops.render.meta import DEPLOYMENT_LABEL
from llmops.status import RECONCILER_MANAGER
from llmops_testing.samples import sim_deployment

CAPS = ClusterCapabilities()
UID = "uid-chat"


def body(**spec) -> dict:
    b = sim_deployment("chat", "ns", **spec)
    b["metadata"].update(uid=UID, generation=1)
    return b


def kinds(calls, verb):
    return sorted(c[1] for c in calls if c[0] == verb)


def owned(kind: str, name: str, uid: str = UID) -> dict:
    return {"apiVersion": "apps/v1" if kind != "Service" else "v1", "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "labels": {DEPLOYMENT_LABEL: "chat"},
                         "ownerReferences": [{"uid": uid}]}}


def test_a_new_deployment_applies_every_child_and_writes_its_own_status_share():
    kube = RecordingKube()
    outcome = reconcile(kube, body(), CAPS)
    assert kinds(kube.calls, "apply") == ["Deployment", "PodDisruptionBudget", "Service"]
    assert not kube.writes("delete") and not kube.writes("delete_pod")
    [(_, manager, status)] = kube.writes("apply_status")
    assert manager == RECONCILER_MANAGER
    assert "autoscaling" not in status, "the reconciler must never write the autoscaler's fields"
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded"}
    assert status["observedGeneration"] == 1 and status["phase"] != "Ready"  # no pod serves yet
    assert [n.reason for n in outcome.notes].count("Created") == 3


def test_children_no_longer_rendered_are_pruned_but_only_our_own():
    stale = owned("StatefulSet", "chat-leader")                 # left from a multi-node shape
    foreign = owned("StatefulSet", "chat-other", uid="someone-else")  # same label, other owner
    kube = RecordingKube([stale, foreign])
    outcome = reconcile(kube, body(), CAPS)
    assert kube.writes("delete") == [("delete", "StatefulSet", "chat-leader")]
    assert any(n.reason == "Deleted" for n in outcome.notes)


def test_an_invalid_spec_applies_nothing_and_reports_failed_once():
    bad = body(engine={"image": "llmops/vllm-sim:latest", "extraArgs": ["--tensor-parallel-size", "2"]})
    kube = RecordingKube()
    outcome = reconcile(kube, bad, CAPS)
    assert outcome.invalid and "extraArgs" in outcome.invalid
    assert not kube.writes("apply"), "a refused spec must not be half-applied"
    [(_, manager, status)] = kube.writes("apply_status")
    assert manager == RECONCILER_MANAGER and status["phase"] == "Failed"
    assert {c["reason"] for c in status["conditions"]} == {"InvalidSpec"}
    # The same refusal again: status already says so, nothing is written.
    again = RecordingKube()
    reconcile(again, {**bad, "status": status}, CAPS)
    assert not again.writes("apply_status")


def test_a_malformed_object_yields_invalid_spec_not_an_exception():
    # A privileged client stored a wrong JSON type that the schema would have refused.
    mangled = body()
    mangled["spec"]["replicas"] = {"not": "a number"}
    kube = RecordingKube()
    outcome = reconcile(kube, mangled, CAPS)
    assert outcome.invalid and "replicas" in outcome.invalid
    assert kube.writes("apply_status")[0][2]["phase"] == "Failed"


def test_unchanged_status_is_not_written_again():
    kube = RecordingKube()
    reconcile(kube, body(), CAPS)
    status = kube.writes("apply_status")[0][2]
    second = RecordingKube(list(kube.objects.values()))
    reconcile(second, {**body(), "status": copy.deepcopy(status)}, CAPS)
    assert not second.writes("apply_status")
    assert not [n for n in reconcile(second, {**body(), "status": status}, CAPS).notes if n.reason == "Updated"]


def test_a_status_refresh_applies_no_children():
    kube = RecordingKube()
    refresh_status(kube, body(), CAPS)
    assert not kube.writes("apply") and not kube.writes("delete")
    assert kube.writes("apply_status")[0][1] == RECONCILER_MANAGER


def _pod(name: str, uid: str, role: str, group=None, gate=None, members=None) -> dict:
    labels = {DEPLOYMENT_LABEL: "chat", "llmops.io/role": role, **({"llmops.io/group": str(group)} if group is not None else {})}
    conditions = [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "True"}]
    if gate:
        conditions.append({"type": "llmops.io/group-ready", "status": gate})
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": labels,
                         "annotations": {MEMBERS_ANNOTATION: members} if members else {}},
            "status": {"phase": "Running", "conditions": conditions, "containerStatuses": [{"restartCount": 0}]}}


def test_group_restarts_delete_exactly_the_observed_pods_by_uid():
    multi = body(sharding={"tensorParallelSize": 1, "pipelineParallelSize": 2, "allowMultiNode": True},
                 resources={"gpu": {"type": "NVIDIA-L4"}})
    nodes = [GPUNode.from_node(f"edge-{i}", {"nvidia.com/gpu.product": "NVIDIA-L4"}, {},
                               {"allocatable": {"nvidia.com/gpu": "1"}}) for i in range(2)]  # one GPU each
    leader = _pod("chat-leader-0", "l0", "leader", gate="True", members="l0:0,w0:0")
    replacement = _pod("chat-workers-0-0", "w0-new", "worker", group=0)  # w0 was replaced
    kube = RecordingKube(pods=[leader, replacement])
    outcome = reconcile(kube, multi, CAPS, nodes)
    assert "StatefulSet" in kinds(kube.calls, "apply"), "expected the group (StatefulSet) rendering"
    assert sorted(kube.writes("delete_pod")) == [("delete_pod", "chat-leader-0", "l0"),
                                                 ("delete_pod", "chat-workers-0-0", "w0-new")]
    assert any(n.reason == "GroupRestarted" for n in outcome.notes)


def test_notes_of_one_reason_become_one_event():
    from llmops.reconcile import Note, merge_notes
    notes = [Note("Normal", "Created", "created Deployment/chat"), Note("Normal", "Created", "created Service/chat"),
             Note("Warning", "GroupRestarted", "restarting group 0")]
    assert merge_notes(notes) == [Note("Normal", "Created", "created Deployment/chat; created Service/chat"),
                                  Note("Warning", "GroupRestarted", "restarting group 0")]


def test_groups_recorded_as_statefulsets_stay_so_when_lws_appears():
    multi = body(sharding={"tensorParallelSize": 1, "pipelineParallelSize": 2, "allowMultiNode": True},
                 resources={"gpu": {"type": "NVIDIA-L4"}})
    nodes = [GPUNode.from_node(f"edge-{i}", {"nvidia.com/gpu.product": "NVIDIA-L4"}, {},
                               {"allocatable": {"nvidia.com/gpu": "1"}}) for i in range(2)]
    with_lws = ClusterCapabilities(leader_worker_set=True)
    fresh = RecordingKube()
    reconcile(fresh, multi, with_lws, nodes)
    assert "LeaderWorkerSet" in kinds(fresh.calls, "apply")  # a new deployment uses what exists
    kept = RecordingKube()
    outcome = reconcile(kept, {**multi, "status": {"groupBackend": "StatefulSet"}}, with_lws, nodes)
    assert "LeaderWorkerSet" not in kinds(kept.calls, "apply") and "StatefulSet" in kinds(kept.calls, "apply")
    status = kept.writes("apply_status")[0][2]
    assert status["groupBackend"] == "StatefulSet"
    backend = next(c for c in status["conditions"] if c["type"] == "GroupBackend")
    assert backend["reason"] == "KeptStatefulSets" and "llmops.io/group-backend" in backend["message"]
    assert not [n for n in outcome.notes if n.reason == "GroupBackendChanged"]


def test_with_caches_a_just_created_workload_defers_the_status_write_to_its_first_event():
    from llmops.snapshot import Snapshot
    kinds_cached = ("Deployment", "Service", "PodDisruptionBudget", "StatefulSet", "DaemonSet")
    kube = RecordingKube()
    reconcile(kube, body(), CAPS, snapshot=Snapshot.of([], [], kinds_cached))
    assert kinds(kube.calls, "apply") == ["Deployment", "PodDisruptionBudget", "Service"]
    assert not kube.writes("apply_status") and not [c for c in kube.calls if c[0] in ("get", "list", "list_pods")]
    # The Deployment's first status event: the next reconcile applies nothing and writes status.
    cached = Snapshot.of(list(kube.objects.values()), [], kinds_cached)
    again = RecordingKube()
    reconcile(again, body(), CAPS, snapshot=cached)
    assert not again.writes("apply"), "the cache shows the children as rendered"
    assert again.writes("apply_status") and not [c for c in again.calls if c[0] in ("get", "list", "list_pods")]


def test_with_the_activator_a_routed_service_the_cache_shows_is_not_applied_again():
    from llmops.render.meta import selector_labels
    from llmops.snapshot import Snapshot
    from llmops.validation import validate_manifest
    caps = ClusterCapabilities(activator="llmops-system/llmops-activator")
    kinds_cached = ("Deployment", "Service", "PodDisruptionBudget", "StatefulSet", "DaemonSet")
    b = body(activator={"enabled": True})
    labels = selector_labels(validate_manifest(b))
    ready = {"metadata": {"name": "chat-0", "namespace": "ns", "uid": "p0", "labels": labels},
             "status": {"podIP": "10.1.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}
    first = RecordingKube(pods=[ready])
    reconcile(first, b, caps, snapshot=Snapshot.of([], [ready], kinds_cached))
    assert kinds(first.calls, "apply") == ["Deployment", "PodDisruptionBudget", "Service"], \
        "with a Ready replica the Service selects the pods: no Endpoints of ours, and one apply each"
    cached = Snapshot.of(list(first.objects.values()), [ready], kinds_cached)
    again = RecordingKube(pods=[ready])
    reconcile(again, b, caps, snapshot=cached)
    refresh_status(again, b, caps, snapshot=cached)
    assert not again.writes("apply"), "the cache shows the routed Service: neither path applies it again"
