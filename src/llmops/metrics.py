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

# mode demand: each sizing term's answer and the inputs behind it (llmops.autoscale.demand).
AUTOSCALER_TERM_REPLICAS = Gauge(
    "llmops_autoscaler_term_replicas", "Replicas each demand term asked for (steady, backlog, drain, hold).",
    [*_DEPLOYMENT, "term"],
)
AUTOSCALER_ARRIVAL_RATE = Gauge(
    "llmops_autoscaler_arrival_rate", "Offered load: requests/s arriving, by window (fast, slow).",
    [*_DEPLOYMENT, "window"],
)
AUTOSCALER_SERVICE_SECONDS = Gauge(
    "llmops_autoscaler_service_seconds", "Seconds a request holds an engine slot (as used for sizing).", _DEPLOYMENT
)
AUTOSCALER_SLOTS = Gauge(
    "llmops_autoscaler_slots_per_replica", "Concurrent requests one replica holds (as used for sizing).", _DEPLOYMENT
)
AUTOSCALER_BUSY_SLOTS = Gauge(
    "llmops_autoscaler_offered_load_slots", "Arrival rate x service time: engine slots the load keeps busy.",
    _DEPLOYMENT,
)
AUTOSCALER_COLD_START = Gauge(
    "llmops_autoscaler_cold_start_seconds", "Cold-start estimate (learned from pods, or the hint).", _DEPLOYMENT
)
AUTOSCALER_PROJECTED_QUEUE = Gauge(
    "llmops_autoscaler_projected_queue", "Waiting requests projected one cold start ahead.", _DEPLOYMENT
)
AUTOSCALER_CAPACITY_CAP = Gauge(
    "llmops_autoscaler_capacity_cap",
    "Replicas allowed by schedulable capacity (scheduled + 1 probe); -1 when no pod is unschedulable.",
    _DEPLOYMENT,
)

_PER_DEPLOYMENT = [
    DESIRED_REPLICAS, CURRENT_REPLICAS, READY_REPLICAS, AUTOSCALER_RECOMMENDED, AUTOSCALER_SERVICE_SECONDS,
    AUTOSCALER_SLOTS, AUTOSCALER_BUSY_SLOTS, AUTOSCALER_COLD_START, AUTOSCALER_PROJECTED_QUEUE,
    AUTOSCALER_CAPACITY_CAP,
]
# Gauges with one more label than the deployment's: (gauge, the label's values).
_PER_DEPLOYMENT_LABELLED = [
    (AUTOSCALER_TERM_REPLICAS, ("steady", "backlog", "drain", "hold")),
    (AUTOSCALER_ARRIVAL_RATE, ("fast", "slow")),
]
# term input -> (gauge, extra label values)
_TERM_INPUTS = {
    "arrivalFast": (AUTOSCALER_ARRIVAL_RATE, ("fast",)),
    "arrivalSlow": (AUTOSCALER_ARRIVAL_RATE, ("slow",)),
    "serviceSeconds": (AUTOSCALER_SERVICE_SECONDS, ()),
    "slotsPerReplica": (AUTOSCALER_SLOTS, ()),
    "load": (AUTOSCALER_BUSY_SLOTS, ()),
    "horizonSeconds": (AUTOSCALER_COLD_START, ()),
    "projectedQueue": (AUTOSCALER_PROJECTED_QUEUE, ()),
}


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
    for gauge, values in _PER_DEPLOYMENT_LABELLED:
        for value in values:
            try:
                gauge.remove(namespace, name, value)
            except KeyError:
                pass


def record_autoscaler(namespace: str, name: str, decision: Any) -> None:
    AUTOSCALER_DECISIONS.labels(namespace, name, decision.reason.value).inc()
    AUTOSCALER_RECOMMENDED.labels(namespace, name).set(decision.desired_replicas)
    for metric in decision.metrics:
        if metric.value is not None:
            AUTOSCALER_METRIC_VALUE.labels(namespace, name, metric.name).set(metric.value)
        AUTOSCALER_METRIC_TARGET.labels(namespace, name, metric.name).set(metric.target)
    terms = {term.name: term for term in decision.terms}
    for term in ("steady", "backlog", "drain", "hold") if terms else ():
        # A term that did not speak this time reads 0, not its last value.
        answer = terms[term].replicas if term in terms else None
        AUTOSCALER_TERM_REPLICAS.labels(namespace, name, term).set(answer or 0)
    for term in decision.terms:
        for key, value in term.inputs.items():
            if key in _TERM_INPUTS and isinstance(value, (int, float)):
                gauge, extra = _TERM_INPUTS[key]
                gauge.labels(namespace, name, *extra).set(value)
    cap = (decision.capacity or {}).get("cap")
    AUTOSCALER_CAPACITY_CAP.labels(namespace, name).set(cap if cap is not None else -1)
