"""The operator against a real API server: children, drift, scale, GC and honest status."""

from __future__ import annotations

import copy

import pytest

from llmops_testing.kube import read_or_none
from llmops_testing.samples import sim_deployment
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
TIMEOUT = 60

# Runs on the sandbox's simulated A100 nodes: the simulator image answers like vLLM.
MANIFEST = sim_deployment("chat")


def create(crs, namespace, manifest=MANIFEST, **spec_changes):
    body = copy.deepcopy(manifest)
    body["metadata"]["namespace"] = namespace
    body["spec"].update(spec_changes)
    return crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get_cr(crs, namespace, name="chat"):
    return crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def condition(cr, ctype):
    return next((c for c in (cr.get("status") or {}).get("conditions", []) if c["type"] == ctype), None)


def test_apply_creates_owned_children_with_the_rendered_spec(operator, crs, apps_api, core, namespace):
    cr = create(crs, namespace)
    dep = wait_for(lambda: read_or_none(apps_api.read_namespaced_deployment, "chat", namespace), TIMEOUT,
                   "operator did not create the Deployment")
    svc = wait_for(lambda: read_or_none(core.read_namespaced_service, "chat", namespace), TIMEOUT,
                   "operator did not create the Service")
    for child in (dep, svc):
        [owner] = child.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid, owner.controller) == ("LLMDeployment", "chat", cr["metadata"]["uid"], True)
    container = dep.spec.template.spec.containers[0]
    assert container.args[container.args.index("--served-model-name") + 1] == "chat"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert svc.spec.ports[0].port == 8000


def test_status_turns_ready_only_when_pods_serve(operator, crs, namespace):
    create(crs, namespace)
    seen = []

    def ready():
        cr = get_cr(crs, namespace)
        cond = condition(cr, "Ready")
        seen.append((cr.get("status") or {}).get("phase"))
        return cr if cond and cond["status"] == "True" and cr["status"]["readyReplicas"] == 1 else None

    cr = wait_for(ready, 120, "LLMDeployment never reported Ready")
    assert cr["status"]["phase"] == "Ready"
    assert condition(cr, "Progressing")["status"] == "False"
    assert cr["status"]["endpoint"] == f"http://chat.{namespace}.svc.cluster.local:8000/v1"
    assert cr["status"]["observedGeneration"] == cr["metadata"]["generation"]
    assert cr["status"]["selector"] == "app.kubernetes.io/instance=chat,app.kubernetes.io/name=llmops-vllm"
    assert any(p in ("Pending", "Progressing") for p in seen[:-1]) or len(seen) == 1


def test_spec_change_updates_children(operator, crs, apps_api, namespace):
    create(crs, namespace)
    wait_for(lambda: read_or_none(apps_api.read_namespaced_deployment, "chat", namespace), TIMEOUT, "no Deployment")
    crs.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat",
                                       {"spec": {"engine": {"maxModelLen": 2048}}})

    def updated():
        args = apps_api.read_namespaced_deployment("chat", namespace).spec.template.spec.containers[0].args
        return args[args.index("--max-model-len") + 1] == "2048"

    wait_for(updated, TIMEOUT, "Deployment args did not follow spec.engine.maxModelLen")


def test_scale_subresource_drives_the_deployment_and_hand_edits_are_reverted(operator, crs, apps_api, namespace):
    create(crs, namespace)
    wait_for(lambda: read_or_none(apps_api.read_namespaced_deployment, "chat", namespace), TIMEOUT, "no Deployment")
    crs.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "chat", {"spec": {"replicas": 3}})
    wait_for(lambda: apps_api.read_namespaced_deployment("chat", namespace).spec.replicas == 3, TIMEOUT,
             "Deployment replicas did not follow `kubectl scale llmd`")
    scale = crs.get_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, "chat")
    assert scale["spec"]["replicas"] == 3
    # The custom resource owns the replica count: a hand edit of the child is undone.
    apps_api.patch_namespaced_deployment_scale("chat", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: apps_api.read_namespaced_deployment("chat", namespace).spec.replicas == 3, TIMEOUT,
             "hand-edited Deployment replicas were not restored from the LLMDeployment")


def test_children_deleted_by_hand_are_recreated(operator, crs, apps_api, core, namespace):
    create(crs, namespace)
    first = wait_for(lambda: read_or_none(apps_api.read_namespaced_deployment, "chat", namespace), TIMEOUT, "no Deployment")
    wait_for(lambda: read_or_none(core.read_namespaced_service, "chat", namespace), TIMEOUT, "no Service")
    apps_api.delete_namespaced_deployment("chat", namespace)
    core.delete_namespaced_service("chat", namespace, _preload_content=False)  # 1.20 answers with a Status

    def recreated():
        dep = read_or_none(apps_api.read_namespaced_deployment, "chat", namespace)
        svc = read_or_none(core.read_namespaced_service, "chat", namespace)
        return dep is not None and dep.metadata.uid != first.metadata.uid and svc is not None

    wait_for(recreated, TIMEOUT, "deleted children were not recreated")


def test_deleting_the_resource_garbage_collects_children(operator, crs, apps_api, core, namespace):
    create(crs, namespace)
    wait_for(lambda: read_or_none(apps_api.read_namespaced_deployment, "chat", namespace), TIMEOUT, "no Deployment")
    crs.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "chat")
    wait_for(lambda: read_or_none(crs.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, "chat") is None,
             TIMEOUT, "LLMDeployment deletion got stuck (a finalizer?)")
    wait_for(lambda: read_or_none(apps_api.read_namespaced_deployment, "chat", namespace) is None
             and read_or_none(core.read_namespaced_service, "chat", namespace) is None,
             TIMEOUT, "children were not garbage-collected")


def test_spec_the_schema_allows_but_validation_refuses_is_reported_and_not_applied(operator, crs, apps_api, core, namespace):
    create(crs, namespace, engine={"image": "llmops/vllm-sim:latest", "extraArgs": ["--tensor-parallel-size=4"]})

    def failed():
        cr = get_cr(crs, namespace)
        return cr if (cr.get("status") or {}).get("phase") == "Failed" else None

    cr = wait_for(failed, TIMEOUT, "invalid spec was not reported in status")
    assert "spec.engine.extraArgs" in condition(cr, "Ready")["message"]
    assert read_or_none(apps_api.read_namespaced_deployment, "chat", namespace) is None

    def warned():
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=chat").items
        return [e for e in events if e.reason == "InvalidSpec" and e.type == "Warning"]

    wait_for(warned, TIMEOUT, "no Warning event explains the refused spec")


def test_operator_metrics_count_reconciles(operator, crs, namespace):
    if operator is None:
        pytest.skip("the operator runs inside the cluster; its metrics are scraped there")
    create(crs, namespace)
    wait_for(lambda: 'llmops_desired_replicas{llmdeployment="chat",namespace="%s"} 1.0' % namespace
             in operator.metrics_text(), TIMEOUT, "operator metrics do not show the deployment")
    assert "llmops_reconcile_total" in operator.metrics_text()
