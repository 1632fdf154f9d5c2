"""Which watch events make an LLMDeployment need a reconcile, a status refresh, or nothing."""

from __future__ import annotations

from llmops.render.meta import DEPLOYMENT_LABEL
from llmops.routing import child_need, llmdeployment_need, owner_key, pod_need
from llmops.workqueue import FULL, STATUS

OWNER = {"metadata": {"name": "chat", "namespace": "ns", "generation": 3}, "spec": {"replicas": 2}}


def child(kind="Deployment", name="chat", replicas=2):
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "labels": {DEPLOYMENT_LABEL: "chat"}},
            "spec": {"replicas": replicas}}


def test_children_and_pods_route_to_their_owner_by_label():
    assert owner_key(child()) == ("ns", "chat")
    assert owner_key({"metadata": {"name": "x", "namespace": "ns", "labels": {}}}) is None


def test_a_new_generation_or_an_unseen_object_needs_a_full_reconcile_our_status_writes_do_not():
    assert llmdeployment_need(None, OWNER, None) == FULL         # start-up listing
    assert llmdeployment_need("MODIFIED", OWNER, 2) == FULL      # spec changed
    assert llmdeployment_need("MODIFIED", OWNER, 3) is None      # status-only update
    deleting = {"metadata": {**OWNER["metadata"], "deletionTimestamp": "t"}}
    assert llmdeployment_need("MODIFIED", deleting, None) is None


def test_any_change_to_a_child_needs_a_full_reconcile():
    # Cheap with the caches (unchanged children are not applied) and a hand edit is undone at once.
    assert child_need("DELETED", child(), OWNER) == FULL
    assert child_need("DELETED", child("Service"), OWNER) == FULL
    assert child_need("MODIFIED", child(replicas=5), OWNER) == FULL
    assert child_need("MODIFIED", child(), OWNER) == FULL


def test_creations_and_the_start_up_listing_need_nothing_and_unknown_owners_are_ignored():
    assert child_need("ADDED", child(), OWNER) is None
    assert child_need(None, child(), OWNER) is None
    assert child_need("DELETED", child(), None) is None  # owner unknown (or gone): nothing to do


def test_pod_events_refresh_status_of_a_known_owner():
    assert pod_need("MODIFIED", OWNER) == STATUS
    assert pod_need("MODIFIED", None) is None


def test_a_capability_crd_counts_only_once_established_and_serving_the_version():
    from llmops.controller import capability_note, crd_serves
    crd = {"spec": {"versions": [{"name": "v1", "served": True}]},
           "status": {"conditions": [{"type": "Established", "status": "True"}]}}
    assert crd_serves(crd, "v1")
    assert not crd_serves({**crd, "status": {"conditions": [{"type": "Established", "status": "False"}]}}, "v1")
    assert not crd_serves(crd, "v2")
    installed = capability_note("leader_worker_set", True)
    assert "llmops.io/group-backend" in installed.message and "stay StatefulSets" in installed.message
    assert capability_note("leader_worker_set", False).type == "Warning"
