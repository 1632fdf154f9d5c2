"""The operator's own Prometheus metrics (served by `llmops run --metrics-port`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("llmops_reconcile_total", "Reconciles run, by trigger.", ["trigger"])
RECONCILE_ERRORS = Counter("llmops_reconcile_errors_total", "Reconciles that raised, by trigger.", ["trigger"])
RECONCILE_SECONDS = Histogram(
    "llmops_reconcile_duration_seconds", "Time to reconcile one LLMDeployment.", ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_DEPLOYMENT = ["namespace", "llmdeployment"]
DESIRED_REPLICAS = Gauge("llmops_desired_replicas", "spec.replicas of an LLMDeployment.", _DEPLOYMENT)
CURRENT_REPLICAS = Gauge("llmops_current_replicas", "Replicas that exist.", _DEPLOYMENT)
READY_REPLICAS = Gauge("llmops_ready_replicas", "Replicas ready to serve.", _DEPLOYMENT)
AUTOSCALER_DECISIONS = Counter(
    "llmops_autoscaler_decisions_total", "Autoscaler decisions, by reason.", [*_DEPLOYMENT, "reason"]
)
AUTOSCALER_RECOMMENDED = Gauge(
    "llmops_autoscaler_desired_replicas", "Replicas the autoscaler last asked for.", _DEPLOYMENT
)
AUTOSCALER_METRIC_VALUE = Gauge(
    "llmops_autoscaler_metric_value", "Last value of each autoscaling metric.", [*_DEPLOYMENT, "metric"]
)
AUTOSCALER_METRIC_TARGET = Gauge(
    "llmops_autoscaler_metric_target", "Target of each autoscaling metric.", [*_DEPLOYMENT, "metric"]
)

_PER_DEPLOYMENT = [DESIRED_REPLICAS, CURRENT_REPLICAS, READY_REPLICAS, AUTOSCALER_RECOMMENDED]


def record_replicas(namespace: str, name: str, spec: Any, status: dict[str, Any]) -> None:
    DESIRED_REPLICAS.labels(namespace, name).set(spec.get("replicas", 0) or 0)
    if "replicas" in status:
        CURRENT_REPLICAS.labels(namespace, name).set(status.get("replicas") or 0)
        READY_REPLICAS.labels(namespace, name).set(status.get("readyReplicas") or 0)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted deployment's series so dashboards do not show ghosts."""
    for gauge in _PER_DEPLOYMENT:
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass


def record_autoscaler(namespace: str, name: str, decision: Any) -> None:
    AUTOSCALER_DECISIONS.labels(namespace, name, decision.reason.value).inc()
    AUTOSCALER_RECOMMENDED.labels(namespace, name).set(decision.desired_replicas)
    for metric in decision.metrics:
        if metric.value is not None:
            AUTOSCALER_METRIC_VALUE.labels(namespace, name, metric.name).set(metric.value)
        AUTOSCALER_METRIC_TARGET.labels(namespace, name, metric.name).set(metric.target)
