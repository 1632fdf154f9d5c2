"""Every object the chart renders is accepted by a real API server (server-side dry-run create),
for the default values and the non-default combinations of the unit tests."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from llmops_sandbox.tools.chart import VALUE_COMBINATIONS as COMBINATIONS
from llmops_sandbox.tools.chart import render

pytestmark = pytest.mark.cluster


def _dry_run_create(dynamic: DynamicClient, obj: dict) -> None:
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    resource.create(body=obj, namespace=namespace, query_params=[("dryRun", "All")])


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_rendered_objects_pass_server_side_dry_run(name, api_client, namespace):
    values = COMBINATIONS[name]
    if values.get("operator", {}).get("watchNamespaces"):
        values = {**values, "operator": {**values["operator"], "watchNamespaces": [namespace]}}
    release = f"dry-{uuid.uuid4().hex[:6]}"
    docs = render(values, release=release, namespace=namespace)
    dynamic = DynamicClient(api_client)
    checked, skipped = [], []
    for obj in docs:
        if obj["kind"] == "CustomResourceDefinition":
            continue  # the CRD is installed by the session; its content is checked by the unit tests
        try:
            _dry_run_create(dynamic, obj)
        except ResourceNotFoundError:
            skipped.append(obj["kind"])  # e.g. cert-manager's Certificate: not served here
            continue
        except client.ApiException as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} refused by the API server: {exc.status} {exc.body}")
        checked.append(obj["kind"])
    assert {"Deployment", "Service"} <= set(checked), (checked, skipped)
    assert set(skipped) <= {"Certificate", "Issuer", "ServiceMonitor", "PodMonitor", "PrometheusRule"}, skipped
