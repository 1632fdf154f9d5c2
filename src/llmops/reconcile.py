"""One idempotent reconcile: desired children from the spec, applied; status from what the
children report. Level-based: it never looks at what changed, only at what is."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.activator.service_route import route_children, sync_route
from llmops.api.v1alpha1 import LLMDeployment, LLMDeploymentStatus
from llmops.backend import LWS as LWS_BACKEND, BackendChoice, choose_group_backend
from llmops.conditions import condition, merge_condition
from llmops.groups import MEMBERS_ANNOTATION, Restart, SetGate, plan_group_actions
from llmops.inventory import GPUNode
from llmops.kube import Kube
from llmops.planner.sharding import resolve_sharding
from llmops.render import ClusterCapabilities, ResolvedSharding, render_children
from llmops.render.group import GROUP_READY_GATE, leader_set_name
from llmops.render.meta import DEPLOYMENT_LABEL, label_selector, selector_labels, selector_string
from llmops.snapshot import Snapshot, already_applied
from llmops.render.prestage import stage_selector, stage_set_name, staging_enabled
from llmops.status import RECONCILER_MANAGER, Observed, compute_status, status_changed
from llmops.timestamps import utc_now
from llmops.validation import InvalidManifest, api_view, validate_manifest

# Kinds whose objects we render and may have to remove when the shape changes
# (single-node <-> multi-node, fewer groups, pre-staging turned off).
PRUNABLE = (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"), ("v1", "Service"))
LWS = ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "LeaderWorkerSet"}


@dataclass(frozen=True)
class Note:
    """A Kubernetes Event the handler should post on the LLMDeployment."""

    type: str  # Normal | Warning
    reason: str
    message: str


def merge_notes(notes: list[Note]) -> list[Note]:
    """One Event per (type, reason): "created Deployment/x; created Service/x" rather than one
    request per child, which at a burst of creations doubled the operator's writes."""
    merged: dict[tuple[str, str], list[str]] = {}
    for note in notes:
        merged.setdefault((note.type, note.reason), []).append(note.message)
    return [Note(t, reason, "; ".join(messages)) for (t, reason), messages in merged.items()]


@dataclass
class Outcome:
    notes: list[Note] = field(default_factory=list)
    invalid: Optional[str] = None
    status: dict[str, Any] = field(default_factory=dict)


