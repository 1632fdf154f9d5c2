"""PURE: which watch events make which LLMDeployment need what (controller-runtime's
`EnqueueRequestForOwner` plus predicates). Events never reconcile inline; they enqueue."""

from __future__ import annotations

from typing import Any, Optional

from llmops.render.meta import DEPLOYMENT_LABEL
from llmops.workqueue import FULL, STATUS

Key = tuple[str, str]  # (namespace, name) of an LLMDeployment


def owner_key(child: dict[str, Any]) -> Optional[Key]:
    meta = child.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(DEPLOYMENT_LABEL)
    return (meta.get("namespace") or "default", owner) if owner else None


def llmdeployment_need(event_type: Optional[str], body: dict[str, Any], reconciled_generation: Optional[int]) -> Optional[int]:
    """A spec change (a new generation), or one the operator has not reconciled yet (start-up,
    restart), needs a full reconcile. Status-only updates (our own writes) need nothing."""
    meta = body.get("metadata") or {}
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        return None
    return FULL if meta.get("generation") != reconciled_generation else None


def child_need(event_type: Optional[str], child: dict[str, Any], owner: Optional[dict[str, Any]]) -> Optional[int]:
    """A child deleted or its replicas edited by hand: put it back (FULL). Another change of a
    workload: its status moved (STATUS). ADDED is the operator's own create or the start-up
    listing (the owner is reconciled anyway); a Service matters only when it goes."""
    if owner is None or event_type in (None, "ADDED"):
        return None
    if event_type == "DELETED":
        return FULL
    if child.get("kind") == "Service":
        return None
    name = owner["metadata"]["name"]
    # The workload whose replicas mirror spec.replicas: the Deployment, or the groups' leader set.
    mirrors = child.get("kind") == "Deployment" or child["metadata"]["name"] == f"{name}-leader"
    if mirrors and (child.get("spec") or {}).get("replicas") != (owner.get("spec") or {}).get("replicas"):
        return FULL
    return STATUS


def pod_need(event_type: Optional[str], owner: Optional[dict[str, Any]]) -> Optional[int]:
    """Any pod change may move readiness or a problem the status reports."""
    return STATUS if owner is not None else None
