"""Demand-based sizing (`spec.autoscaling.mode: demand`): offered load -> replicas.

Pure: signals and time come in as values. Three terms, each reported with its inputs:

  steady    slots = L + safetyFactor x sqrt(L), L = arrival rate x service time (the
            offered load in concurrently busy slots; the square root is the Poisson
            noise, so the margin shrinks relative to load as load grows);
            replicas = ceil(slots / (slots per replica x targetUtilization)).
  backlog   the queue projected one cold start ahead, H: the queue now, plus arrivals,
            minus what Ready replicas and starting ones (from their expected Ready time)
            serve until H; the replicas that clear what is left within another H.
            Pods already starting count, so a cold-start backlog does not send the
            fleet to maxReplicas.
  drain     while requests wait, no replica is removed; replicas added for a backlog are
            released as soon as the queue is empty (only the steady term is held).

Scale-down holds the highest steady recommendation of the last cold start: releasing a
replica that is needed again within a cold start costs that cold start anyway (the
ski-rental break-even), so holding longer is waste and holding shorter risks flapping.
Scale-up is immediate: the steady term is an estimate of load, not a momentary ratio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.api.autoscaling import AutoscalingSpec

# Default concurrency a replica is sized for when slotsPerReplica is not set: at most
# this many, even where --max-num-seqs allows more. Past a few dozen sequences a step on
# current GPUs turns compute-bound (chunked prefill shares each step's token budget with
# the decodes), so every added request slows all the others; the replay's Llama-3.1-8B on
# A100 held its TTFT SLO up to ~55 concurrent requests; 48 met it on every step trace.
DEFAULT_SLOTS_CAP = 48
# A replica with at most this many waiting requests is not saturated: service times
# measured then are what a request costs, not what queueing inflated.
UNLOADED_QUEUE_PER_REPLICA = 1.0


@dataclass(frozen=True)
class Signal:
    """One measured input with its age; value None = not measured."""

    value: Optional[float] = None
    age_seconds: Optional[float] = None
    source: str = ""  # the PromQL, "pods", "spec", ...
    error: str = ""   # why there is no value (Prometheus's own message), if it failed

    def fresh(self, max_age: float) -> Optional[float]:
        if self.value is None or math.isnan(self.value) or math.isinf(self.value):
            return None
        if self.age_seconds is not None and self.age_seconds > max_age:
            return None
        return self.value


@dataclass(frozen=True)
class DemandSignals:
    """What demand mode reads, summed over the deployment's pods where it is a count."""

    arrival_fast: Signal = Signal()         # requests/s over demand.fastWindowSeconds
    arrival_slow: Signal = Signal()         # requests/s over demand.slowWindowSeconds
    queue: Signal = Signal()                # vllm:num_requests_waiting, summed
    running: Signal = Signal()              # vllm:num_requests_running, summed
    service_seconds: Signal = Signal()      # mean vllm:request_inference_time_seconds
    slots_per_replica: Signal = Signal()    # concurrent requests one replica holds
    cold_start_seconds: Signal = Signal()   # learned: a high percentile of recent pod starts
    starting_ages: tuple[float, ...] = ()   # seconds since each not-yet-Ready pod was created


@dataclass(frozen=True)
class Term:
    name: str                     # steady, backlog, drain, hold
    replicas: Optional[int]       # what this term asks for (None: no opinion)
    inputs: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "replicas": self.replicas, "inputs": self.inputs, "note": self.note}


@dataclass(frozen=True)
class Sizing:
    """The demand terms' combined answer before bounds, windows and the capacity cap."""

    desired: int
    steady: int                   # stored in the hold window
    terms: tuple[Term, ...]
    message: str
    unloaded_service: Optional[float] = None  # to remember for the next decision


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)


