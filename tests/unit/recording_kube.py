"""A recording stand-in for the thin `Kube` interface, for tests of decisions (what the
operator asks the API server to do). What the API server then does is tested against the
real one (tests/integration)."""

from __future__ import annotations

import copy
from typing import Any, Optional


class RecordingKube:
    def __init__(self, objects: Optional[list[dict[str, Any]]] = None, pods: Optional[list[dict[str, Any]]] = None):
        self.objects = {self._key(o): copy.deepcopy(o) for o in objects or []}
        self.pods = list(pods or [])
        self.calls: list[tuple] = []
        self._rv = 100

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple:
        return (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def writes(self, verb: Optional[str] = None) -> list[tuple]:
        reads = {"get", "list", "list_pods"}
        return [c for c in self.calls if c[0] not in reads and (verb is None or c[0] == verb)]

    # -- the Kube verbs reconcile and the actuator use ---------------------------------------
    def get(self, api_version, kind, name, namespace):
        self.calls.append(("get", kind, name))
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def apply(self, obj):
        self.calls.append(("apply", obj["kind"], obj["metadata"]["name"]))
        key = self._key(obj)
        old = self.objects.get(key)
        if old is None or self._spec_of(old) != self._spec_of(obj):
            self._rv += 1
        stored = {**copy.deepcopy(obj), "status": (old or {}).get("status", {})}
        stored["metadata"] = {**stored["metadata"], "resourceVersion": str(self._rv)}
        self.objects[key] = stored
        return copy.deepcopy(stored)

    @staticmethod
    def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}

    def list(self, api_version, kind, namespace, selector=""):
        self.calls.append(("list", kind))
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]

    def delete(self, api_version, kind, name, namespace):
        self.calls.append(("delete", kind, name))
        self.objects.pop((kind, namespace, name), None)

    def list_pods(self, namespace, selector):
        self.calls.append(("list_pods", selector))
        return copy.deepcopy(self.pods)

    def delete_pod(self, namespace, name, uid):
        self.calls.append(("delete_pod", name, uid))
        return True

    def annotate_pod(self, namespace, name, annotations):
        self.calls.append(("annotate_pod", name, dict(annotations)))

    def annotate_pod_if_present(self, namespace, name, annotations):
        self.annotate_pod(namespace, name, annotations)
        return True

    def set_pod_condition(self, namespace, name, condition):
        self.calls.append(("set_pod_condition", name, condition["type"], condition["status"]))

    def apply_llmdeployment_status(self, name, namespace, status, manager):
        self.calls.append(("apply_status", manager, copy.deepcopy(status)))

    def scale_llmdeployment(self, name, namespace, replicas):
        self.calls.append(("scale", replicas))

    def post_event(self, involved, type_, reason, message):
        self.calls.append(("event", reason))
