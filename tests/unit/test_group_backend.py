"""A capability change (LeaderWorkerSet installed or removed) never swaps a running
deployment's group backend silently."""

from llmops.backend import BACKEND_ANNOTATION, LWS, STATEFULSET, choose_group_backend


def body(recorded=None, asked=None):
    return {"metadata": {"annotations": {BACKEND_ANNOTATION: asked} if asked else {}},
            "status": {"groupBackend": recorded} if recorded else {}}


def test_a_new_deployment_uses_what_the_cluster_offers():
    assert choose_group_backend(body(), lws_available=True).backend == LWS
    assert choose_group_backend(body(), lws_available=False).backend == STATEFULSET


def test_lws_installed_later_keeps_running_statefulset_groups_and_says_how_to_switch():
    choice = choose_group_backend(body(recorded=STATEFULSET), lws_available=True)
    assert choice.backend == STATEFULSET and not choice.switched
    assert choice.reason == "KeptStatefulSets" and BACKEND_ANNOTATION in choice.message


def test_switching_is_an_explicit_request():
    choice = choose_group_backend(body(recorded=STATEFULSET, asked=LWS), lws_available=True)
    assert choice.backend == LWS and choice.switched


def test_lws_removed_falls_back_to_statefulsets_and_says_so():
    choice = choose_group_backend(body(recorded=LWS), lws_available=False)
    assert choice.backend == STATEFULSET and choice.switched and choice.reason == "LeaderWorkerSetRemoved"
    asked = choose_group_backend(body(asked=LWS), lws_available=False)
    assert asked.backend == STATEFULSET and asked.reason == "LeaderWorkerSetUnavailable"


def test_the_recorded_backend_survives_a_restart():
    assert choose_group_backend(body(recorded=LWS), lws_available=True).backend == LWS
    assert choose_group_backend(body(recorded=STATEFULSET), lws_available=False).reason == "AsRecorded"
