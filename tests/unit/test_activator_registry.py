"""Which deployment a request is for, and which deployments the activator holds for at all."""

from __future__ import annotations

from llmops.activator.registry import Registry, held_from_body
from llmops_testing.samples import sim_deployment


def body(name, namespace, enabled=True, **status):
    b = sim_deployment(name, namespace, activator={"enabled": enabled, "queueSize": 7, "holdSeconds": 60})
    b["status"] = status
    return b


def registry(*bodies):
    r = Registry(kube=None)
    for b in bodies:
        h = held_from_body(b)
        if h:
            r.deployments[h.key] = h
    return r


def test_only_deployments_with_the_activator_enabled_are_held_for():
    assert held_from_body(body("a", "ml", enabled=False)) is None
    assert held_from_body({"metadata": {"name": "x", "namespace": "y"}, "spec": {"model": {}}}) is None
    h = held_from_body(body("a", "ml", nodesPerReplica=2, autoscaling={"coldStarts": [["p", 42.0]]}))
    assert (h.queue_size, h.hold_seconds, h.multi_node, h.cold_start, h.replicas) == (7, 60, True, 42.0, 1)
    assert h.selector == "app.kubernetes.io/instance=a,app.kubernetes.io/name=llmops-vllm"


def test_host_names_the_service_else_a_unique_served_model_else_nothing():
    r = registry(body("chat", "ml"), body("chat", "other"), body("code", "ml"), body("off", "ml", enabled=False))
    assert r.find("chat.ml.svc.cluster.local:8000", None).key == ("ml", "chat")
    assert r.find("chat.other", "code").key == ("other", "chat")      # Host wins over the model
    assert r.find("10.241.0.4:8000", "code").key == ("ml", "code")    # an endpoint IP: by model
    assert r.find("10.241.0.4:8000", "chat") is None                  # two namespaces serve "chat"
    assert r.find("off.ml", "off") is None                            # not held for: no open proxy
    assert r.find(None, None) is None
