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
    """Any change to a child (deleted, edited by hand, or its status moved) needs a full
    reconcile: it is cheap, because a child the cache shows as rendered is not applied again,
    and it puts a hand edit back at once. ADDED is the operator's own create or the start-up
    listing (the owner is reconciled anyway)."""
    if owner is None or event_type in (None, "ADDED"):
        return None
    return FULL


def pod_need(event_type: Optional[str], owner: Optional[dict[str, Any]]) -> Optional[int]:
    """Any pod change may move readiness or a problem the status reports."""
    return STATUS if owner is not None else None
