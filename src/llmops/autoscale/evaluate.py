"""One autoscaling evaluation for one LLMDeployment: query Prometheus, run the policy.

The operator calls `evaluate_once` from a Kopf timer (every
`spec.autoscaling.behavior.evaluationIntervalSeconds`), then writes
`evaluation.desired_replicas` to spec.replicas when it differs, `evaluation.status` to
status.autoscaling, and upserts `evaluation.condition` into status.conditions. Nothing here
raises on Prometheus trouble: failures become a held decision with a reason.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Optional

from llmops.api.autoscaling import AutoscalingMode, AutoscalingSpec
from llmops.autoscale.demand import DemandSignals, Signal, learned_cold_start, slots_signal
from llmops.autoscale.detect import NameDetection, detect_names
from llmops.autoscale.pods import PodFacts, ReplicaCounts, merge_cold_starts
from llmops.autoscale.policy import (
    AutoscalerState,
    Decision,
    MetricSample,
    PolicyInput,
    Reason,
    SampleStatus,
    WakeSignals,
    decide,
)
from llmops.autoscale.prometheus import OutcomeKind, PrometheusClient, QueryOutcome
from llmops.autoscale.queries import (
    DemandQueries,
    MetricNames,
    MetricQueries,
    activity_query,
    demand_queries,
    metric_queries,
    substitute,
)

CONDITION_TYPE = "Autoscaling"
# Decisions taken without usable metrics: the condition turns False so users notice.
_UNHEALTHY = {Reason.metrics_stale, Reason.metrics_unavailable, Reason.disabled}


@dataclass(frozen=True)
class Evaluation:
    decision: Decision
    state: AutoscalerState
    status: dict[str, Any]     # write to status.autoscaling (replaces the previous value)
    condition: dict[str, Any]  # upsert into status.conditions (operator sets lastTransitionTime)

    @property
    def desired_replicas(self) -> int:
        return self.decision.desired_replicas


async def evaluate_once(
    prometheus: PrometheusClient,
    *,
    namespace: str,
    name: str,
    spec: AutoscalingSpec,
    pods: PodFacts,
    previous_status: Optional[dict[str, Any]],
    now: float,
    wake_annotation: Optional[str] = None,
    engine_slots: Optional[int] = None,
) -> Evaluation:
    """`engine_slots`: the engine's max-num-seqs (as rendered, or vLLM's default for the GPU)."""
    replicas = pods.counts
    state = AutoscalerState.from_status(previous_status)
    cold_starts = merge_cold_starts((previous_status or {}).get("coldStarts"), pods.started)
    demand: Optional[DemandSignals] = None
    detection = NameDetection.from_status((previous_status or {}).get("metricNames"))
    samples: tuple[MetricSample, ...] = ()
    activity: Optional[float] = None
    activation: Optional[float] = None

    if spec.enabled:
        # With no Ready pod there is nothing to detect: keep the names found last time.
        # If Prometheus does not answer, keep them too rather than forget a good detection.
        if replicas.ready > 0 or detection is None:
            fresh = await detect_names(prometheus, namespace, name)
            if not (fresh.failed and detection is not None):
                detection = fresh
        names = detection.names if detection else MetricNames()
        plans = [metric_queries(m, namespace, name, names=names) for m in spec.metrics]
        extra: list[MetricQueries] = []
        if spec.min_replicas == 0:
            extra.append(activity_query(namespace, name, names=names))
        if spec.min_replicas == 0 and replicas.current == 0 and spec.activation_query:
            extra.append(MetricQueries(substitute(spec.activation_query, namespace, name)))
        outcomes = await asyncio.gather(*(_run(prometheus, plan) for plan in plans + extra))
        samples = tuple(
            _sample(metric, plan, value, age)
            for metric, plan, (value, age) in zip(spec.metrics, plans, outcomes[: len(plans)])
        )
        rest = list(outcomes[len(plans):])
        if spec.min_replicas == 0:
            activity = _fresh_value(*rest.pop(0), spec.behavior.metrics_max_age_seconds)
        if rest:
            activation = rest.pop(0)[0].scalar()
        if spec.mode is AutoscalingMode.demand:
            demand = await _demand_signals(prometheus, namespace, name, spec, names, pods, cold_starts, engine_slots)

    decision, state = decide(
        PolicyInput(
            spec=spec,
            now=now,
            current_replicas=replicas.current,
            ready_replicas=replicas.ready,
            starting_replicas=replicas.starting,
            samples=samples,
            activity=activity,
            wake=WakeSignals(annotation=wake_annotation, activation_value=activation),
            demand=demand,
            capacity=pods.capacity,
        ),
        state,
    )
    extra_status: dict[str, Any] = {"coldStarts": cold_starts}
    if detection is not None:
        extra_status["metricNames"] = detection.to_status()
    return Evaluation(decision, state, state.to_status(extra_status), condition_for(decision))


def evaluation_due(spec: AutoscalingSpec, previous_status: Optional[dict[str, Any]], now: float) -> bool:
    """For a Kopf timer firing more often than evaluationIntervalSeconds: is a decision due?"""
    last = AutoscalerState.from_status(previous_status).last_evaluated_at
    # A small allowance so a timer with the same period as the interval never skips a beat.
    return last is None or now - last >= spec.behavior.evaluation_interval_seconds - 0.5


def condition_for(decision: Decision) -> dict[str, Any]:
    return {
        "type": CONDITION_TYPE,
        "status": "False" if decision.reason in _UNHEALTHY else "True",
        "reason": decision.reason.condition_reason,
        "message": decision.message[:1024],
    }


async def _demand_signals(
    prometheus: PrometheusClient,
    namespace: str,
    name: str,
    spec: AutoscalingSpec,
    names: MetricNames,
    pods: PodFacts,
    cold_starts: list[list[Any]],
    engine_slots: Optional[int],
) -> DemandSignals:
    plan: DemandQueries = demand_queries(
        namespace, name,
        fast_window_seconds=spec.demand.fast_window_seconds,
        slow_window_seconds=spec.demand.slow_window_seconds,
        arrivals_query=spec.demand.arrivals_query,
        names=names,
    )
    keys = ("arrival_fast", "arrival_slow", "queue", "running", "service_seconds", "kv_usage")
    outcomes = await asyncio.gather(*(_run(prometheus, getattr(plan, key)) for key in keys))
    signals = {key: _signal(getattr(plan, key), *outcome) for key, outcome in zip(keys, outcomes)}
    kv = signals.pop("kv_usage")
    learned = learned_cold_start([seconds for _, seconds in cold_starts])
    return DemandSignals(
        **signals,
        slots_per_replica=slots_signal(engine_slots, signals["running"], kv, pods.counts.ready),
        cold_start_seconds=Signal(learned, 0.0, f"p90 of {len(cold_starts)} pod starts") if learned else Signal(),
        starting_ages=pods.starting_ages,
    )


def _signal(plan: MetricQueries, value: QueryOutcome, age: Optional[QueryOutcome]) -> Signal:
    if not value.ok:
        return Signal(source=plan.value, error=f"{value.kind.value}: {value.message}" if value.message else value.kind.value)
    return Signal(value.scalar(), _age_seconds(age), plan.value)


def _age_seconds(age: Optional[QueryOutcome]) -> Optional[float]:
    """The age query's answer; None when it failed, returned nothing or NaN."""
    seconds = age.scalar() if age is not None and age.ok else None
    return None if seconds is None or math.isnan(seconds) else seconds


