"""PURE: readiness and restarts of multi-node groups rendered as StatefulSets.

A group is ready only when its leader's containers and all its workers are ready; the
operator reflects that in the leader's readiness gate, so Services route to complete groups
only. When a group has formed, the set of its members (pod UID and restart count) is
recorded on the leader; a member that is replaced or restarts breaks the vLLM/Ray group,
so the whole group is restarted, as LeaderWorkerSet's RecreateGroupOnPodRestart does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.render.group import GROUP_LABEL, GROUP_READY_GATE, ROLE_LABEL

MEMBERS_ANNOTATION = "llmops.io/group-members"


@dataclass
class Group:
    index: int
    leader: Optional[dict[str, Any]] = None
    workers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def members(self) -> list[dict[str, Any]]:
        return ([self.leader] if self.leader else []) + self.workers


@dataclass(frozen=True)
class SetGate:
    pod: str
    ready: bool
    members: str  # fingerprint to record when the group forms


@dataclass(frozen=True)
class Restart:
    group: int
    pods: tuple[str, ...]
    reason: str
    uids: tuple[str, ...] = ()  # of `pods`, in order: deletes carry them as preconditions


def _condition(pod: dict[str, Any], ctype: str) -> Optional[str]:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond.get("status")
    return None


def _alive(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded")


def _restarts(pod: dict[str, Any]) -> int:
    return sum(cs.get("restartCount", 0) for cs in (pod.get("status") or {}).get("containerStatuses") or [])


def fingerprint(group: Group) -> str:
    return ",".join(sorted(f"{p['metadata']['uid']}:{_restarts(p)}" for p in group.members))


def collect_groups(pods: list[dict[str, Any]], leader_set: str) -> dict[int, Group]:
    groups: dict[int, Group] = {}
    pattern = re.compile(rf"^{re.escape(leader_set)}-(\d+)$")
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        role = labels.get(ROLE_LABEL)
        if role == "leader" and (m := pattern.match(pod["metadata"]["name"])):
            groups.setdefault(int(m.group(1)), Group(int(m.group(1)))).leader = pod
        elif role == "worker" and (labels.get(GROUP_LABEL) or "").isdigit():
            index = int(labels[GROUP_LABEL])
            groups.setdefault(index, Group(index)).workers.append(pod)
    return groups


def plan_group_actions(pods: list[dict[str, Any]], leader_set: str, group_size: int) -> list[SetGate | Restart]:
    """What to do for each group, given every pod of the deployment."""
    actions: list[SetGate | Restart] = []
    for index, group in sorted(collect_groups(pods, leader_set).items()):
        leader = group.leader
        if leader is None or not _alive(leader):
            continue  # the StatefulSet is bringing the leader back; workers wait for it
        formed = (leader["metadata"].get("annotations") or {}).get(MEMBERS_ANNOTATION)
        current = fingerprint(group)
        gate = _condition(leader, GROUP_READY_GATE)
        if formed and formed != current:
            actions.append(Restart(index, tuple(p["metadata"]["name"] for p in group.members),
                                   "a member was replaced or restarted since the group formed",
                                   tuple(p["metadata"]["uid"] for p in group.members)))
            continue
        ready_workers = [w for w in group.workers if _alive(w) and _condition(w, "Ready") == "True"]
        complete = _condition(leader, "ContainersReady") == "True" and len(ready_workers) == group_size - 1
        if complete and gate != "True":
            actions.append(SetGate(leader["metadata"]["name"], True, current))
        elif not complete and gate == "True":
            actions.append(SetGate(leader["metadata"]["name"], False, formed or current))
        elif gate is None:
            actions.append(SetGate(leader["metadata"]["name"], False, ""))
    return actions