def size(
    spec: AutoscalingSpec,
    signals: DemandSignals,
    *,
    now: float,
    current: int,
    ready: int,
    history: tuple[tuple[float, int], ...],
    max_age: float,
    unloaded_service: Optional[float] = None,
) -> Optional[Sizing]:
    """Replicas for the offered load, or None when no arrival rate is known (the caller
    then falls back to the ratio rules). `history` holds earlier (time, steady) answers;
    the highest of the last cold start is held. `unloaded_service` is the service time
    last measured while replicas were not saturated (Sizing.unloaded_service updates it)."""
    demand = spec.demand
    fast = signals.arrival_fast.fresh(max_age)
    slow = signals.arrival_slow.fresh(max_age)
    if fast is None and slow is None:
        return None
    fast = slow if fast is None else fast
    slow = fast if slow is None else slow

    queue = signals.queue.fresh(max_age)
    service, service_source, unloaded = _service_time(spec, signals, queue, ready, unloaded_service, max_age)
    slots = signals.slots_per_replica.fresh(max_age)
    slots_source = signals.slots_per_replica.source if slots else "default"
    if not slots or slots < 1:
        slots = float(DEFAULT_SLOTS_CAP)
    if demand.slots_per_replica:
        slots, slots_source = float(demand.slots_per_replica), "spec"
    cold, cold_source = cold_start_estimate(spec, signals)

    per_replica = slots * demand.target_utilization
    # Up follows the fast window; the slow one keeps replicas while the fast one dips.
    rate = max(fast, slow)
    load = rate * service
    busy = load + demand.safety_factor * math.sqrt(load)
    steady = max(1, math.ceil(round(busy / per_replica, 9))) if load > 0 else 0
    terms = [
        Term(
            "steady",
            steady,
            {
                "arrivalFast": _rounded(fast),
                "arrivalSlow": _rounded(slow),
                "arrivalUsed": _rounded(rate),
                "arrivalAgeSeconds": _rounded(signals.arrival_fast.age_seconds),
                "serviceSeconds": _rounded(service),
                "serviceSource": service_source,
                "serviceAgeSeconds": _rounded(signals.service_seconds.age_seconds),
                "slotsPerReplica": _rounded(slots),
                "slotsSource": slots_source,
                "slotsAgeSeconds": _rounded(signals.slots_per_replica.age_seconds),
                "load": _rounded(load),
            },
            f"{rate:.3g} req/s x {service:.3g}s = {load:.3g} busy slots (+{demand.safety_factor:g} sqrt) "
            f"/ ({slots:.0f} slots x {demand.target_utilization:g})",
        )
    ]

    backlog = 0
    if queue is not None:
        capacity_per_replica = slots / service  # requests/s one replica finishes at full slots
        remaining = sorted(max(0.0, cold - age) for age in signals.starting_ages)
        projected = _project_queue(queue, rate, ready, remaining, capacity_per_replica, cold)
        if projected > 0:
            backlog = math.ceil(round(projected / (capacity_per_replica * cold), 9))
        terms.append(
            Term(
                "backlog",
                backlog,
                {
                    "queue": _rounded(queue),
                    "queueAgeSeconds": _rounded(signals.queue.age_seconds),
                    "horizonSeconds": _rounded(cold),
                    "horizonSource": cold_source,
                    "startingReadyInSeconds": [round(r, 1) for r in remaining],
                    "projectedQueue": _rounded(projected),
                },
                f"queue {queue:.0f} projected to {projected:.0f} in {cold:.0f}s"
                + (f" counting {len(remaining)} starting" if remaining else ""),
            )
        )
    want = steady + backlog
    draining = queue is None or queue > 0
    if draining and current > want:
        note = "queue unknown: never scale down" if queue is None else f"{queue:.0f} requests waiting"
        terms.append(Term("drain", current, {"queue": _rounded(queue)}, note))
        want = current
    held_steady = [n for t, n in history if t >= now - cold]
    hold_floor = max(held_steady) if held_steady else None
    if hold_floor is not None and min(current, hold_floor) > want:
        held = min(current, hold_floor)
        terms.append(
            Term(
                "hold",
                held,
                {"holdSeconds": _rounded(cold), "highestSteady": hold_floor},
                f"highest steady recommendation of the last {cold:.0f}s",
            )
        )
        want = held
    driver = max(terms, key=lambda t: (t.replicas or 0))
    message = "; ".join(t.note for t in terms if t.replicas)
    return Sizing(
        desired=want,
        steady=steady,
        terms=tuple(terms),
        message=f"demand -> {want} ({driver.name}): {message}",
        unloaded_service=unloaded,
    )


