"""A capability that appears while the operator runs (LeaderWorkerSet's CRD installed) is an
explicit, explained decision: an Event on the multi-node deployment, a GroupBackend
condition saying its groups stay StatefulSets and how to switch, and no silent swap."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmops_testing.kube import read_or_none, wait_for_event_reasons
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"


def lws_crd() -> dict:
    # Just enough of LeaderWorkerSet's CRD to be discovered; no LWS controller runs here.
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": LWS_CRD},
            "spec": {"group": "leaderworkerset.x-k8s.io", "scope": "Namespaced",
                     "names": {"kind": "LeaderWorkerSet", "plural": "leaderworkersets", "singular": "leaderworkerset"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def multi_node(namespace: str) -> dict:
    return {"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment",
            "metadata": {"name": "grp", "namespace": namespace},
            "spec": {"model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
                     "engine": {"image": "llmops/vllm-sim:latest"},
                     "sharding": {"allowMultiNode": True}, "resources": {"gpu": {"type": "NVIDIA-L4"}},
                     "placement": {"profile": "edge"}, "replicas": 0}}


def status(crs, namespace) -> dict:
    return crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "grp").get("status") or {}


def condition(crs, namespace, ctype):
    return next((c for c in status(crs, namespace).get("conditions") or [] if c["type"] == ctype), None)


def test_lws_installed_while_running_keeps_statefulset_groups_and_says_so(operator, api_client, crs, apps_api, namespace):
    if operator is None:
        pytest.skip("installs a LeaderWorkerSet CRD into the cluster; sandbox only")
    ext = client.ApiextensionsV1Api(api_client)
    if read_or_none(lambda: ext.read_custom_resource_definition(LWS_CRD)) is not None:
        pytest.skip("LeaderWorkerSet is installed on this cluster")
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, multi_node(namespace))
    wait_for(lambda: status(crs, namespace).get("groupBackend") == "StatefulSet", 60,
             "the multi-node deployment did not record StatefulSet groups")
    try:
        ext.create_custom_resource_definition(lws_crd())
        wait_for_event_reasons(client.CoreV1Api(api_client), namespace, "grp", {"LeaderWorkerSetInstalled"})
        kept = wait_for(lambda: (c := condition(crs, namespace, "GroupBackend")) and c["reason"] == "KeptStatefulSets" and c,
                        60, "the GroupBackend condition did not explain that the groups stay StatefulSets")
        assert "llmops.io/group-backend" in kept["message"]
        assert status(crs, namespace)["groupBackend"] == "StatefulSet"
        assert apps_api.read_namespaced_stateful_set("grp-leader", namespace) is not None
    finally:
        try:
            ext.delete_custom_resource_definition(LWS_CRD)
        except ApiException as exc:
            if exc.status != 404:
                raise
    wait_for(lambda: read_or_none(lambda: ext.read_custom_resource_definition(LWS_CRD)) is None, 60,
             "the test's LeaderWorkerSet CRD was not removed")
