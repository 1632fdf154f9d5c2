"""PURE: which workload runs a multi-node deployment's groups, StatefulSets or LeaderWorkerSets.

The cluster's capabilities can change while the operator runs (someone installs or removes
LeaderWorkerSet). Switching a running deployment's groups re-creates every group, so it is
never done silently, neither at once nor at the next operator restart: the backend a
deployment runs on is recorded in `status.groupBackend` and kept until the user asks for the
other one (annotation `llmops.io/group-backend`) or it stops existing. The `GroupBackend`
condition says which one is used and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

STATEFULSET, LWS = "StatefulSet", "LeaderWorkerSet"
BACKEND_ANNOTATION = "llmops.io/group-backend"
GROUP_BACKEND = "GroupBackend"  # the condition type


@dataclass(frozen=True)
class BackendChoice:
    backend: str
    reason: str
    message: str
    switched: bool = False  # from a different recorded backend: the groups are re-created


def choose_group_backend(body: dict[str, Any], lws_available: bool) -> BackendChoice:
    recorded: Optional[str] = (body.get("status") or {}).get("groupBackend")
    asked = ((body.get("metadata") or {}).get("annotations") or {}).get(BACKEND_ANNOTATION)
    if asked == LWS and not lws_available:
        if recorded == LWS:
            return BackendChoice(STATEFULSET, "LeaderWorkerSetRemoved",
                                 "LeaderWorkerSet is no longer installed: groups were re-created as StatefulSets",
                                 switched=True)
        return BackendChoice(STATEFULSET, "LeaderWorkerSetUnavailable",
                             f"{BACKEND_ANNOTATION}: {LWS} asked for, but LeaderWorkerSet is not installed; "
                             "groups run as StatefulSets")
    if asked in (LWS, STATEFULSET):
        return BackendChoice(asked, "Requested", f"groups run as {asked}s ({BACKEND_ANNOTATION})",
                             switched=recorded not in (None, asked))
    if recorded == LWS and not lws_available:
        return BackendChoice(STATEFULSET, "LeaderWorkerSetRemoved",
                             "LeaderWorkerSet is no longer installed: groups were re-created as StatefulSets",
                             switched=True)
    if recorded == STATEFULSET and lws_available:
        return BackendChoice(STATEFULSET, "KeptStatefulSets",
                             "LeaderWorkerSet is installed, but these groups stay StatefulSets: switching "
                             f"re-creates every group. To switch, set annotation {BACKEND_ANNOTATION}: {LWS}")
    if recorded in (STATEFULSET, LWS):
        return BackendChoice(recorded, "AsRecorded", f"groups run as {recorded}s")
    chosen = LWS if lws_available else STATEFULSET
    return BackendChoice(chosen, "Discovered", f"groups run as {chosen}s "
                         f"({'LeaderWorkerSet is installed' if lws_available else 'LeaderWorkerSet is not installed'})")
