"""PURE: what the children report -> the LLMDeployment's status and conditions.

Honesty rules: a rollout in progress is Progressing, not Ready; a pod the scheduler cannot
place makes the deployment Degraded with the scheduler's own message; a loading pod is
not capacity. Condition transition times only move when a condition's status changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.api.v1alpha1 import VLLM_PORT, Condition, LLMDeployment, LLMDeploymentStatus
from llmops.backend import GROUP_BACKEND, BackendChoice
from llmops.conditions import merge_condition
from llmops.render.context import ResolvedSharding
from llmops.render.meta import selector_string, service_endpoint

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"
MODEL_STAGED = "ModelStaged"
# Containers in these waiting states will not recover without a change.
BROKEN_WAITING_REASONS = {
    "CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}


@dataclass(frozen=True)
class Observed:
    """What the cluster reports about one LLMDeployment's children."""

    workload: Optional[dict[str, Any]] = None      # the child Deployment, if it exists
    pods: list[dict[str, Any]] = field(default_factory=list)
    error: Optional[str] = None                    # e.g. the spec was refused
    staging: Optional[dict[str, Any]] = None       # the model-stage DaemonSet, if pre-staging is on
    stage_pods: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Cond:
    status: str
    reason: str
    message: str


def _pod_problem(pod: dict[str, Any]) -> Optional[tuple[str, str]]:
    """(reason, message) when a pod is stuck in a way a person must look at."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status", {})
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return "Unschedulable", f"pod {name}: {cond.get('message') or cond.get('reason')}"
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in BROKEN_WAITING_REASONS:
            detail = waiting.get("message") or waiting["reason"]
            last_words = _last_line(((cs.get("lastState") or {}).get("terminated") or {}).get("message"))
            if waiting["reason"] == "CrashLoopBackOff" and last_words:
                # What the process said before it died (terminationMessagePolicy: FallbackToLogsOnError)
                # explains more than "back-off 20s restarting failed container".
                detail = f"CrashLoopBackOff: {last_words}"
            return waiting["reason"], f"pod {name} container {cs.get('name')}: {detail}"
    if status.get("phase") == "Failed":
        return "PodFailed", f"pod {name} failed: {status.get('message') or status.get('reason') or 'exited'}"
    return None


def _last_line(message: Optional[str], limit: int = 300) -> Optional[str]:
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1][:limit] if lines else None


def _workload_counts(workload: dict[str, Any]) -> dict[str, int | bool]:
    spec, status = workload.get("spec", {}), workload.get("status", {}) or {}
    return {
        "desired": spec.get("replicas", 0),
        "replicas": status.get("replicas", 0) or 0,
        "ready": status.get("readyReplicas", 0) or 0,
        "updated": status.get("updatedReplicas", 0) or 0,
        # LeaderWorkerSet reports no observedGeneration; its counts are then taken as current.
        "current_generation": "observedGeneration" not in status
        or status["observedGeneration"] >= (workload["metadata"].get("generation") or 0),
    }


def _conditions(d: LLMDeployment, observed: Observed) -> tuple[str, dict[str, _Cond], dict[str, int]]:
    """(phase, conditions by type, replica counts)."""
    desired = d.spec.replicas
    if observed.error:
        return "Failed", {
            READY: _Cond("False", "InvalidSpec", observed.error),
            PROGRESSING: _Cond("False", "InvalidSpec", "fix the spec; nothing was changed"),
            DEGRADED: _Cond("True", "InvalidSpec", observed.error),
        }, {"replicas": 0, "ready": 0, "updated": 0}
    if observed.workload is None:
        return "Pending", {
            READY: _Cond("False", "Creating", "the serving workload does not exist yet"),
            PROGRESSING: _Cond("True", "Creating", "creating the serving workload"),
            DEGRADED: _Cond("False", "AsExpected", "no pod reports a problem"),
        }, {"replicas": 0, "ready": 0, "updated": 0}

    counts = _workload_counts(observed.workload)
    ready, updated, replicas = int(counts["ready"]), int(counts["updated"]), int(counts["replicas"])
    problems = [p for p in map(_pod_problem, observed.pods) if p]
    rolled_out = bool(counts["current_generation"]) and updated >= desired and replicas == desired
    settled = rolled_out and ready >= desired and counts["desired"] == desired

    if problems:
        reason, message = problems[0]
        more = f" (and {len(problems) - 1} more pods)" if len(problems) > 1 else ""
        degraded = _Cond("True", reason, message + more)
    else:
        degraded = _Cond("False", "AsExpected", "no pod reports a problem")

    counts_text = f"{ready}/{desired} replicas ready, {updated}/{desired} updated"
    if settled:
        progressing = _Cond("False", "RolloutComplete", counts_text)
    elif not counts["current_generation"] or updated < desired:
        progressing = _Cond("True", "RollingOut", counts_text)
    elif replicas > desired:
        progressing = _Cond("True", "ScalingDown", counts_text)
    else:
        progressing = _Cond("True", "WaitingForReplicas", counts_text + " (loading models counts as not ready)")

    if desired == 0:
        ready_cond = _Cond("False", "ScaledToZero", "0 replicas requested; no pod is serving")
        phase = "ScaledToZero" if replicas == 0 else "Progressing"
    elif settled:
        ready_cond = _Cond("True", "AllReplicasReady", counts_text)
        phase = "Ready"
    elif ready > 0:
        ready_cond = _Cond("True", "PartiallyReady", counts_text)
        phase = "Degraded" if problems else "Progressing"
    else:
        ready_cond = _Cond("False", "NoReplicasReady", counts_text)
        phase = "Degraded" if problems else "Progressing"
    return phase, {READY: ready_cond, PROGRESSING: progressing, DEGRADED: degraded}, {
        "replicas": replicas, "ready": ready, "updated": updated,
    }


def _staging_condition(observed: Observed) -> _Cond:
    """ModelStaged: does every node the placement allows hold a checked copy of the weights?"""
    ds = observed.staging
    if ds is None:
        return _Cond("False", "Creating", "creating the model-stage DaemonSet")
    status = ds.get("status") or {}
    desired = status.get("desiredNumberScheduled", 0) or 0
    ready = status.get("numberReady", 0) or 0
    current = (status.get("observedGeneration") or 0) >= (ds["metadata"].get("generation") or 0)
    problems = [p for p in map(_pod_problem, observed.stage_pods) if p]
    if current and desired == 0:
        return _Cond("False", "NoEligibleNodes",
                     "no node matches the placement, so the weights are staged nowhere; check spec.placement and the nodes' labels and taints")
    if current and ready >= desired and not problems:
        return _Cond("True", "Staged", f"weights staged and checked on all {desired} eligible nodes")
    text = f"weights staged on {ready}/{desired} eligible nodes"
    if problems:
        return _Cond("False", problems[0][0], f"{text}; {problems[0][1]}")
    return _Cond("False", "Staging", text + " (serving pods on the others wait for their copy)")


# The fields the reconciler writes (server-side apply, field manager RECONCILER_MANAGER).
# Everything else in status belongs to another writer: `autoscaling` and the
# `Autoscaling` condition to the autoscaler. The reconciler never sends those, so it can
# neither replace nor roll them back.
RECONCILER_MANAGER = "llmops-reconciler"
OWNED_CONDITIONS = (READY, PROGRESSING, DEGRADED, MODEL_STAGED, GROUP_BACKEND)


def build_status(
    d: LLMDeployment,
    observed: Observed,
    sharding: ResolvedSharding,
    previous: dict[str, Any] | None,
    now: str,
    backend: Optional[BackendChoice] = None,
) -> LLMDeploymentStatus:
    """The reconciler's share of status. `now` is an RFC 3339 timestamp supplied by the caller;
    `previous` is only read for the transition times of the reconciler's own conditions."""
    generation = d.metadata.generation or 0
    phase, conditions, counts = _conditions(d, observed)
    if d.spec.model.prestage.enabled and not observed.error:
        conditions[MODEL_STAGED] = _staging_condition(observed)
    if backend is not None:  # multi-node only
        conditions[GROUP_BACKEND] = _Cond("True", backend.reason, backend.message)
    earlier = (previous or {}).get("conditions") or []
    return LLMDeploymentStatus(
        observed_generation=generation,
        phase=phase,
        conditions=[merge_condition(earlier, Condition(type=t, status=c.status, reason=c.reason, message=c.message,
                                                       observed_generation=generation), now)
                    for t, c in conditions.items()],
        replicas=counts["replicas"],
        ready_replicas=counts["ready"],
        updated_replicas=counts["updated"],
        selector=selector_string(d),
        endpoint=service_endpoint(d, VLLM_PORT),
        tensor_parallel_size=sharding.tensor_parallel_size,
        pipeline_parallel_size=sharding.pipeline_parallel_size,
        nodes_per_replica=sharding.nodes_per_replica,
        sharding_source=sharding.source,
        group_backend=backend.backend if backend is not None else None,
    )


def compute_status(d: LLMDeployment, observed: Observed, sharding: ResolvedSharding,
                   previous: dict[str, Any] | None, now: str, backend: Optional[BackendChoice] = None) -> dict[str, Any]:
    """build_status as the JSON the reconciler applies."""
    return build_status(d, observed, sharding, previous, now, backend).to_patch()


def status_changed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Does `new` (one writer's share) differ from what `old` (the whole status) holds?
    Conditions compare by type, so another writer's conditions are not a difference."""
    old = old or {}
    for key, value in new.items():
        if key == "conditions":
            held = {c.get("type"): c for c in old.get("conditions") or []}
            if any(held.get(c["type"]) != c for c in value):
                return True
        elif old.get(key) != value:
            return True
    return False
