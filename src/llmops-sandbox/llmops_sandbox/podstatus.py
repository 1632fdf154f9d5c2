"""Pod status as the kubelet would report it, built from observed container state (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

BACKOFF_BASE_SECONDS = 2.0     # the kubelet uses 10 s; shorter keeps sandbox tests quick
BACKOFF_MAX_SECONDS = 60.0


@dataclass(frozen=True)
class ContainerView:
    """What the agent knows about one container right now."""

    name: str
    image: str
    state: str                          # "waiting" | "running" | "terminated"
    reason: str | None = None           # waiting/terminated reason
    message: str | None = None
    started_at: str | None = None       # running/terminated
    finished_at: str | None = None      # terminated
    exit_code: int | None = None        # terminated
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str | None = None
    last_terminated: dict[str, Any] | None = None   # {exitCode, reason, startedAt, finishedAt}


def should_restart(restart_policy: str, exit_code: int) -> bool:
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def restart_backoff(restart_count: int) -> float:
    """Delay before the (restart_count+1)-th restart: doubling, capped."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * (2 ** max(0, restart_count - 1)))


def terminated_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def container_status(view: ContainerView) -> dict[str, Any]:
    if view.state == "running":
        state: dict[str, Any] = {"running": {"startedAt": view.started_at}}
    elif view.state == "terminated":
        state = {"terminated": {
            "exitCode": view.exit_code, "reason": view.reason or terminated_reason(view.exit_code or 0),
            "startedAt": view.started_at, "finishedAt": view.finished_at,
            **({"message": view.message} if view.message else {}),
            **({"containerID": view.container_id} if view.container_id else {}),
        }}
    else:
        waiting: dict[str, Any] = {"reason": view.reason or "ContainerCreating"}
        if view.message:
            waiting["message"] = view.message
        state = {"waiting": waiting}
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": f"sandbox://{view.image}",
        "ready": view.ready,
        "started": view.started,
        "restartCount": view.restart_count,
        "state": state,
        "lastState": {"terminated": view.last_terminated} if view.last_terminated else {},
    }
    if view.container_id:
        status["containerID"] = view.container_id
    return status


def pod_phase(
    containers: Sequence[ContainerView], restart_policy: str, init_done: bool, init_failed: bool
) -> str:
    if init_failed:
        return "Failed"
    if not init_done or not containers:
        return "Pending"
    states = [c.state for c in containers]
    if all(s == "terminated" for s in states):
        codes = [c.exit_code or 0 for c in containers]
        if restart_policy == "Never" or (restart_policy == "OnFailure" and all(c == 0 for c in codes)):
            return "Succeeded" if all(c == 0 for c in codes) else "Failed"
        return "Running"  # about to be restarted
    if any(s == "running" for s in states):
        return "Running"
    if any(c.restart_count > 0 or c.state == "terminated" for c in containers):
        return "Running"  # in restart backoff
    return "Pending"


def _condition(type_: str, ok: bool, now: str, previous: dict[str, dict], reason: str | None = None,
               message: str | None = None) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = previous.get(type_)
    transition = prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get("lastTransitionTime") else now
    cond: dict[str, Any] = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": transition}
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def build_pod_status(
    *,
    containers: Sequence[ContainerView],
    init_containers: Sequence[ContainerView] = (),
    restart_policy: str,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    now: str,
    previous_conditions: Sequence[dict] = (),
    readiness_gates: Sequence[str] = (),
    init_failed: bool = False,
) -> dict[str, Any]:
    """The full `status` of a pod bound to a simulated node."""
    previous = {c.get("type"): c for c in previous_conditions or ()}
    init_done = all(c.state == "terminated" and c.exit_code == 0 for c in init_containers)
    phase = pod_phase(containers, restart_policy, init_done, init_failed)
    not_ready = [c.name for c in containers if not c.ready]
    containers_ready = init_done and not not_ready and phase == "Running"
    gates_ok = all(previous.get(g, {}).get("status") == "True" for g in readiness_gates)
    if phase == "Succeeded":
        reason, message = "PodCompleted", None
    else:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else None
    pending_init = [c.name for c in init_containers if not (c.state == "terminated" and c.exit_code == 0)]
    conditions = [
        _condition("Initialized", init_done, now, previous, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(pending_init)}]"),
        _condition("Ready", containers_ready and gates_ok, now, previous,
                   reason if not containers_ready else "ReadinessGatesNotReady",
                   message if not containers_ready else "some readiness gates are not True"),
        _condition("ContainersReady", containers_ready, now, previous, reason, message),
        _condition("PodScheduled", True, now, previous),
    ]
    for gate in readiness_gates:  # conditions owned by others stay as they are
        if gate in previous:
            conditions.append(previous[gate])
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "startTime": start_time,
        "containerStatuses": [container_status(c) for c in containers],
    }
    if init_containers:
        status["initContainerStatuses"] = [container_status(c) for c in init_containers]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