async def _run(prometheus: PrometheusClient, plan: MetricQueries) -> tuple[QueryOutcome, Optional[QueryOutcome]]:
    if plan.age is None:
        return await prometheus.instant_query(plan.value), None
    value, age = await asyncio.gather(prometheus.instant_query(plan.value), prometheus.instant_query(plan.age))
    return value, age


def _sample(metric, plan: MetricQueries, value: QueryOutcome, age: Optional[QueryOutcome]) -> MetricSample:
    if value.kind in (OutcomeKind.unreachable, OutcomeKind.query_error):
        return MetricSample(metric, plan.value, SampleStatus.error, message=f"{value.kind.value}: {value.message}")
    if value.kind is OutcomeKind.empty:
        return MetricSample(
            metric, plan.value, SampleStatus.missing,
            message="no series matched (pods not scraped yet, stale, or the metric name differs)",
        )
    return MetricSample(metric, plan.value, SampleStatus.ok, value=value.scalar(), age_seconds=_age_seconds(age))


def _fresh_value(value: QueryOutcome, age: Optional[QueryOutcome], max_age: float) -> Optional[float]:
    if not value.ok:
        return None
    age_seconds = _age_seconds(age)
    if age_seconds is not None and age_seconds > max_age:
        return None
    result = value.scalar()
    return None if result is None or math.isnan(result) else result
