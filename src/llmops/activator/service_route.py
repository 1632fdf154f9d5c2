"""The operator's side of the activator: route a deployment's Service (observe pods and the
activator's Endpoints through kube.py, decide with the pure llmops.activator.routing)."""

from __future__ import annotations

from typing import Any, Optional

from llmops.activator import routing
from llmops.api.v1alpha1 import LLMDeployment
from llmops.kube import Kube
from llmops.render import render_children
from llmops.render.context import ClusterCapabilities, ResolvedSharding
from llmops.render.meta import selector_string
from llmops.snapshot import Snapshot, already_applied


def activator_wanted(d: LLMDeployment, capabilities: ClusterCapabilities) -> bool:
    return d.spec.activator.enabled and capabilities.activator is not None


def route_children(kube: Kube, d: LLMDeployment, children: list[dict[str, Any]], multi_node: bool,
                   capabilities: ClusterCapabilities, pods: Optional[list[dict[str, Any]]] = None
                   ) -> list[dict[str, Any]]:
    """`children` with the Service pointed at the activator while no replica is Ready;
    unchanged (today's Service) unless spec.activator.enabled and an activator is installed."""
    if not activator_wanted(d, capabilities):
        return children
    if pods is None:
        pods = kube.list_pods(d.namespace, selector_string(d))
    ready = routing.ready_serving_pods(pods, multi_node)
    target = routing.endpoint_target(d.spec.activator.enabled, capabilities.activator is not None, bool(ready))
    endpoints = None
    if target is routing.Target.activator:
        ref = routing.ActivatorRef.parse(capabilities.activator)
        endpoints = kube.get("v1", "Endpoints", ref.name, ref.namespace)
    return routing.routed_children(children, d, target, endpoints)


def sync_route(kube: Kube, d: LLMDeployment, sharding: ResolvedSharding, capabilities: ClusterCapabilities,
               pods: list[dict[str, Any]], snapshot: Optional[Snapshot] = None) -> None:
    """After a pod change: apply the Service (and, while held, the Endpoints) of the route the
    pods call for. A Service the cache already shows as routed is not applied again; Endpoints
    are not cached, and are re-applied so that an overwrite by the endpoints controller is undone."""
    if not activator_wanted(d, capabilities):
        return
    service = next(c for c in render_children(d, sharding, capabilities) if c["kind"] == "Service")
    multi_node = sharding.nodes_per_replica > 1
    for obj in routing.routed_objects(route_children(kube, d, [service], multi_node, capabilities, pods)):
        cached = (snapshot.children.get((obj["kind"], obj["metadata"]["name"]))
                  if snapshot is not None and obj["kind"] in snapshot.kinds else None)
        if cached is not None and already_applied(obj, cached):
            continue
        kube.apply(obj)
