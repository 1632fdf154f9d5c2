"""Which replicas a scale-down removes: the idlest ones.

Pure: pods (as the API returns them) and each pod's live in-flight work in, the
`controller.kubernetes.io/pod-deletion-cost` to write on each pod out. The ReplicaSet removes
Pending and not-Ready pods first, then the lowest cost (Kubernetes >= 1.22, or 1.21 with the
PodDeletionCost gate; older clusters ignore the annotation and remove the newest pods).
Multi-node groups live in StatefulSets or a LeaderWorkerSet, which always remove the highest
index: there is no choice to make, only one to explain (the removed group's leader drains like
any serving pod).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
# Below any serving pod's cost, so a pod still loading goes first even where the ReplicaSet
# ranks by cost alone (it already ranks not-Ready pods first).
NOT_READY_COST = -1


@dataclass(frozen=True)
class Victims:
    costs: dict[str, int]  # pod name -> deletion cost to annotate (single-node Deployments)
    note: str              # one sentence for the ScaledDown Event


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _serving(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def deletion_costs(pods: list[Mapping[str, Any]], in_flight: Mapping[str, float]) -> dict[str, int]:
    """Pod name -> cost: running + waiting requests of a Ready pod (0 when Prometheus has no
    sample for it yet: a pod that new has had no traffic to speak of), NOT_READY_COST for a
    pod that is not serving yet. Terminating pods are left alone."""
    costs: dict[str, int] = {}
    for pod in filter(_serving, pods):
        name = pod["metadata"]["name"]
        costs[name] = round(in_flight.get(name, 0.0)) if _ready(pod) else NOT_READY_COST
    return costs


def plan_scale_down(pods: list[Mapping[str, Any]], in_flight: Mapping[str, float], current: int, desired: int,
                    multi_node: bool) -> Optional[Victims]:
    """What to annotate and say before `current` -> `desired` replicas; None unless it is a
    scale-down."""
    if desired >= current:
        return None
    if multi_node:
        groups = list(range(current - 1, desired - 1, -1))
        busy = ", ".join(f"group {g}: {round(_group_load(in_flight, g))} in flight" for g in groups)
        return Victims({}, f"removing group{'s' if len(groups) > 1 else ''} {', '.join(map(str, groups))} "
                           f"(StatefulSets and LeaderWorkerSets remove the highest index; {busy}); "
                           "each leader drains its in-flight requests first")
    costs = deletion_costs(pods, in_flight)
    ranked = sorted(costs.items(), key=lambda item: (item[1], item[0]))
    going = ranked[: current - desired]
    described = ", ".join(f"{name} ({'not ready' if cost == NOT_READY_COST else f'{cost} in flight'})"
                          for name, cost in going)
    return Victims(costs, f"idlest pods go first: {described or 'none running'}; each drains before it stops")


def _group_load(in_flight: Mapping[str, float], group: int) -> float:
    """In-flight work of group `group`: its leader's, the only member serving metrics. Leaders
    are named NAME-leader-G (our StatefulSet) or NAME-G (LeaderWorkerSet)."""
    return sum(value for name, value in in_flight.items() if name.endswith(f"-{group}"))
