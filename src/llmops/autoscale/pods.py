"""What the autoscaler learns from a deployment's pods: capacity, cold starts, the scheduler.

Pure: pod dicts (as the API returns them) and `now` in, facts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from llmops.autoscale.policy import Capacity
from llmops.timestamps import parse_rfc3339 as _time

# Recent start durations kept in status.autoscaling.coldStarts (one per pod, newest last).
COLD_START_HISTORY = 10


@dataclass(frozen=True)
class ReplicaCounts:
    current: int   # spec.replicas now
    ready: int     # pods Ready
    starting: int  # pods that exist but are not Ready (pending, pulling, loading the model)


@dataclass(frozen=True)
class PodFacts:
    counts: ReplicaCounts
    starting_ages: tuple[float, ...] = ()          # seconds since each starting pod was created
    started: tuple[tuple[str, float], ...] = ()    # (pod name, created -> Ready seconds) of first starts
    capacity: Capacity = Capacity()


def _condition(status: dict[str, Any], kind: str) -> Optional[dict[str, Any]]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _live(pod: dict[str, Any]) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _first_start_seconds(pod: dict[str, Any]) -> Optional[float]:
    """created -> Ready of a pod that became Ready once and never restarted (a restart's
    Ready time says nothing about a cold start)."""
    status = pod.get("status") or {}
    ready = _condition(status, "Ready")
    if not ready or ready.get("status") != "True":
        return None
    if any((c.get("restartCount") or 0) > 0 for c in status.get("containerStatuses") or []):
        return None
    created = _time(pod.get("metadata", {}).get("creationTimestamp"))
    became_ready = _time(ready.get("lastTransitionTime"))
    if created is None or became_ready is None or became_ready < created:
        return None
    return became_ready - created


def pod_facts(current: int, pods: list[dict[str, Any]], now: float) -> PodFacts:
    """Ready pods are capacity; pods that exist but are not Ready (scheduling, loading the
    model) are 'starting'; terminating pods are neither."""
    ready = 0
    ages: list[float] = []
    started: list[tuple[str, float]] = []
    unschedulable = 0
    message = ""
    for pod in filter(_live, pods):
        status = pod.get("status") or {}
        condition = _condition(status, "Ready")
        if condition and condition.get("status") == "True":
            ready += 1
            seconds = _first_start_seconds(pod)
            if seconds is not None:
                started.append((pod["metadata"].get("name", ""), seconds))
            continue
        created = _time(pod.get("metadata", {}).get("creationTimestamp"))
        ages.append(max(0.0, now - created) if created is not None else 0.0)
        scheduled = _condition(status, "PodScheduled")
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            unschedulable += 1
            message = message or (scheduled.get("message") or "")
    return PodFacts(
        counts=ReplicaCounts(current=current, ready=ready, starting=len(ages)),
        starting_ages=tuple(sorted(ages)),
        started=tuple(started),
        capacity=Capacity(unschedulable=unschedulable, message=message),
    )


def merge_cold_starts(
    known: Optional[list[Any]], started: tuple[tuple[str, float], ...]
) -> list[list[Any]]:
    """status.autoscaling.coldStarts: [[pod, seconds], ...], one entry per pod, newest last,
    bounded; anything malformed in `known` is dropped."""
    entries: list[list[Any]] = []
    for item in known or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], (int, float)):
            entries.append([str(item[0]), float(item[1])])
    seen = {name for name, _ in entries}
    for name, seconds in started:
        if name not in seen:
            entries.append([name, round(seconds, 1)])
            seen.add(name)
    return entries[-COLD_START_HISTORY:]
