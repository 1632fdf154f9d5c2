"""One idempotent reconcile: desired children from the spec, applied; status from what the
children report. Level-based: it never looks at what changed, only at what is."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.api.v1alpha1 import LLMDeployment
from llmops.kube import Kube
from llmops.render import ClusterCapabilities, ResolvedSharding, render_children
from llmops.render.meta import selector_string
from llmops.status import Observed, compute_status, status_changed
from llmops.validation import InvalidManifest, validate_manifest


@dataclass(frozen=True)
class Note:
    """A Kubernetes Event the handler should post on the LLMDeployment."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Outcome:
    notes: list[Note] = field(default_factory=list)
    invalid: Optional[str] = None
    status: dict[str, Any] = field(default_factory=dict)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def resolve_sharding(d: LLMDeployment) -> ResolvedSharding:
    s = d.spec.sharding
    return ResolvedSharding(
        tensor_parallel_size=s.tensor_parallel_size or 1,
        pipeline_parallel_size=s.pipeline_parallel_size or 1,
    )


def _ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _observe(kube: Kube, d: LLMDeployment, workload: Optional[dict[str, Any]]) -> Observed:
    return Observed(workload=workload, pods=kube.list_pods(d.namespace, selector_string(d)))


def _write_status(kube: Kube, d: LLMDeployment, body: dict[str, Any], observed: Observed,
                  sharding: ResolvedSharding) -> dict[str, Any]:
    previous = body.get("status") or {}
    status = compute_status(d, observed, sharding, previous, utc_now())
    if status_changed(previous, status):
        kube.patch_llmdeployment_status(d.name, d.namespace, status)
    return status


def _refuse(kube: Kube, body: dict[str, Any], exc: InvalidManifest) -> Outcome:
    """Record why the spec was refused; children stay as they were (no half-applied change)."""
    message = "; ".join(str(p) for p in exc.problems)
    meta = body["metadata"]
    previous = body.get("status") or {}
    status = {
        "observedGeneration": meta.get("generation"),
        "phase": "Failed",
        "conditions": [
            {"type": t, "status": s, "reason": "InvalidSpec", "message": message,
             "lastTransitionTime": utc_now(), "observedGeneration": meta.get("generation")}
            for t, s in (("Ready", "False"), ("Progressing", "False"), ("Degraded", "True"))
        ],
    }
    old_message = next((c.get("message") for c in previous.get("conditions") or [] if c.get("type") == "Ready"), None)
    if (previous.get("phase"), previous.get("observedGeneration"), old_message) != ("Failed", meta.get("generation"), message):
        kube.patch_llmdeployment_status(meta["name"], meta["namespace"], status)
    return Outcome(notes=[Note("Warning", "InvalidSpec", message)], invalid=message, status=status)


def reconcile(kube: Kube, body: dict[str, Any], capabilities: ClusterCapabilities) -> Outcome:
    """Make the children match the spec, then report status. Safe to call any number of times."""
    try:
        d = validate_manifest(_api_view(body))
    except InvalidManifest as exc:
        return _refuse(kube, body, exc)
    sharding = resolve_sharding(d)
    notes: list[Note] = []
    workload = None
    for child in render_children(d, sharding, capabilities):
        meta = child["metadata"]
        before = kube.get(child["apiVersion"], child["kind"], meta["name"], meta["namespace"])
        after = kube.apply(child)
        if before is None:
            notes.append(Note("Normal", "Created", f"created {_ident(child)}"))
        elif before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]:
            notes.append(Note("Normal", "Updated", f"updated {_ident(child)} to match the spec"))
        if child["kind"] == "Deployment":
            workload = after
    status = _write_status(kube, d, body, _observe(kube, d, workload), sharding)
    return Outcome(notes=notes, status=status)


def refresh_status(kube: Kube, name: str, namespace: str) -> Optional[dict[str, Any]]:
    """Recompute status only (a child changed); applies nothing."""
    body = kube.get_llmdeployment(name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    try:
        d = validate_manifest(_api_view(body))
    except InvalidManifest:
        return None  # reconcile reports invalid specs
    workload = kube.get("apps/v1", "Deployment", d.name, d.namespace)
    return _write_status(kube, d, body, _observe(kube, d, workload), resolve_sharding(d))


def _api_view(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stored object the API model validates (server metadata and status aside)."""
    meta = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation", "labels", "annotations")
                     if meta.get(k) is not None},
        "spec": body.get("spec"),
    }
