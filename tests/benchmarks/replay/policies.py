"""The autoscalers compared, each reading only what it would read in a cluster.

  hpa     HPA v2 on the Pods metric vllm:num_requests_waiting, averageValue 2 (as vLLM
          production-stack and KServe examples configure it), default behavior (hpa.py);
  kpa     Knative KPA on per-pod concurrency (running + waiting), 2 s ticks (kpa.py);
  keda    KEDA's prometheus scaler as vLLM production-stack ships it
          (docs/source/use_cases/autoscaling-keda.rst): threshold 5 on
          sum(vllm:num_requests_waiting), an External AverageValue metric for the HPA it
          creates; KEDA's default pollingInterval 30 s (the value is refreshed that often),
          then the HPA's calculator and default behavior;
  ratio   llmops `decide`, mode ratio, default behavior, waitingRequests 2 and
          runningRequests at the KPA target;
  demand  llmops `decide`, mode demand, fed DemandSignals built from the scrapes;
  oracle  knows the trace's rate one cold start (+ a decision interval) ahead and sizes
          with the engine's measured per-replica capacity at the SLO; scales down at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

from llmops.api.autoscaling import AutoscalingSpec
from llmops.autoscale.demand import DemandSignals, Signal, learned_cold_start
from llmops.autoscale.demand import slots_signal as slots_per_replica  # the operator's own rule
from llmops.autoscale.policy import AutoscalerState, MetricSample, PolicyInput, SampleStatus, decide

from replay import hpa as hpa_port
from replay import kpa as kpa_port
from replay.metrics import Prometheus
from replay.traces import Trace

DECISION_INTERVAL = 15.0   # HPA --horizontal-pod-autoscaler-sync-period, llmops' default
DECISION_OFFSET = 10.0     # decisions are not aligned with scrapes
HPA_WAITING_TARGET = 2.0
KEDA_THRESHOLD = 5.0
KEDA_POLLING_SECONDS = 30.0
RECENT_STARTS = 10         # pod starts demand mode learns its cold start from


@dataclass(frozen=True)
class FleetView:
    """What the control plane can know at `now`."""

    now: float
    current: int                       # spec.replicas (replicas not being removed)
    ready: int
    starting_ages: tuple[float, ...]   # seconds since creation of each replica not yet Ready
    pods: tuple[hpa_port.Pod, ...]     # as the HPA's pod lister sees them, named by replica id
    prometheus: Prometheus
    concurrency: kpa_port.ConcurrencyWindows
    start_durations: tuple[float, ...]  # created -> Ready of replicas that got Ready, oldest first


class Policy(Protocol):
    interval: float
    offset: float

    def decide(self, view: FleetView) -> int: ...


@dataclass(frozen=True)
class Setup:
    """What the policies are configured with (the same for all)."""

    min_replicas: int
    max_replicas: int
    kpa_target: float               # concurrency per pod
    capacity_rps: float             # one replica's sustainable rate at the SLO (oracle)
    max_num_seqs: int
    cold_start_seconds: float       # nominal; the oracle's horizon
    cold_start_jitter: float        # fraction; the oracle plans for the slowest start


def _clamp(setup: Setup, replicas: int) -> int:
    return max(setup.min_replicas, min(setup.max_replicas, replicas))


@dataclass
class Hpa:
    setup: Setup
    interval: float = DECISION_INTERVAL
    offset: float = DECISION_OFFSET
    behavior: hpa_port.Behavior = field(init=False)

    def __post_init__(self) -> None:
        self.behavior = hpa_port.Behavior(self.setup.min_replicas, self.setup.max_replicas)

    def decide(self, view: FleetView) -> int:
        metrics = {str(pod): value for pod, value in view.prometheus.pod_values(view.now, "waiting").items()}
        proposal = hpa_port.plain_metric_replicas(view.current, HPA_WAITING_TARGET, list(view.pods), metrics)
        if proposal is None:
            return view.current  # metrics invalid: the HPA does not rescale
        return self._apply(view, proposal)

    def _apply(self, view: FleetView, proposal: int) -> int:
        desired = self.behavior.normalize(view.now, view.current, proposal)
        self.behavior.record_scale(view.now, view.current, desired)
        return desired


@dataclass
class Keda(Hpa):
    polled_at: Optional[float] = None
    polled_value: Optional[float] = None

    def decide(self, view: FleetView) -> int:
        if self.polled_at is None or view.now - self.polled_at >= KEDA_POLLING_SECONDS:
            value, _ = view.prometheus.gauge_sum(view.now, "waiting")
            if value is not None:
                self.polled_at, self.polled_value = view.now, value
        if self.polled_value is None:
            return view.current
        proposal = hpa_port.external_per_pod_replicas(view.current, KEDA_THRESHOLD, self.polled_value)
        return self._apply(view, proposal)


@dataclass
class Kpa:
    setup: Setup
    interval: float = kpa_port.TICK_SECONDS
    offset: float = 0.0
    autoscaler: kpa_port.Kpa = field(init=False)

    def __post_init__(self) -> None:
        self.autoscaler = kpa_port.Kpa(target=self.setup.kpa_target)

    def decide(self, view: FleetView) -> int:
        stable = view.concurrency.average(view.now, kpa_port.STABLE_WINDOW)
        panic = view.concurrency.average(view.now, kpa_port.PANIC_WINDOW)
        if stable is None or panic is None:
            return view.current
        return _clamp(self.setup, self.autoscaler.scale(view.now, view.ready, stable, panic))


def llmops_spec(setup: Setup, mode: str, demand: Optional[dict] = None) -> AutoscalingSpec:
    body = {
        "mode": mode,
        "minReplicas": setup.min_replicas,
        "maxReplicas": setup.max_replicas,
        "metrics": [
            {"type": "waitingRequests", "target": HPA_WAITING_TARGET},
            {"type": "runningRequests", "target": round(setup.kpa_target)},
        ],
        "behavior": {"evaluationIntervalSeconds": DECISION_INTERVAL},
    }
    if demand:
        body["demand"] = demand
    return AutoscalingSpec.model_validate(body)


@dataclass
class Llmops:
    setup: Setup
    spec: AutoscalingSpec
    interval: float = DECISION_INTERVAL
    offset: float = DECISION_OFFSET
    state: AutoscalerState = field(default_factory=AutoscalerState)

    def decide(self, view: FleetView) -> int:
        prometheus, now = view.prometheus, view.now
        samples = []
        for metric, gauge, query in zip(
            self.spec.metrics, ("waiting", "running"),
            ("sum(vllm:num_requests_waiting)", "sum(vllm:num_requests_running)"),
        ):
            value, age = prometheus.gauge_sum(now, gauge)
            status = SampleStatus.ok if value is not None else SampleStatus.missing
            samples.append(MetricSample(metric, query, status, value=value, age_seconds=age))
        demand = demand_signals(view, self.setup, self.spec) if self.spec.mode.value == "demand" else None
        decision, self.state = decide(
            PolicyInput(
                spec=self.spec,
                now=now,
                current_replicas=view.current,
                ready_replicas=view.ready,
                starting_replicas=len(view.starting_ages),
                samples=tuple(samples),
                demand=demand,
            ),
            self.state,
        )
        return decision.desired_replicas


def demand_signals(view: FleetView, setup: Setup, spec: AutoscalingSpec) -> DemandSignals:
    """DemandSignals as the operator builds them (llmops.autoscale.queries.demand_queries)
    from Prometheus and its pods: arrivals over the fast and slow windows, service time
    over the slow one."""
    prometheus, now = view.prometheus, view.now
    fast, slow = spec.demand.fast_window_seconds, spec.demand.slow_window_seconds

    def arrivals(window: float) -> Signal:
        # requests/s = finished/s + growth of what is in the system (running + waiting)
        finished, age = prometheus.rate_sum(now, "finished", window)
        in_system_now = _in_system(prometheus, now)
        in_system_then = _in_system_before(prometheus, now, window)
        if finished is None or in_system_now is None or in_system_then is None:
            return Signal(age_seconds=age, source="vllm")
        return Signal(max(0.0, finished + (in_system_now - in_system_then) / window), age, "vllm")

    queue, queue_age = prometheus.gauge_sum(now, "waiting")
    running, running_age = prometheus.gauge_sum(now, "running")
    busy, age = prometheus.rate_sum(now, "inference_sum", slow)
    done, _ = prometheus.rate_sum(now, "inference_count", slow)
    service = Signal(busy / done, age, "vllm:request_inference_time_seconds") if busy is not None and done else Signal()
    kv_pods = prometheus.pod_values(now, "kv_usage")
    kv_usage = Signal(sum(kv_pods.values()) / len(kv_pods), queue_age) if kv_pods else Signal()
    learned = learned_cold_start(list(view.start_durations[-RECENT_STARTS:]))
    return DemandSignals(
        arrival_fast=arrivals(fast),
        arrival_slow=arrivals(slow),
        queue=Signal(queue, queue_age, "vllm:num_requests_waiting"),
        running=Signal(running, running_age, "vllm:num_requests_running"),
        service_seconds=service,
        slots_per_replica=slots_per_replica(setup.max_num_seqs, Signal(running, running_age), kv_usage, view.ready),
        cold_start_seconds=Signal(learned, 0.0, "pods") if learned else Signal(),
        starting_ages=view.starting_ages,
    )


def _in_system(prometheus: Prometheus, now: float) -> Optional[float]:
    waiting, _ = prometheus.gauge_sum(now, "waiting")
    running, _ = prometheus.gauge_sum(now, "running")
    return None if waiting is None or running is None else waiting + running


def _in_system_before(prometheus: Prometheus, now: float, window: float) -> Optional[float]:
    waiting = prometheus.gauge_sum_before(now, "waiting", window)
    running = prometheus.gauge_sum_before(now, "running", window)
    return None if waiting is None or running is None else waiting + running


@dataclass
class Oracle:
    setup: Setup
    trace: Trace
    interval: float = DECISION_INTERVAL
    offset: float = DECISION_OFFSET

    def decide(self, view: FleetView) -> int:
        horizon = self.setup.cold_start_seconds * (1 + self.setup.cold_start_jitter) + self.interval
        peak = self.trace.max_rate(view.now, view.now + horizon)
        return _clamp(self.setup, math.ceil(peak / self.setup.capacity_rps))


PolicyFactory = Callable[[Setup, Trace], Policy]


def policies(demand: Optional[dict] = None) -> dict[str, PolicyFactory]:
    """The six policies; `demand` overrides spec.autoscaling.demand fields (camelCase) of
    the demand policy, to try a tuning without changing the operator's defaults."""
    return {
        "hpa": lambda setup, trace: Hpa(setup),
        "kpa": lambda setup, trace: Kpa(setup),
        "keda": lambda setup, trace: Keda(setup),
        "ratio": lambda setup, trace: Llmops(setup, llmops_spec(setup, "ratio")),
        "demand": lambda setup, trace: Llmops(setup, llmops_spec(setup, "demand", demand)),
        "oracle": lambda setup, trace: Oracle(setup, trace),
    }


POLICIES = policies()
