"""PromQL for each metric type, scoped to one LLMDeployment's pods.

Assumed target labels (attached by the pod scrape config / PodMonitor relabelling):
`namespace`, `pod`, and `llmops_deployment` = the LLMDeployment's name (from the pod label
`app.kubernetes.io/instance`). Each metric gets a value query and, where the underlying
series is known, an age query evaluated by Prometheus itself (`time() - max(timestamp(..))`)
so the operator's and Prometheus's clocks need not agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmops.api.autoscaling import MetricTarget, MetricType

DEPLOYMENT_LABEL = "llmops_deployment"
NAMESPACE_LABEL = "namespace"

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
GENERATION_TOKENS = "vllm:generation_tokens_total"
TTFT = "vllm:time_to_first_token_seconds"
KV_CACHE_CURRENT = "vllm:kv_cache_usage_perc"
KV_CACHE_LEGACY = "vllm:gpu_cache_usage_perc"
ITL_CURRENT = "vllm:inter_token_latency_seconds"
ITL_LEGACY = "vllm:time_per_output_token_seconds"
REQUEST_SUCCESS = "vllm:request_success_total"
INFERENCE_TIME = "vllm:request_inference_time_seconds"

DEFAULT_RATE_WINDOW = "1m"


@dataclass(frozen=True)
class MetricNames:
    """The series names to query; `llmops.autoscale.detect` fills them from what pods expose."""

    waiting: str = WAITING
    running: str = RUNNING
    generation_tokens: str = GENERATION_TOKENS
    ttft: str = TTFT  # histogram base name (+ _bucket / _count)
    kv_cache: str = KV_CACHE_CURRENT


@dataclass(frozen=True)
class MetricQueries:
    value: str                 # returns one number
    age: Optional[str] = None  # returns the age in seconds of the newest underlying sample


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(namespace: str, name: str) -> str:
    """Label matchers for one deployment's series, without braces."""
    return f"{NAMESPACE_LABEL}={_quote(namespace)},{DEPLOYMENT_LABEL}={_quote(name)}"


def substitute(query: str, namespace: str, name: str) -> str:
    # str.format would trip over PromQL's own braces.
    return query.replace("{namespace}", namespace).replace("{name}", name)


def _age(series: str, sel: str) -> str:
    return f"time() - max(timestamp({series}{{{sel}}}))"


def _kv_mean(names: MetricNames, sel: str) -> MetricQueries:
    # Mean over replicas: average each pod first (data-parallel engines report one series each).
    return MetricQueries(
        f"avg(avg by ({NAMESPACE_LABEL}, pod) ({names.kv_cache}{{{sel}}}))", _age(names.kv_cache, sel)
    )


def metric_queries(
    metric: MetricTarget,
    namespace: str,
    name: str,
    *,
    names: MetricNames = MetricNames(),
    rate_window: str = DEFAULT_RATE_WINDOW,
) -> MetricQueries:
    sel = selector(namespace, name)
    kind = metric.type
    if kind is MetricType.waiting_requests:
        return MetricQueries(f"sum({names.waiting}{{{sel}}})", _age(names.waiting, sel))
    if kind is MetricType.running_requests:
        return MetricQueries(f"sum({names.running}{{{sel}}})", _age(names.running, sel))
    if kind is MetricType.kv_cache_utilization:
        return _kv_mean(names, sel)
    if kind is MetricType.time_to_first_token:
        return MetricQueries(
            f"histogram_quantile({metric.percentile:g}, "
            f"sum by (le) (rate({names.ttft}_bucket{{{sel}}}[{rate_window}])))",
            _age(f"{names.ttft}_count", sel),
        )
    if kind is MetricType.generation_tokens_per_second:
        return MetricQueries(
            f"sum(rate({names.generation_tokens}{{{sel}}}[{rate_window}]))", _age(names.generation_tokens, sel)
        )
    if kind is MetricType.prometheus:
        assert metric.query is not None  # the model validator guarantees it
        return MetricQueries(substitute(metric.query, namespace, name), None)
    raise ValueError(f"unknown metric type {kind}")


