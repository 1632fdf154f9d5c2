"""`spec.autoscaling` of an LLMDeployment: bounds, metric targets, behaviour knobs.

The policy that reads these fields is `llmops.autoscale.policy`; the PromQL each metric
type turns into is in `llmops.autoscale.queries`.
"""

from __future__ import annotations

from enum import Enum
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


# Setting this annotation on an LLMDeployment to a new value wakes it from zero replicas.
WAKE_ANNOTATION = "llmops.io/wake"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class MetricType(str, Enum):
    waiting_requests = "waitingRequests"          # vllm:num_requests_waiting per replica
    running_requests = "runningRequests"          # vllm:num_requests_running per replica
    kv_cache_utilization = "kvCacheUtilization"   # vllm:kv_cache_usage_perc (0..1), mean over replicas
    time_to_first_token = "timeToFirstToken"      # TTFT percentile (seconds) against an SLO
    generation_tokens_per_second = "generationTokensPerSecond"  # per replica
    prometheus = "prometheus"                     # custom PromQL with a target value


class MetricTarget(_Model):
    type: MetricType = Field(description="Which signal to follow.")
    target: float = Field(
        gt=0,
        description=(
            "Desired value per replica (requests, tokens/s), mean utilisation (kvCacheUtilization, 0-1] "
            "or the SLO in seconds (timeToFirstToken)."
        ),
    )
    percentile: float = Field(
        default=0.9, gt=0, lt=1, description="timeToFirstToken only: which quantile must meet the SLO."
    )
    query: Optional[str] = Field(
        default=None,
        description=(
            "prometheus only: PromQL returning one number; {namespace} and {name} are substituted. "
            "The value is compared with target as a per-replica average unless perReplica is false."
        ),
    )
    per_replica: bool = Field(default=True, description="prometheus only: divide the query's value by replicas.")

    @model_validator(mode="after")
    def _query_only_for_prometheus(self) -> "MetricTarget":
        if self.type is MetricType.prometheus and not self.query:
            raise ValueError("type prometheus needs a query (PromQL); add query: 'sum(...)'")
        if self.type is not MetricType.prometheus and self.query:
            raise ValueError(f"query is only used with type prometheus, not {self.type.value}; remove it")
        if self.type is MetricType.kv_cache_utilization and self.target > 1:
            raise ValueError("kvCacheUtilization target is a fraction in (0, 1], e.g. 0.8")
        return self


class AutoscalingMode(str, Enum):
    ratio = "ratio"    # HPA-like: per-replica metric / target ratios (spec.autoscaling.metrics)
    demand = "demand"  # size the fleet from offered load, service time and cold-start time


class DemandSpec(_Model):
    """`mode: demand`: how offered load becomes replicas (llmops.autoscale.demand)."""

    arrivals_query: Optional[str] = Field(
        default=None,
        description=(
            "PromQL returning the arrival rate in requests/s (e.g. from a gateway), {namespace} and {name} "
            "substituted, {window} replaced by the fast or slow window. Default: vLLM's finished-request "
            "counters plus the change in running + waiting requests."
        ),
    )
    fast_window_seconds: float = Field(
        default=60, ge=10, le=3600, description="Window of the fast arrival-rate estimate (scale-up)."
    )
    slow_window_seconds: float = Field(
        default=300, ge=10, le=86400, description="Window of the slow arrival-rate estimate (steadies scale-down)."
    )
    target_utilization: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Share of a replica's concurrent slots the steady-state load may use.",
    )
    safety_factor: float = Field(
        default=1.0,
        ge=0,
        le=10,
        description="Headroom in square-root staffing: slots = load + safetyFactor x sqrt(load).",
    )
    slots_per_replica: Optional[int] = Field(
        default=None,
        ge=1,
        le=100000,
        description=(
            "Concurrent requests one replica is sized for (the concurrency at which it still meets your latency "
            "goal). Default: the engine's --max-num-seqs (vLLM's default for the GPU when not set) capped at 48, "
            "lowered to what the KV cache vLLM reports can hold."
        ),
    )
    service_seconds_hint: float = Field(
        default=10,
        gt=0,
        le=3600,
        description="Seconds one request occupies a slot, used until vLLM's request_inference_time histogram has data.",
    )
    cold_start_seconds_hint: float = Field(
        default=120,
        gt=0,
        le=7200,
        description=(
            "Seconds from a new pod to Ready, used until the operator has seen this deployment's own pods "
            "start (it then uses the 90th percentile of recent starts)."
        ),
    )

    @model_validator(mode="after")
    def _windows(self) -> "DemandSpec":
        if self.slow_window_seconds < self.fast_window_seconds:
            raise ValueError(
                f"slowWindowSeconds ({self.slow_window_seconds:g}) is shorter than fastWindowSeconds "
                f"({self.fast_window_seconds:g}); make the slow window at least as long"
            )
        if self.arrivals_query is not None and not self.arrivals_query.strip():
            raise ValueError("arrivalsQuery is empty; give PromQL returning requests/s, or remove the field")
        return self


