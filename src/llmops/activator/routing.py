"""PURE: where an LLMDeployment's Service sends traffic, its pods or the activator.

While at least one serving pod (a single-node replica, or the leader of a complete
multi-node group: its Ready condition includes the group's readiness gate) is Ready, the
Service keeps its selector and Kubernetes' endpoints controller manages its Endpoints exactly
as without the activator: no extra hop, and a stopping pod leaves the endpoints as fast as
ever (the drain depends on it). While none is Ready, the Service loses its selector and the
operator writes its Endpoints itself, pointing at the activator's ready addresses.

Knative does the same job with two Services per revision: a selectorless public one whose
Endpoints its ServerlessService reconciler copies from either the private Service (serve mode)
or the activator (proxy mode) on every change (knative/serving
pkg/reconciler/serverlessservice/serverlessservice.go, reconcilePublicEndpoints). We switch
modes only at the 0 <-> 1 Ready boundary instead, so a serving deployment has no operator
in its endpoint path at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Optional, Sequence

from llmops.api.v1alpha1 import LLMDeployment
from llmops.render.group import ROLE_LABEL

ROUTE_ANNOTATION = "llmops.io/route"  # on the Service (and its routed Endpoints): pods | activator


class Target(str, Enum):
    pods = "pods"
    activator = "activator"


@dataclass(frozen=True)
class ActivatorRef:
    """The activator's Service, `NAMESPACE/NAME` (`llmops run --activator`, set by the chart)."""

    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> "ActivatorRef":
        namespace, sep, name = text.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"--activator {text!r}: expected NAMESPACE/SERVICE, e.g. llmops/llmops-activator")
        return cls(namespace, name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _ready(pod: Mapping[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False  # stopping: it is draining, not taking new work
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def serving_pods(pods: Sequence[Mapping[str, Any]], multi_node: bool) -> list[Mapping[str, Any]]:
    """Pods that answer the API: every pod of a single-node deployment, group leaders otherwise.
    A group's worker never serves, whatever the caller knows about the shape."""
    def role(p: Mapping[str, Any]) -> Optional[str]:
        return (p["metadata"].get("labels") or {}).get(ROLE_LABEL)

    return [p for p in pods if role(p) != "worker" and (not multi_node or role(p) == "leader")]


def ready_serving_pods(pods: Sequence[Mapping[str, Any]], multi_node: bool) -> list[Mapping[str, Any]]:
    return [p for p in serving_pods(pods, multi_node) if _ready(p) and (p.get("status") or {}).get("podIP")]


def endpoint_target(activator_enabled: bool, activator_installed: bool, any_ready: bool) -> Target:
    """The activator only when the spec asks for it, one is installed, and no replica is Ready."""
    if activator_enabled and activator_installed and not any_ready:
        return Target.activator
    return Target.pods


def activator_subsets(endpoints: Optional[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The activator Service's ready addresses on its `http` port (none: no subsets, so the
    deployment's Service has no endpoints, as it has today at zero replicas)."""
    subsets = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if p.get("name") == "http"] or (subset.get("ports") or [])[:1]
        addresses = [{"ip": a["ip"]} for a in subset.get("addresses") or [] if a.get("ip")]
        if ports and addresses:
            subsets.append({"addresses": addresses,
                            "ports": [{"name": "http", "port": int(ports[0]["port"]), "protocol": "TCP"}]})
    return subsets


def routed_children(children: list[dict[str, Any]], d: LLMDeployment, target: Target,
                    activator_endpoints: Optional[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`children` with the deployment's Service routed to `target`: annotated in either case;
    for the activator without its selector and followed by the Endpoints we manage."""
    out = []
    for child in children:
        if child["kind"] != "Service" or child["metadata"]["name"] != d.name:
            out.append(child)
            continue
        meta = {**child["metadata"], "annotations": {**child["metadata"].get("annotations", {}),
                                                     ROUTE_ANNOTATION: target.value}}
        if target is Target.pods:
            out.append({**child, "metadata": meta})
            continue
        # Selectorless: the endpoints controller leaves its Endpoints to us (the port is theirs).
        spec = {k: v for k, v in child["spec"].items() if k != "selector"}
        out.append({**child, "metadata": meta, "spec": spec})
        out.append({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {k: v for k, v in meta.items() if k in ("name", "namespace", "labels", "annotations",
                                                                 "ownerReferences")},
            "subsets": activator_subsets(activator_endpoints),
        })
    return out


def routed_objects(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Service and Endpoints among routed children (what a pod change may have to re-apply)."""
    return [c for c in children if c["kind"] in ("Service", "Endpoints") and ROUTE_ANNOTATION in
            (c["metadata"].get("annotations") or {})]
