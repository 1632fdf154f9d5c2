"""Glue between the operator and the policy: count replicas, evaluate, write the result.

The only writes are `spec.replicas` through the /scale subresource (the same path HPA/KEDA
use, so the LLMDeployment stays the one owner of the replica count) and `status`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

from llmops.api.autoscaling import WAKE_ANNOTATION, AutoscalingSpec
from llmops.autoscale.evaluate import Evaluation, evaluate_once, evaluation_due
from llmops.autoscale.pods import pod_facts
from llmops.autoscale.prometheus import PrometheusClient
from llmops.autoscale.queries import in_flight_by_pod_query
from llmops.autoscale.victims import DELETION_COST_ANNOTATION, Victims, plan_scale_down
from llmops.api.v1alpha1 import Condition, LLMDeploymentSpec, LLMDeploymentStatus
from llmops.conditions import merge_condition
from llmops.kube import Kube
from llmops.planner.memory import engine_max_num_seqs
from llmops.render.meta import DEPLOYMENT_LABEL
from llmops.timestamps import rfc3339 as _rfc3339


# The autoscaler's share of status: `autoscaling` and the `Autoscaling` condition, written by
# server-side apply under its own field manager (the reconciler owns the rest).
AUTOSCALER_MANAGER = "llmops-autoscaler"


def autoscaler_status(previous: dict[str, Any], condition: dict[str, Any], now: str,
                      autoscaling: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """What the autoscaler applies: its condition (transition time kept while the status holds)
    and, when it decided, its state. Without `autoscaling` the state already held is re-sent
    unchanged, because a server-side apply that leaves a field out gives it up."""
    merged = merge_condition(previous.get("conditions"), Condition.model_validate(condition), now)
    state = autoscaling if autoscaling is not None else previous.get("autoscaling")
    return LLMDeploymentStatus(conditions=[merged], autoscaling=state).to_patch()


@dataclass(frozen=True)
class Scaled:
    evaluation: Evaluation
    scaled_from: int
    scaled_to: int
    victims: Optional[Victims] = None  # scale-downs: which pods or groups go, and why


def _engine_slots(spec: dict[str, Any]) -> Optional[int]:
    try:
        return engine_max_num_seqs(LLMDeploymentSpec.model_validate(spec))
    except ValueError:  # an invalid spec is reported by reconcile; scale on the other signals
        return None


async def autoscale_once(
    kube: Kube,
    prometheus: Optional[PrometheusClient],
    body: dict[str, Any],
    now: float,
    pods: Optional[list[dict[str, Any]]] = None,
) -> Optional[Evaluation | Scaled]:
    """Evaluate one LLMDeployment if a decision is due; scale and record. None = not due.
    `pods`: the deployment's pods from the operator's cache (else they are listed)."""
    meta, spec, status = body["metadata"], body["spec"], body.get("status") or {}
    policy = AutoscalingSpec.model_validate(spec["autoscaling"])
    previous = status.get("autoscaling")
    if not evaluation_due(policy, previous, now):
        return None
    name, namespace = meta["name"], meta["namespace"]
    current = int(spec.get("replicas", 0))
    if prometheus is None:
        condition = {"type": "Autoscaling", "status": "False", "reason": "PrometheusNotConfigured",
                     "message": "the operator has no Prometheus URL (--prometheus-url); replicas are held"}
        await asyncio.to_thread(kube.apply_llmdeployment_status, name, namespace,
                                autoscaler_status(status, condition, _rfc3339(now)), AUTOSCALER_MANAGER)
        return None

    if pods is None:  # no watch-fed cache given: ask the API server
        pods = await asyncio.to_thread(kube.list_pods, namespace, f"{DEPLOYMENT_LABEL}={name}")
    evaluation = await evaluate_once(
        prometheus,
        namespace=namespace,
        name=name,
        spec=policy,
        pods=pod_facts(current, pods, now),
        engine_slots=_engine_slots(spec),
        previous_status=previous,
        now=now,
        wake_annotation=(meta.get("annotations") or {}).get(WAKE_ANNOTATION),
    )
    victims = None
    if evaluation.desired_replicas < current:
        victims = await _mark_victims(kube, prometheus, namespace, name, status, pods, current,
                                      evaluation.desired_replicas)
    if evaluation.desired_replicas != current:
        await asyncio.to_thread(kube.scale_llmdeployment, name, namespace, evaluation.desired_replicas)
    await asyncio.to_thread(
        kube.apply_llmdeployment_status, name, namespace,
        autoscaler_status(status, evaluation.condition, _rfc3339(now), evaluation.status), AUTOSCALER_MANAGER,
    )
    if evaluation.desired_replicas != current:
        return Scaled(evaluation, current, evaluation.desired_replicas, victims)
    return evaluation


async def _mark_victims(kube: Kube, prometheus: PrometheusClient, namespace: str, name: str, status: dict[str, Any],
                        pods: list[dict[str, Any]], current: int, desired: int) -> Optional[Victims]:
    """Annotate each serving pod's deletion cost from its live in-flight work, so the
    ReplicaSet removes the idlest. Without per-pod data (Prometheus down) every pod costs the
    same and the ReplicaSet's own order applies; the drain keeps requests safe either way."""
    outcome = await prometheus.instant_query(in_flight_by_pod_query(namespace, name))
    in_flight = {s.labels["pod"]: s.value for s in outcome.samples if "pod" in s.labels}
    multi_node = int(status.get("nodesPerReplica") or 1) > 1
    victims = plan_scale_down(pods, in_flight, current, desired, multi_node)
    for pod_name, cost in (victims.costs if victims else {}).items():
        await asyncio.to_thread(kube.annotate_pod_if_present, namespace, pod_name, {DELETION_COST_ANNOTATION: str(cost)})
    return victims
