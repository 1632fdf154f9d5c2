"""Names, labels and owner references shared by every rendered child."""

from __future__ import annotations

from typing import Any

from llmops.api.v1alpha1 import API_VERSION, KIND, LLMDeployment

FIELD_MANAGER = "llmops-operator"
APP_NAME = "llmops-vllm"
# Pod label Prometheus relabels into the `llmops_deployment` target label.
DEPLOYMENT_LABEL = "llmops.io/deployment"
MANAGED_BY = "llmops"


def selector_labels(d: LLMDeployment) -> dict[str, str]:
    """Labels that select this deployment's serving pods; never change them (selectors are immutable)."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": d.name}


def common_labels(d: LLMDeployment, component: str = "inference") -> dict[str, str]:
    return {
        **selector_labels(d),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "llmops",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        DEPLOYMENT_LABEL: d.name,
    }


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def selector_string(d: LLMDeployment) -> str:
    return label_selector(selector_labels(d))


def owner_reference(d: LLMDeployment) -> dict[str, Any]:
    if not d.metadata.uid:
        raise ValueError("the LLMDeployment has no uid; children need one for their owner reference")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": d.name,
        "uid": d.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(d: LLMDeployment, name: str, component: str = "inference") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": d.namespace,
        "labels": common_labels(d, component),
    }
    if d.metadata.uid:  # `llmops render` of a local file has no uid yet
        meta["ownerReferences"] = [owner_reference(d)]
    return meta


def service_endpoint(d: LLMDeployment, port: int) -> str:
    return f"http://{d.name}.{d.namespace}.svc.cluster.local:{port}/v1"