class AutoscalingBehavior(_Model):
    evaluation_interval_seconds: float = Field(default=15, ge=1, le=600, description="How often to decide.")
    scale_up_stabilization_seconds: float = Field(
        default=30,
        ge=0,
        le=3600,
        description=(
            "Use the lowest recommendation over this window when scaling up (a metric at panicThreshold x "
            "its target skips it)."
        ),
    )
    scale_down_stabilization_seconds: float = Field(
        default=300, ge=0, le=3600, description="Use the highest recommendation over this window when scaling down."
    )
    tolerance: float = Field(default=0.1, ge=0, lt=1, description="Ignore ratios within 1 +/- tolerance.")
    max_scale_up_step: int = Field(default=4, ge=1, le=1000, description="Most replicas added per decision.")
    max_scale_down_step: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Most replicas removed per decision (after the scale-down window has agreed).",
    )
    panic_threshold: float = Field(
        default=2.0,
        ge=1,
        description="A metric at this multiple of its target skips the scale-up window (burst fast path).",
    )
    scale_to_zero_after_seconds: float = Field(
        default=600, ge=0, le=86400, description="With minReplicas 0: idle time before scaling to zero."
    )
    metrics_max_age_seconds: float = Field(
        default=60, ge=5, le=3600, description="Samples older than this count as stale: replicas are held."
    )

    @model_validator(mode="after")
    def _panic_above_tolerance(self) -> "AutoscalingBehavior":
        if self.panic_threshold <= 1 + self.tolerance:
            raise ValueError(
                f"panicThreshold ({self.panic_threshold}) must exceed 1 + tolerance ({1 + self.tolerance:g}), "
                "or every scale-up would skip the window; raise panicThreshold (e.g. 2)"
            )
        return self


class AutoscalingSpec(_Model):
    enabled: bool = Field(default=True, description="false keeps spec.replicas as set by hand or another autoscaler.")
    mode: AutoscalingMode = Field(
        default=AutoscalingMode.ratio,
        description=(
            "ratio: HPA-like ratios of metrics to targets. demand: replicas from offered load, service time "
            "and cold-start time (spec.autoscaling.demand); the metrics are then the fallback while no "
            "arrival rate is measured."
        ),
    )
    demand: DemandSpec = Field(default_factory=DemandSpec, description="Settings of mode demand.")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="0 allows scale to zero when idle.")
    max_replicas: int = Field(ge=1, le=1000, description="Upper bound of replicas.")
    metrics: list[MetricTarget] = Field(
        default_factory=lambda: [MetricTarget(type=MetricType.waiting_requests, target=2)],
        description="Targets; the highest recommendation across them wins, as in HPA.",
    )
    behavior: AutoscalingBehavior = Field(default_factory=AutoscalingBehavior)

    activation_query: Optional[str] = Field(
        default=None,
        description=(
            "With minReplicas 0: PromQL that still has data while no pod runs (e.g. a gateway's pending "
            "requests); a value > 0 wakes the deployment from zero. {namespace} and {name} are substituted. "
            f"Setting the annotation {WAKE_ANNOTATION} to a new value also wakes it."
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> "AutoscalingSpec":
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is greater than maxReplicas ({self.max_replicas}); "
                "raise maxReplicas or lower minReplicas"
            )
        if not self.metrics:
            raise ValueError("metrics is empty; add at least one target, e.g. {type: waitingRequests, target: 2}")
        if self.activation_query is not None and not self.activation_query.strip():
            raise ValueError("activationQuery is empty; give PromQL returning one number, or remove the field")
        return self