def _ident(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _failed_status(body: dict[str, Any], phase: str, reason: str, message: str) -> dict[str, Any]:
    """The reconciler's share of status when nothing could be applied. Its own count and
    sharding fields are carried over (the children are untouched, so they still hold);
    applying without them would remove them, and with them `/scale`'s selector."""
    generation = body["metadata"].get("generation")
    previous = body.get("status") or {}
    carried = {k: previous[k] for k in CARRIED_WHEN_REFUSED if k in previous}
    return LLMDeploymentStatus.model_validate({
        **carried,
        "observedGeneration": generation,
        "phase": phase,
        "conditions": [merge_condition(previous.get("conditions"), condition(t, s, reason, message, generation), utc_now())
                       for t, s in (("Ready", "False"), ("Progressing", "False"), ("Degraded", "True"))],
    }).to_patch()


CARRIED_WHEN_REFUSED = ("replicas", "readyReplicas", "updatedReplicas", "selector", "endpoint",
                        "tensorParallelSize", "pipelineParallelSize", "nodesPerReplica", "shardingSource",
                        "groupBackend")


def _refuse(kube: Kube, body: dict[str, Any], phase: str, reason: str, message: str) -> Outcome:
    """Record why nothing was applied; children stay as they were (no half-applied change)."""
    meta, previous = body["metadata"], body.get("status") or {}
    status = _failed_status(body, phase, reason, message)
    if status_changed(previous, status):
        kube.apply_llmdeployment_status(meta["name"], meta["namespace"], status, RECONCILER_MANAGER)
    return Outcome(notes=[Note("Warning", reason, message)], invalid=message if phase == "Failed" else None,
                   status=status)


def _existing(kube: Kube, d: LLMDeployment, api_version: str, kind: str,
              snapshot: Optional[Snapshot]) -> list[dict[str, Any]]:
    if snapshot is not None and kind in snapshot.kinds:
        return [obj for (k, _), obj in snapshot.children.items() if k == kind]
    return kube.list(api_version, kind, d.namespace, f"{DEPLOYMENT_LABEL}={d.name}")


def _prune(kube: Kube, d: LLMDeployment, rendered: list[dict[str, Any]], capabilities: ClusterCapabilities,
           snapshot: Optional[Snapshot] = None) -> list[Note]:
    keep = {(c["kind"], c["metadata"]["name"]) for c in rendered}
    kinds = PRUNABLE + ((LWS,) if capabilities.leader_worker_set else ())
    notes = []
    for api_version, kind in kinds:
        for obj in _existing(kube, d, api_version, kind, snapshot):
            owners = obj["metadata"].get("ownerReferences") or []
            ours = any(o.get("uid") == d.metadata.uid for o in owners)
            if ours and (kind, obj["metadata"]["name"]) not in keep:
                kube.delete(api_version, kind, obj["metadata"]["name"], d.namespace)
                notes.append(Note("Normal", "Deleted", f"deleted {kind}/{obj['metadata']['name']} (no longer needed)"))
    return notes


def _sync_groups(kube: Kube, d: LLMDeployment, sharding: ResolvedSharding, pods: list[dict[str, Any]],
                 capabilities: ClusterCapabilities) -> list[Note]:
    """Readiness gates and whole-group restarts for StatefulSet-rendered groups."""
    if sharding.nodes_per_replica < 2 or capabilities.leader_worker_set:
        return []
    notes = []
    for action in plan_group_actions(pods, leader_set_name(d), sharding.nodes_per_replica):
        if isinstance(action, Restart):
            for pod, uid in zip(action.pods, action.uids):
                kube.delete_pod(d.namespace, pod, uid)
            notes.append(Note("Warning", "GroupRestarted", f"restarting group {action.group}: {action.reason}"))
        elif isinstance(action, SetGate):
            if action.ready and action.members:
                kube.annotate_pod(d.namespace, action.pod, {MEMBERS_ANNOTATION: action.members})
            kube.set_pod_condition(d.namespace, action.pod, {
                "type": GROUP_READY_GATE,
                "status": "True" if action.ready else "False",
                "reason": "GroupReady" if action.ready else "WaitingForMembers",
                "lastTransitionTime": utc_now(),
            })
    return notes


def _report(kube: Kube, d: LLMDeployment, body: dict[str, Any], workload: Optional[dict[str, Any]],
            sharding: ResolvedSharding, capabilities: ClusterCapabilities,
            snapshot: Optional[Snapshot] = None,
            backend: Optional[BackendChoice] = None, just_created: bool = False,
            route: bool = True) -> tuple[dict[str, Any], list[Note]]:
    if snapshot is not None:
        pods = snapshot.pods_with(selector_labels(d))
    else:
        pods = kube.list_pods(d.namespace, selector_string(d))
    notes = _sync_groups(kube, d, sharding, pods, capabilities)
    if route:  # spec.activator: a pod got Ready or went (a full reconcile has just routed its children)
        sync_route(kube, d, sharding, capabilities, pods, snapshot)
    previous = body.get("status") or {}
    staging, stage_pods = None, []
    if staging_enabled(d):
        if snapshot is not None and "DaemonSet" in snapshot.kinds:
            staging = snapshot.children.get(("DaemonSet", stage_set_name(d)))
            stage_pods = snapshot.pods_with(stage_selector(d))
        else:
            staging = kube.get("apps/v1", "DaemonSet", stage_set_name(d), d.namespace)
            stage_pods = kube.list_pods(d.namespace, label_selector(stage_selector(d)))
    observed = Observed(workload=workload, pods=pods, staging=staging, stage_pods=stage_pods)
    status = compute_status(d, observed, sharding, previous, utc_now(), backend)
    if just_created and snapshot is not None:
        # The workload was created a moment ago and its controller has not reported yet: its
        # first status update is an event that reconciles again, and that reconcile writes the
        # status. Writing "Creating" now would be one more write per deployment in a burst.
        return status, notes
    if status_changed(previous, status):
        kube.apply_llmdeployment_status(d.name, d.namespace, status, RECONCILER_MANAGER)
    return status, notes


def _group_backend(body: dict[str, Any], sharding: ResolvedSharding,
                   capabilities: ClusterCapabilities) -> tuple[ClusterCapabilities, Optional[BackendChoice]]:
    """The capabilities to render with: for multi-node groups the backend backend.py chose
    (recorded, asked for, or discovered), not whatever discovery says today."""
    if sharding.nodes_per_replica < 2:
        return capabilities, None
    choice = choose_group_backend(body, capabilities.leader_worker_set)
    return dataclasses.replace(capabilities, leader_worker_set=choice.backend == LWS_BACKEND), choice


def _primary_workload(children: list[dict[str, Any]]) -> dict[str, Any]:
    """The object whose status counts replicas: the Deployment, the leader StatefulSet or the LWS."""
    return next(c for c in children if c["kind"] in WORKLOAD_KINDS)


def reconcile(kube: Kube, body: dict[str, Any], capabilities: ClusterCapabilities,
              nodes: Optional[list[GPUNode]] = None, snapshot: Optional[Snapshot] = None) -> Outcome:
    """Make the children match the spec, then report status. Safe to call any number of times.

    With a `snapshot` (the watch-fed caches) nothing is read: a child the cache shows as
    already rendered is not applied again, pruning and pods come from the cache. Without one,
    each child is read before it is applied and pruning lists."""
    try:
        d = validate_manifest(api_view(body))
    except InvalidManifest as exc:
        return _refuse(kube, body, "Failed", "InvalidSpec", "; ".join(str(p) for p in exc.problems))
    sharding, problems = resolve_sharding(d, nodes)
    if sharding is None:
        return _refuse(kube, body, "Pending", "DoesNotFit",
                       "no eligible GPU nodes can run this shape: " + "; ".join(problems))
    cluster = capabilities
    capabilities, backend = _group_backend(body, sharding, cluster)
    # spec.activator: the Service may point at the activator while no replica is Ready.
    pods = snapshot.pods_with(selector_labels(d)) if snapshot is not None else None
    children = route_children(kube, d, render_children(d, sharding, capabilities), sharding.nodes_per_replica > 1,
                              capabilities, pods)
    notes: list[Note] = []
    if backend is not None and backend.switched:
        notes.append(Note("Warning", "GroupBackendChanged", backend.message))
    primary = _primary_workload(children)
    workload, workload_created = None, False
    for child in children:
        meta = child["metadata"]
        if snapshot is not None and child["kind"] in snapshot.kinds:
            before = snapshot.children.get((child["kind"], meta["name"]))
            if before is not None and already_applied(child, before):
                if child is primary:
                    workload = before
                continue  # the cache shows it as rendered: an apply would change nothing
        else:
            before = kube.get(child["apiVersion"], child["kind"], meta["name"], meta["namespace"])
        after = kube.apply(child)
        if before is None:
            notes.append(Note("Normal", "Created", f"created {_ident(child)}"))
        elif before["metadata"].get("resourceVersion") != after["metadata"]["resourceVersion"]:
            notes.append(Note("Normal", "Updated", f"updated {_ident(child)} to match the spec"))
        if child is primary:
            workload, workload_created = after, before is None
    notes += _prune(kube, d, children, cluster, snapshot)  # what the cluster serves, not what we render
    status, group_notes = _report(kube, d, body, workload, sharding, capabilities, snapshot, backend,
                                  just_created=workload_created, route=False)
    return Outcome(notes=notes + group_notes, status=status)


def refresh_status(kube: Kube, body: dict[str, Any], capabilities: ClusterCapabilities,
                   nodes: Optional[list[GPUNode]] = None,
                   snapshot: Optional[Snapshot] = None) -> tuple[Optional[dict[str, Any]], list[Note]]:
    """Recompute status (a child or pod changed) and keep groups whole; applies nothing.
    `body` is the latest LLMDeployment the watch delivered."""
    if body["metadata"].get("deletionTimestamp"):
        return None, []
    namespace = body["metadata"]["namespace"]
    try:
        d = validate_manifest(api_view(body))
    except InvalidManifest:
        return None, []  # reconcile reports invalid specs
    sharding, _ = resolve_sharding(d, nodes)
    if sharding is None:
        return None, []  # reconcile reports shapes that do not fit
    capabilities, backend = _group_backend(body, sharding, capabilities)
    primary = _primary_workload(render_children(d, sharding, capabilities))
    if snapshot is not None and primary["kind"] in snapshot.kinds:
        workload = snapshot.children.get((primary["kind"], primary["metadata"]["name"]))
    else:
        workload = kube.get(primary["apiVersion"], primary["kind"], primary["metadata"]["name"], namespace)
    return _report(kube, d, body, workload, sharding, capabilities, snapshot, backend)
