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
        # Mean over replicas: average each pod first (data-parallel engines report one series each).
        return MetricQueries(
            f"avg(avg by ({NAMESPACE_LABEL}, pod) ({names.kv_cache}{{{sel}}}))", _age(names.kv_cache, sel)
        )
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


def detection_query(candidates: tuple[str, ...], namespace: str, name: str) -> str:
    """Which of the candidate metric names this deployment's pods expose."""
    names = "|".join(candidates)  # metric names are [a-zA-Z_:0-9]: nothing to escape
    return f'count by (__name__) ({{__name__=~"{names}",{selector(namespace, name)}}})'
