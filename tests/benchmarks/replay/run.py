"""Replay one trace through a fleet of replicas under one policy; aggregate over seeds.

The fleet, in 1 s ticks:
- a replica added becomes Ready after the cold start (nominal x U(0.9, 1.1), the same
  draws for every policy of a seed); while starting it is Pending for the first half
  (scheduling, image pull) and then Running without /metrics (loading the model);
- arrivals go through a Service-like balancer: a uniform random pick among Ready replicas
  not being removed (kube-proxy's iptables mode), into that replica's own vLLM queue; with
  no such replica the connection is refused (a miss);
- a removed replica is taken out of the Service and drains what it holds (queue
  included) before it is gone; replicas still starting are removed first, then the most
  recently Ready (the ReplicaSet's deletion order);
- every replica that exists (starting, Ready, draining) costs GPU time;
- Prometheus scrapes every 15 s; the KPA reads concurrency from the pods every second.

SLO attainment = share of all requests whose first token came within the SLO; requests
that timed out, were refused or were still unserved at the end are misses. p90 TTFT
counts a miss without a first token as the client timeout.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

from replay.engine import EngineConfig, ReplicaEngine, Request, default_engine_config
from replay.hpa import Pod
from replay.kpa import ConcurrencyWindows
from replay.metrics import Estimate, PodSample, Prometheus, estimate, percentile
from replay.policies import FleetView, Policy, Setup
from replay.traces import Trace, Workload, workload

SLO_SECONDS = 2.0
TIMEOUT_SECONDS = 60.0
SCRAPE_SECONDS = 15.0
SCRAPE_LAG_SECONDS = 5.0
COLD_START_JITTER = 0.1
MIN_REPLICAS, MAX_REPLICAS = 1, 16
KPA_TARGET_UTILIZATION = 0.7   # Knative's container-concurrency-target-percentage
TIMELINE_BIN_SECONDS = 60.0


@dataclass(eq=False)
class Replica:
    rid: int
    created: float
    ready_at: float
    engine: ReplicaEngine
    draining: bool = False

    def is_ready(self, now: float) -> bool:
        return now >= self.ready_at


@dataclass
class RunResult:
    replica_seconds: float
    slo_attainment: float
    scalings: int                 # decisions that changed the replica count
    direction_changes: int        # up after down or down after up
    p90_ttft: float
    timeouts: int                 # no first token within the client timeout (incl. refused, unserved)
    requests: int
    replicas_timeline: list[tuple[float, int]] = field(default_factory=list)   # (t, replicas not being removed)
    ttft_p90_timeline: list[tuple[float, float]] = field(default_factory=list)  # per arrival bin
    arrival_timeline: list[tuple[float, float]] = field(default_factory=list)   # req/s per bin


def simulate(
    policy: Policy,
    trace: Trace,
    load: Workload,
    cold_start: float,
    seed: int,
    engine: Optional[EngineConfig] = None,
    timeline: bool = False,
) -> RunResult:
    engine = engine or default_engine_config(TIMEOUT_SECONDS)
    jitter = random.Random(f"cold-start-{seed}")
    requests = [Request(t, p, o) for t, p, o in zip(load.arrivals, load.prompts, load.outputs)]
    replicas: list[Replica] = [Replica(0, -cold_start, 0.0, ReplicaEngine(engine))]
    next_rid = 1
    prometheus = Prometheus(SCRAPE_SECONDS, SCRAPE_LAG_SECONDS)
    concurrency = ConcurrencyWindows()
    start_durations: list[float] = []
    replica_seconds = 0.0
    scalings = direction_changes = 0
    last_direction = 0
    replicas_timeline: list[tuple[float, int]] = []
    next_request = 0
    duration = int(math.ceil(trace.duration))

    for tick in range(duration):
        now = float(tick)
        serving = [r for r in replicas if not r.draining and r.is_ready(now)]
        end = now + 1.0
        while next_request < len(requests) and requests[next_request].arrival < end:
            request = requests[next_request]
            if serving:  # else the connection is refused: no first token, a miss
                serving[int(load.routing[next_request] * len(serving))].engine.submit(request)
            next_request += 1
        for replica in replicas:
            replica.engine.advance(end)
        replica_seconds += len(replicas)
        replicas = [r for r in replicas if not (r.draining and r.engine.idle)]

        # the control plane at the end of this tick
        serving = [r for r in replicas if not r.draining and r.is_ready(end)]
        concurrency.record(end, sum(r.engine.running + r.engine.waiting_count(end) for r in serving))
        if tick % SCRAPE_SECONDS == SCRAPE_SECONDS - 1:
            prometheus.record(end, {
                r.rid: PodSample(r.engine.finished_total, r.engine.inference_seconds_sum, r.engine.served_total,
                                 r.engine.running, r.engine.waiting_count(end), r.engine.kv_usage)
                for r in replicas if r.is_ready(end)
            })
        for replica in replicas:
            if replica.ready_at > now and replica.ready_at <= end:
                start_durations.append(replica.ready_at - replica.created)
        active = [r for r in replicas if not r.draining]
        if (end - policy.offset) % policy.interval == 0:
            view = FleetView(
                now=end,
                current=len(active),
                ready=len(serving),
                starting_ages=tuple(end - r.created for r in active if not r.is_ready(end)),
                pods=tuple(_pod(r, end, cold_start) for r in replicas),
                prometheus=prometheus,
                concurrency=concurrency,
                start_durations=tuple(start_durations),
            )
            desired = policy.decide(view)
            if desired != len(active):
                scalings += 1
                direction = 1 if desired > len(active) else -1
                direction_changes += last_direction not in (0, direction)
                last_direction = direction
            for _ in range(desired - len(active)):
                ready_at = end + cold_start * jitter.uniform(1 - COLD_START_JITTER, 1 + COLD_START_JITTER)
                replicas.append(Replica(next_rid, end, ready_at, ReplicaEngine(engine)))
                next_rid += 1
            if desired < len(active):
                # ReplicaSet deletion order: not Ready first, then the most recently Ready
                starting = [r for r in active if not r.is_ready(end)][::-1]
                victims = starting + sorted((r for r in active if r.is_ready(end)), key=lambda r: -r.ready_at)
                for victim in victims[: len(active) - desired]:
                    victim.draining = True
                replicas = [r for r in replicas if not (r.draining and (not r.is_ready(end) or r.engine.idle))]
        if timeline and tick % 10 == 9:
            replicas_timeline.append((end, sum(1 for r in replicas if not r.draining)))

    return _result(requests, replica_seconds, scalings, direction_changes, replicas_timeline, trace, timeline)


def _pod(replica: Replica, now: float, cold_start: float) -> Pod:
    if replica.draining:
        return Pod(str(replica.rid), deleting=True)
    if not replica.is_ready(now) and now - replica.created < cold_start / 2:
        return Pod(str(replica.rid), phase="Pending")
    return Pod(str(replica.rid))


def _ttft(request: Request) -> float:
    """Time to first token as the client saw it; a miss without one counts as the timeout."""
    if request.first_token_at is None or request.timed_out:
        return TIMEOUT_SECONDS
    return min(TIMEOUT_SECONDS, request.first_token_at - request.arrival)


def _result(requests: list[Request], replica_seconds: float, scalings: int, direction_changes: int,
            replicas_timeline: list[tuple[float, int]], trace: Trace, timeline: bool) -> RunResult:
    ttfts = [_ttft(r) for r in requests]
    result = RunResult(
        replica_seconds=replica_seconds,
        slo_attainment=sum(1 for t in ttfts if t <= SLO_SECONDS) / len(requests) if requests else 1.0,
        scalings=scalings,
        direction_changes=direction_changes,
        p90_ttft=percentile(ttfts, 0.9),
        timeouts=sum(1 for t in ttfts if t >= TIMEOUT_SECONDS),
        requests=len(requests),
        replicas_timeline=replicas_timeline,
    )
    if timeline:
        bins: dict[int, list[float]] = {}
        for request, ttft in zip(requests, ttfts):
            bins.setdefault(int(request.arrival // TIMELINE_BIN_SECONDS), []).append(ttft)
        for index in range(int(math.ceil(trace.duration / TIMELINE_BIN_SECONDS))):
            values = bins.get(index, [])
            start = index * TIMELINE_BIN_SECONDS
            result.arrival_timeline.append((start, len(values) / TIMELINE_BIN_SECONDS))
            result.ttft_p90_timeline.append((start, percentile(values, 0.9)))
    return result


# --- calibration: what one replica sustains ---------------------------------------------

@lru_cache(maxsize=None)
def replica_capacity(slo: float = SLO_SECONDS, quantile: float = 0.99) -> tuple[float, float]:
    """(highest Poisson rate one replica serves with the `quantile` TTFT within the SLO,
    mean requests in flight at 70 % of that rate), from the same engine and request lengths.

    Concurrency is convex in load near saturation (the service time grows with the batch),
    so 70 % of the concurrency at capacity would be ~95 % of the throughput; Knative's 70 %
    target utilization is therefore applied to throughput."""
    def measure(rate: float) -> tuple[float, float]:
        worst, in_flight = 0.0, 0.0
        for seed in range(2):
            trace = Trace("calibration", ((0, rate),), 1200.0)
            load = workload(trace, 10_000 + seed)
            engine = ReplicaEngine(default_engine_config(TIMEOUT_SECONDS))
            reqs = [Request(t, p, o) for t, p, o in zip(load.arrivals, load.prompts, load.outputs)]
            for r in reqs:
                engine.submit(r)
            samples = []
            for second in range(1, 1201):
                engine.advance(float(second))
                if second > 300:
                    samples.append(engine.running + engine.waiting_count(float(second)))
            measured = [_ttft(r) for r in reqs if r.arrival > 300]
            worst = max(worst, percentile(measured, quantile))
            in_flight += sum(samples) / len(samples) / 2
        return worst, in_flight

    low, high = 1.0, 16.0
    for _ in range(12):
        middle = (low + high) / 2
        if measure(middle)[0] <= slo:
            low = middle
        else:
            high = middle
    return round(low, 2), round(measure(KPA_TARGET_UTILIZATION * low)[1], 1)


def default_setup(cold_start: float) -> Setup:
    capacity, in_flight = replica_capacity()
    engine = default_engine_config(TIMEOUT_SECONDS)
    return Setup(
        min_replicas=MIN_REPLICAS,
        max_replicas=MAX_REPLICAS,
        kpa_target=in_flight,
        capacity_rps=capacity,
        max_num_seqs=engine.max_num_seqs,
        cold_start_seconds=cold_start,
        cold_start_jitter=COLD_START_JITTER,
    )


# --- seeds and policies side by side -------------------------------------------------------

@dataclass
class PolicySummary:
    replica_seconds: Estimate
    slo_attainment: Estimate
    scalings: Estimate
    direction_changes: Estimate
    p90_ttft: Estimate
    timeouts: Estimate
    example: RunResult          # seed 0's run, with timelines for the plot


def compare(
    make_trace,
    policies: dict,
    seeds: int,
    cold_start: float,
    setup: Optional[Setup] = None,
) -> tuple[dict[str, PolicySummary], list[Trace]]:
    """Every policy on the same arrivals per seed. `make_trace(seed)` gives the seed's trace."""
    setup = setup or default_setup(cold_start)
    runs: dict[str, list[RunResult]] = {name: [] for name in policies}
    traces = []
    for seed in range(seeds):
        trace = make_trace(seed)
        traces.append(trace)
        load = workload(trace, seed)
        for name, factory in policies.items():
            runs[name].append(simulate(factory(setup, trace), trace, load, cold_start, seed, timeline=seed == 0))
    summaries = {
        name: PolicySummary(
            replica_seconds=estimate(r.replica_seconds for r in results),
            slo_attainment=estimate(r.slo_attainment for r in results),
            scalings=estimate(r.scalings for r in results),
            direction_changes=estimate(r.direction_changes for r in results),
            p90_ttft=estimate(r.p90_ttft for r in results),
            timeouts=estimate(r.timeouts for r in results),
            example=results[0],
        )
        for name, results in runs.items()
    }
    return summaries, traces


__all__ = ["compare", "default_setup", "simulate", "replica_capacity", "RunResult"]