def _service_time(
    spec: AutoscalingSpec,
    signals: DemandSignals,
    queue: Optional[float],
    ready: int,
    remembered: Optional[float],
    max_age: float,
) -> tuple[float, str, Optional[float]]:
    """(seconds, source, unloaded time to remember). While replicas are saturated the
    measured mean grows with queueing and would size the fleet for its own backlog, so
    the last time measured without a queue is used instead."""
    measured = signals.service_seconds.fresh(max_age)
    if measured is not None and measured <= 0:
        measured = None
    saturated = queue is None or not ready or queue / ready > UNLOADED_QUEUE_PER_REPLICA
    if measured is not None and not saturated:
        return measured, signals.service_seconds.source or "measured", measured
    if remembered:
        return remembered, "last unsaturated measurement", remembered
    if measured is not None:
        return measured, signals.service_seconds.source or "measured", None
    return spec.demand.service_seconds_hint, "hint", None


def slots_signal(max_num_seqs: Optional[int], running: Signal, kv_usage: Signal, ready: int) -> Signal:
    """Concurrent requests one replica is sized for: --max-num-seqs capped at
    DEFAULT_SLOTS_CAP, lowered to what the KV cache holds: at the current mix, a replica
    with r running requests at KV usage u holds about r / u of them. The KV estimate is
    only read when the cache is well used, where the ratio is not noise."""
    cap = min(max_num_seqs, DEFAULT_SLOTS_CAP) if max_num_seqs else DEFAULT_SLOTS_CAP
    source = "max-num-seqs" if max_num_seqs and max_num_seqs <= DEFAULT_SLOTS_CAP else "default cap"
    slots = Signal(float(cap), 0.0, source)
    usage = kv_usage.value
    if ready and running.value and usage is not None and not math.isnan(usage) and usage >= 0.3:
        by_kv = running.value / ready / usage
        if by_kv < cap:
            slots = Signal(by_kv, max(running.age_seconds or 0.0, kv_usage.age_seconds or 0.0), "kv-cache")
    return slots


def cold_start_estimate(spec: AutoscalingSpec, signals: Optional[DemandSignals]) -> tuple[float, str]:
    """The learned cold-start time (never stale: it describes pods, not load), else the hint."""
    learned = signals.cold_start_seconds.fresh(float("inf")) if signals else None
    if learned and learned > 0:
        return learned, signals.cold_start_seconds.source or "pods"
    return spec.demand.cold_start_seconds_hint, "hint"


def _project_queue(
    queue: float,
    rate: float,
    ready: int,
    ready_in: list[float],
    capacity_per_replica: float,
    horizon: float,
) -> float:
    """Queue length after `horizon` seconds: arrivals at `rate`, Ready replicas each
    finishing up to `capacity_per_replica` req/s, starting ones joining at `ready_in`.
    The queue never goes below zero in between (idle capacity is not banked)."""
    t, serving, length = 0.0, ready, queue
    for joins_at in [r for r in ready_in if r < horizon] + [horizon]:
        span = joins_at - t
        length = max(0.0, length + (rate - serving * capacity_per_replica) * span)
        t = joins_at
        serving += 1
    return length


def learned_cold_start(durations: list[float], percentile: float = 0.9) -> Optional[float]:
    """A high percentile of recent pod start durations (created -> Ready), or None."""
    if not durations:
        return None
    ordered = sorted(durations)
    index = min(len(ordered) - 1, math.ceil(percentile * len(ordered)) - 1)
    return ordered[max(0, index)]
