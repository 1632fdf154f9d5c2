"""Where a deployment's Service points: the decision, the routed Service and Endpoints."""

from __future__ import annotations

import pytest

from llmops.activator import routing
from llmops.activator.routing import Target
from llmops.api.v1alpha1 import LLMDeployment
from llmops.render import render_children
from llmops_testing.samples import sim_deployment


def pod(name, ready=True, ip="10.1.0.5", role=None, deleting=False):
    meta = {"name": name, "labels": {"llmops.io/role": role} if role else {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    return {"metadata": meta, "status": {"podIP": ip, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize("enabled, installed, ready, expected", [
    (True, True, False, Target.activator),
    (True, True, True, Target.pods),      # no extra hop with a Ready replica
    (False, True, False, Target.pods),    # not asked for: today's behaviour
    (True, False, False, Target.pods),    # asked for but no activator installed: today's behaviour
])
def test_endpoint_target(enabled, installed, ready, expected):
    assert routing.endpoint_target(enabled, installed, ready) is expected


def test_ready_serving_pods_skip_stopping_unready_ipless_pods_and_group_workers():
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True), pod("d", ip=None),
            pod("g-leader", role="leader"), pod("g-worker", role="worker")]
    assert [p["metadata"]["name"] for p in routing.ready_serving_pods(pods, multi_node=False)] == ["a", "g-leader"]
    assert [p["metadata"]["name"] for p in routing.ready_serving_pods(pods, multi_node=True)] == ["g-leader"]
    # A group whose leader is not Ready (its readiness gate waits for the workers) serves nothing.
    assert routing.ready_serving_pods([pod("l", ready=False, role="leader"), pod("w", role="worker")], True) == []


ACTIVATOR_ENDPOINTS = {"subsets": [
    {"addresses": [{"ip": "10.9.0.2"}, {"ip": "10.9.0.3"}], "notReadyAddresses": [{"ip": "10.9.0.4"}],
     "ports": [{"name": "metrics", "port": 8080}, {"name": "http", "port": 8000}]}]}


def test_activator_subsets_keep_ready_addresses_on_the_http_port():
    assert routing.activator_subsets(ACTIVATOR_ENDPOINTS) == [
        {"addresses": [{"ip": "10.9.0.2"}, {"ip": "10.9.0.3"}], "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}]}]
    assert routing.activator_subsets(None) == []
    assert routing.activator_subsets({"subsets": [{"notReadyAddresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 1}]}]}) == []


def deployment():
    body = sim_deployment("chat", "ml", activator={"enabled": True})
    body["metadata"]["uid"] = "u-1"
    return LLMDeployment.model_validate(body)


def test_routed_to_the_activator_the_service_loses_its_selector_and_gets_our_endpoints():
    d = deployment()
    children = render_children(d)
    routed = routing.routed_children(children, d, Target.activator, ACTIVATOR_ENDPOINTS)
    service = next(c for c in routed if c["kind"] == "Service")
    endpoints = next(c for c in routed if c["kind"] == "Endpoints")
    assert "selector" not in service["spec"] and service["spec"]["ports"][0]["port"] == 8000
    assert service["metadata"]["annotations"] == {routing.ROUTE_ANNOTATION: "activator"}
    assert endpoints["metadata"]["name"] == "chat" and endpoints["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert [a["ip"] for a in endpoints["subsets"][0]["addresses"]] == ["10.9.0.2", "10.9.0.3"]
    # Everything else is as rendered, in the same order, and the input was not changed.
    assert [c["kind"] for c in routed] == ["Service", "Endpoints", "Deployment", "PodDisruptionBudget"]
    assert children[0]["spec"]["selector"] and "annotations" not in children[0]["metadata"]
    assert routing.routed_objects(routed) == [service, endpoints]


def test_routed_to_pods_the_service_keeps_its_selector_and_no_endpoints_are_written():
    d = deployment()
    routed = routing.routed_children(render_children(d), d, Target.pods, ACTIVATOR_ENDPOINTS)
    assert [c["kind"] for c in routed] == ["Service", "Deployment", "PodDisruptionBudget"]
    assert routed[0]["spec"]["selector"] == render_children(d)[0]["spec"]["selector"]
    assert routed[0]["metadata"]["annotations"] == {routing.ROUTE_ANNOTATION: "pods"}


@pytest.mark.parametrize("text", ["llmops", "/x", "ns/", "a/b/c"])
def test_activator_ref_must_be_namespace_slash_name(text):
    with pytest.raises(ValueError, match="NAMESPACE/SERVICE"):
        routing.ActivatorRef.parse(text)
    assert str(routing.ActivatorRef.parse("llmops/llmops-activator")) == "llmops/llmops-activator"