def activity_query(
    namespace: str, name: str, *, names: MetricNames = MetricNames(), rate_window: str = DEFAULT_RATE_WINDOW
) -> MetricQueries:
    """Running + waiting requests + generated tokens/s: 0 means idle; no result means unknown."""
    sel = selector(namespace, name)
    return MetricQueries(
        f"sum({names.running}{{{sel}}}) + sum({names.waiting}{{{sel}}})"
        f" + sum(rate({names.generation_tokens}{{{sel}}}[{rate_window}]))",
        _age(names.running, sel),
    )


def in_flight_by_pod_query(namespace: str, name: str) -> str:
    """Running + waiting requests per pod (`pod` label), summed over data-parallel engines:
    the work a pod's removal would have to drain."""
    sel = selector(namespace, name)
    return f"sum by (pod) ({RUNNING}{{{sel}}}) + sum by (pod) ({WAITING}{{{sel}}})"


@dataclass(frozen=True)
class DemandQueries:
    """mode demand: one query per signal (llmops.autoscale.demand.DemandSignals)."""

    arrival_fast: MetricQueries
    arrival_slow: MetricQueries
    queue: MetricQueries
    running: MetricQueries
    service_seconds: MetricQueries
    kv_usage: MetricQueries


def _seconds_text(seconds: float) -> str:
    return f"{int(round(seconds))}s"


def arrival_query(namespace: str, name: str, window_seconds: float, *, names: MetricNames = MetricNames(),
                  custom: Optional[str] = None) -> MetricQueries:
    """Requests/s arriving over the window: those that finished (any reason, aborts
    included) plus the growth of running + waiting. Counting finishes alone would read a
    growing queue as no load at all."""
    sel = selector(namespace, name)
    window = _seconds_text(window_seconds)
    if custom is not None:
        return MetricQueries(substitute(custom, namespace, name).replace("{window}", window), None)
    finished = f"sum(increase({REQUEST_SUCCESS}{{{sel}}}[{window}]))"
    growth = (
        f"(sum(delta({names.running}{{{sel}}}[{window}])) or vector(0))"
        f" + (sum(delta({names.waiting}{{{sel}}}[{window}])) or vector(0))"
    )
    return MetricQueries(
        f"clamp_min(({finished} + {growth}) / {window_seconds:g}, 0)", _age(REQUEST_SUCCESS, sel)
    )


def demand_queries(
    namespace: str,
    name: str,
    *,
    fast_window_seconds: float,
    slow_window_seconds: float,
    arrivals_query: Optional[str] = None,
    names: MetricNames = MetricNames(),
) -> DemandQueries:
    sel = selector(namespace, name)
    slow = _seconds_text(slow_window_seconds)
    return DemandQueries(
        arrival_fast=arrival_query(namespace, name, fast_window_seconds, names=names, custom=arrivals_query),
        arrival_slow=arrival_query(namespace, name, slow_window_seconds, names=names, custom=arrivals_query),
        queue=MetricQueries(f"sum({names.waiting}{{{sel}}})", _age(names.waiting, sel)),
        running=MetricQueries(f"sum({names.running}{{{sel}}})", _age(names.running, sel)),
        # Mean seconds from scheduled to finished: how long a request holds a slot.
        service_seconds=MetricQueries(
            f"sum(rate({INFERENCE_TIME}_sum{{{sel}}}[{slow}])) / sum(rate({INFERENCE_TIME}_count{{{sel}}}[{slow}]))",
            _age(f"{INFERENCE_TIME}_count", sel),
        ),
        kv_usage=_kv_mean(names, sel),
    )


def detection_query(candidates: tuple[str, ...], namespace: str, name: str) -> str:
    """Which of the candidate metric names this deployment's pods expose."""
    names = "|".join(candidates)  # metric names are [a-zA-Z_:0-9]: nothing to escape
    return f'count by (__name__) ({{__name__=~"{names}",{selector(namespace, name)}}})'
