"""PURE: what the activator does with one request, and what a refusal tells the client.

A request for a deployment with no Ready replica is held while fewer than `queueSize` are
held; beyond that it is refused at once with 429. A held request that outlasts `holdSeconds`
is refused with 503. Both carry Retry-After: the seconds until a replica is expected, from
the deployment's own learned cold starts (status.autoscaling.coldStarts) and how long it has
been waking, so a client that obeys it comes back about when a replica is there. Nothing is
dropped without a status code, and every outcome is counted (llmops.activator.metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

RETRY_AFTER_MIN = 1
RETRY_AFTER_MAX = 60       # a longer hint makes clients give up on a fleet that is nearly up
RETRY_AFTER_UNKNOWN = 5    # no cold start learned yet and nothing better to say


@dataclass(frozen=True)
class Verdict:
    hold: bool                       # True: wait for a replica (or forward now if one is Ready)
    status: Optional[int] = None     # refusal status
    reason: str = ""                 # refusal reason, a metric label: queue-full | hold-timeout | ...
    retry_after: Optional[int] = None
    message: str = ""


def cold_start_seconds(cold_starts: Optional[Sequence[Any]]) -> Optional[float]:
    """90th percentile (nearest rank) of status.autoscaling.coldStarts [[pod, seconds], ...]."""
    values = sorted(float(e[1]) for e in cold_starts or []
                    if isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[1], (int, float)) and e[1] >= 0)
    if not values:
        return None
    return values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]


def retry_after(cold_start: Optional[float], waking_for: Optional[float]) -> int:
    """Seconds until a replica is expected: the cold start left, clamped to 1..60 s."""
    if cold_start is None:
        return RETRY_AFTER_UNKNOWN
    left = cold_start - (waking_for or 0.0)
    return int(min(RETRY_AFTER_MAX, max(RETRY_AFTER_MIN, math.ceil(left))))


def admit(held: int, queue_size: int, any_ready: bool, cold_start: Optional[float] = None,
          waking_for: Optional[float] = None) -> Verdict:
    """A new request, with `held` requests already held for the same deployment."""
    if any_ready:
        return Verdict(hold=True)  # forwarded at once; a client's endpoint list can lag the switch
    if held >= queue_size:
        return Verdict(False, 429, "queue-full", retry_after(cold_start, waking_for),
                       f"{held} requests already wait for this deployment to wake (spec.activator.queueSize "
                       f"{queue_size}); retry later")
    return Verdict(hold=True)


def hold_timeout(hold_seconds: float, cold_start: Optional[float], waking_for: Optional[float]) -> Verdict:
    """A held request that saw no Ready replica within spec.activator.holdSeconds."""
    return Verdict(False, 503, "hold-timeout", retry_after(cold_start, waking_for),
                   f"no replica became Ready within {hold_seconds:g}s (spec.activator.holdSeconds); retry later")


def should_wake(replicas: int, last_wake_at: Optional[float], now: float, every: float = 10.0) -> bool:
    """Set the wake annotation while spec.replicas is 0, at most once per `every` seconds
    (the autoscaler consumes each value once; a new one is needed only if it is still at 0)."""
    return replicas == 0 and (last_wake_at is None or now - last_wake_at >= every)
