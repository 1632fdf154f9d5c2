"""Replay one load trace through our policy and an HPA-default-like policy; print figures.

Run: .venv/bin/python tests/benchmarks/bench_autoscale.py [--seeds 5] [--cold-start 120]

The model is a discrete-time (1 s) queue, pure and seeded:
- requests arrive as a Poisson process whose rate follows the trace;
- a gateway holds them in one FIFO queue (also while no replica exists) and hands each to
  the least-loaded Ready replica with a free slot (max_num_seqs concurrent sequences);
- a request's time to first token is its queueing time + a fixed prefill time; it then
  occupies its slot for service_seconds;
- a new replica becomes Ready cold_start seconds after it is added; a removed replica
  drains its in-flight requests first; every replica that exists (starting, ready,
  draining) costs GPU time.
Both policies see the same metrics every 15 s: waiting requests (the queue) and running
requests, with targets of 2 waiting and 12 running (of 16 slots) per replica.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from llmops.api.autoscaling import AutoscalingSpec  # noqa: E402
from llmops.autoscale.policy import (  # noqa: E402
    AutoscalerState,
    MetricSample,
    PolicyInput,
    SampleStatus,
    WakeSignals,
    decide,
)

# (start second, arrival rate req/s): light -> step up -> hold -> drop -> idle -> wake
TRACES = {
    "big step (10 req/s = 5 replicas at 100%)": [(0, 0.5), (600, 10.0), (1500, 2.0), (2100, 0.0), (3300, 1.0)],
    "moderate step (4 req/s = 2 replicas at 100%)": [(0, 0.5), (600, 4.0), (1500, 2.0), (2100, 0.0), (3300, 1.0)],
}
DURATION = 3600
STEP_AT = 600


@dataclass(frozen=True)
class Model:
    max_num_seqs: int = 16
    service_seconds: float = 8.0     # e.g. 200 output tokens at 25 tokens/s
    prefill_seconds: float = 0.3
    cold_start_seconds: float = 120.0
    ttft_slo_seconds: float = 2.0
    interval_seconds: int = 15
    waiting_target: float = 2.0
    running_target: float = 12.0
    max_replicas: int = 12


@dataclass(frozen=True)
class Observation:
    now: float
    current: int
    ready: int
    starting: int
    waiting: int       # sum over replicas (here: the gateway queue)
    running: int       # sum over Ready replicas
    recent_tokens: int  # requests completed in the last minute (stand-in for the token rate)


Policy = Callable[[Observation], int]


@dataclass
class Replica:
    ready_at: float
    inflight: list[float] = field(default_factory=list)  # finish times
    draining: bool = False


def rate_at(trace: list[tuple[int, float]], t: float) -> float:
    rate = 0.0
    for start, value in trace:
        if t >= start:
            rate = value
    return rate


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


@dataclass
class Result:
    first_scale_up_after_step: Optional[float]
    capacity_after_step: Optional[float]  # until enough Ready replicas for the step's load
    replica_seconds: float
    slo_share: float
    p95_ttft: float
    peak_replicas: int
    requests: int
    scale_events: int


def simulate(
    policy: Policy, model: Model, seed: int, trace: list[tuple[int, float]], initial_replicas: int = 1
) -> Result:
    rng = random.Random(seed)
    queue: deque[float] = deque()
    replicas = [Replica(ready_at=0.0) for _ in range(initial_replicas)]
    ttfts: list[float] = []
    completions: deque[float] = deque()
    replica_seconds = 0.0
    first_up = capacity_at = None
    peak = initial_replicas
    needed = math.ceil(rate_at(trace, STEP_AT) * model.service_seconds / model.max_num_seqs)
    scale_events = 0
    for t in range(DURATION):
        for _ in range(poisson(rng, rate_at(trace, t))):
            queue.append(t + rng.random())
        for replica in replicas:
            finished = [f for f in replica.inflight if f <= t]
            if finished:
                replica.inflight = [f for f in replica.inflight if f > t]
                completions.extend(finished)
        replicas = [r for r in replicas if not (r.draining and not r.inflight)]
        while completions and completions[0] < t - 60:
            completions.popleft()
        serving = [r for r in replicas if r.ready_at <= t and not r.draining]
        while queue and serving:
            replica = min(serving, key=lambda r: len(r.inflight))
            if len(replica.inflight) >= model.max_num_seqs:
                break
            arrival = queue.popleft()
            start = max(arrival, t)
            ttfts.append(start - arrival + model.prefill_seconds)
            replica.inflight.append(start + model.service_seconds)
        if capacity_at is None and t >= STEP_AT and len(serving) >= needed:
            capacity_at = t - STEP_AT
        replica_seconds += len(replicas)
        if t % model.interval_seconds == 0:
            active = [r for r in replicas if not r.draining]
            observation = Observation(
                now=float(t),
                current=len(active),
                ready=len(serving),
                starting=len(active) - len(serving),
                waiting=len(queue),
                running=sum(len(r.inflight) for r in serving),
                recent_tokens=len(completions),
            )
            desired = policy(observation)
            scale_events += desired != len(active)
            if desired > len(active):
                if first_up is None and t >= STEP_AT:
                    first_up = t - STEP_AT
                replicas += [Replica(ready_at=t + model.cold_start_seconds) for _ in range(desired - len(active))]
            elif desired < len(active):
                # Remove replicas still starting first, then the least loaded ready ones (they drain).
                victims = sorted(active, key=lambda r: (r.ready_at <= t, len(r.inflight)))[: len(active) - desired]
                for victim in victims:
                    victim.draining = True
                replicas = [r for r in replicas if not (r.draining and not r.inflight)]
            peak = max(peak, len([r for r in replicas if not r.draining]))
    unserved = len(queue)  # still waiting at the end: count as SLO misses
    total = len(ttfts) + unserved
    met = sum(1 for x in ttfts if x <= model.ttft_slo_seconds)
    ordered = sorted(ttfts) or [0.0]
    return Result(
        first_scale_up_after_step=first_up,
        capacity_after_step=capacity_at,
        replica_seconds=replica_seconds,
        slo_share=met / total if total else 1.0,
        p95_ttft=ordered[int(0.95 * (len(ordered) - 1))],
        peak_replicas=peak,
        requests=total,
        scale_events=scale_events,
    )


def ours(model: Model, min_replicas: int = 1) -> Policy:
    spec = AutoscalingSpec.model_validate(
        {
            "minReplicas": min_replicas,
            "maxReplicas": model.max_replicas,
            "metrics": [
                {"type": "waitingRequests", "target": model.waiting_target},
                {"type": "runningRequests", "target": model.running_target},
            ],
            "behavior": {"evaluationIntervalSeconds": model.interval_seconds},
        }
    )
    state = AutoscalerState()

    def policy(obs: Observation) -> int:
        nonlocal state
        metrics_exist = obs.ready > 0  # no pod, no vLLM metrics
        samples = tuple(
            MetricSample(
                metric, "", SampleStatus.ok if metrics_exist else SampleStatus.missing,
                value=float(value) if metrics_exist else None, age_seconds=0.0,
            )
            for metric, value in zip(spec.metrics, (obs.waiting, obs.running))
        )
        decision, state = decide(
            PolicyInput(
                spec=spec,
                now=obs.now,
                current_replicas=obs.current,
                ready_replicas=obs.ready,
                starting_replicas=obs.starting,
                samples=samples,
                activity=float(obs.running + obs.waiting + obs.recent_tokens) if metrics_exist else None,
                # The gateway's pending-request gauge, as spec.autoscaling.activationQuery would read it.
                wake=WakeSignals(activation_value=float(obs.waiting)),
            ),
            state,
        )
        return decision.desired_replicas

    return policy


def hpa_like(model: Model) -> Policy:
    """HPA v2 defaults on the same Pods metrics: 15 s sync, tolerance 0.1, no up-window,
    300 s down-window, up by max(4 pods, 100%) and down by 100% per 15 s, min 1; pods
    without metrics (not Ready) count as zero usage, as HPA does when scaling up."""
    history: list[tuple[float, int]] = []

    def policy(obs: Observation) -> int:
        current = obs.current
        recommendations = []
        if obs.ready > 0:
            for total, target in ((obs.waiting, model.waiting_target), (obs.running, model.running_target)):
                ratio = total / (obs.ready * target)
                if abs(ratio - 1) <= 0.1:
                    recommendations.append(current)
                    continue
                if ratio > 1 and obs.starting:
                    ratio = total / ((obs.ready + obs.starting) * target)  # missing pods as 0 usage
                    if ratio <= 1:
                        recommendations.append(current)
                        continue
                    recommendations.append(math.ceil(ratio * (obs.ready + obs.starting)))
                    continue
                recommendations.append(math.ceil(ratio * obs.ready))
        raw = max(recommendations) if recommendations else current
        history.append((obs.now, raw))
        history[:] = [(t, n) for t, n in history if t > obs.now - 300]
        # Scale-down: the highest recommendation of the last 300 s (never above current).
        stabilized = min(current, max(n for _, n in history)) if raw < current else raw
        stabilized = min(stabilized, max(current + 4, 2 * current))
        return max(1, min(model.max_replicas, stabilized))

    return policy


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cold-start", type=float, default=120.0)
    args = parser.parse_args(argv)
    model = Model(cold_start_seconds=args.cold_start)
    variants: dict[str, Callable[[], Policy]] = {
        "hpa-default-like (min 1)": lambda: hpa_like(model),
        "llmops (min 1)": lambda: ours(model, 1),
        "llmops (min 0, scale to zero)": lambda: ours(model, 0),
    }
    print(
        f"{model.max_num_seqs} seqs x {model.service_seconds:g}s per replica "
        f"({model.max_num_seqs / model.service_seconds:g} req/s), cold start {model.cold_start_seconds:g}s, "
        f"TTFT SLO {model.ttft_slo_seconds:g}s, {DURATION}s trace, mean of {args.seeds} seeds"
    )
    started = time.perf_counter()
    for trace_name, trace in TRACES.items():
        print(f"\n{trace_name}: {trace}")
        header = (
            f"{'policy':32} {'react s':>8} {'capacity s':>10} {'replica-s':>10} {'GPU-h':>6} "
            f"{'SLO met':>8} {'p95 TTFT':>9} {'peak':>5} {'scalings':>8}"
        )
        print(header)
        print("-" * len(header))
        for label, make in variants.items():
            results = [simulate(make(), model, seed, trace) for seed in range(args.seeds)]

            def mean(values):
                values = [v for v in values if v is not None]
                return statistics.fmean(values) if values else float("nan")

            replica_seconds = mean(r.replica_seconds for r in results)
            print(
                f"{label:32} {mean(r.first_scale_up_after_step for r in results):8.0f} "
                f"{mean(r.capacity_after_step for r in results):10.0f} {replica_seconds:10.0f} "
                f"{replica_seconds / 3600:6.2f} {100 * mean(r.slo_share for r in results):7.1f}% "
                f"{mean(r.p95_ttft for r in results):8.1f}s {max(r.peak_replicas for r in results):5d} "
                f"{mean(r.scale_events for r in results):8.1f}"
            )
    runs = len(TRACES) * len(variants) * args.seeds
    print(f"\n({time.perf_counter() - started:.1f}s wall for {runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
