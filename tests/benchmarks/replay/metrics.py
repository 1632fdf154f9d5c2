"""What Prometheus would hold, and the figures of a run.

Prometheus scrapes every pod with a /metrics endpoint (Ready and draining replicas; a
replica still loading its model serves none) every `interval` seconds. A query at time
`now` sees the newest scrape at least `lag` seconds old (scrape, ingestion and rule
evaluation delay). Rates are computed per series from the scrapes inside the window, as
`rate()` does (without its boundary extrapolation), then summed over pods.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence


@dataclass(frozen=True)
class PodSample:
    finished: int             # vllm:request_success_total (aborts included)
    inference_sum: float      # vllm:request_inference_time_seconds_sum
    inference_count: int      # vllm:request_inference_time_seconds_count
    running: int              # vllm:num_requests_running
    waiting: int              # vllm:num_requests_waiting
    kv_usage: float           # vllm:kv_cache_usage_perc


class Prometheus:
    def __init__(self, interval: float = 15.0, lag: float = 5.0, retention: float = 3600.0):
        self.interval = interval
        self.lag = lag
        self.retention = retention
        self.scrapes: deque[tuple[float, dict[int, PodSample]]] = deque()

    def record(self, t: float, pods: dict[int, PodSample]) -> None:
        self.scrapes.append((t, pods))
        while self.scrapes and self.scrapes[0][0] < t - self.retention:
            self.scrapes.popleft()

    def _visible(self, now: float) -> list[tuple[float, dict[int, PodSample]]]:
        limit = now - self.lag
        return [s for s in self.scrapes if s[0] <= limit]

    def latest(self, now: float) -> Optional[tuple[float, dict[int, PodSample]]]:
        limit = now - self.lag
        for scrape in reversed(self.scrapes):
            if scrape[0] <= limit:
                return scrape
        return None

    def gauge_sum(self, now: float, field: str) -> tuple[Optional[float], Optional[float]]:
        """(sum over pods, age seconds) of a gauge; (None, None) before the first scrape."""
        scrape = self.latest(now)
        if scrape is None or not scrape[1]:
            return None, None
        t, pods = scrape
        return float(sum(getattr(p, field) for p in pods.values())), now - t

    def gauge_sum_before(self, now: float, field: str, window: float) -> Optional[float]:
        """The gauge's sum at the last scrape at least `window` before the newest one."""
        visible = self._visible(now)
        if not visible:
            return None
        cutoff = visible[-1][0] - window
        for t, pods in reversed(visible):
            if t <= cutoff:
                return float(sum(getattr(p, field) for p in pods.values()))
        return None

    def pod_values(self, now: float, field: str) -> dict[int, float]:
        scrape = self.latest(now)
        return {} if scrape is None else {pod: float(getattr(s, field)) for pod, s in scrape[1].items()}

    def rate_sum(self, now: float, field: str, window: float) -> tuple[Optional[float], Optional[float]]:
        """sum(rate(field[window])): per pod (last - first) / (t_last - t_first) over the
        scrapes in the window; pods with fewer than two samples there contribute nothing."""
        visible = self._visible(now)
        if not visible:
            return None, None
        end = visible[-1][0]
        first: dict[int, tuple[float, float]] = {}
        last: dict[int, tuple[float, float]] = {}
        for t, pods in visible:
            if t <= end - window:
                continue
            for pod, sample in pods.items():
                value = getattr(sample, field)
                first.setdefault(pod, (t, value))
                last[pod] = (t, value)
        total, series = 0.0, 0
        for pod, (t0, v0) in first.items():
            t1, v1 = last[pod]
            if t1 > t0:
                total += max(0.0, v1 - v0) / (t1 - t0)
                series += 1
        if series == 0:
            return None, now - end
        return total, now - end


# --- figures -----------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an unsorted sequence; nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float

    def fmt(self, digits: int = 0, scale: float = 1.0, suffix: str = "") -> str:
        return f"{self.mean * scale:.{digits}f}{suffix} ±{self.se * scale:.{digits}f}"


def estimate(values: Iterable[float]) -> Estimate:
    """Mean over seeds and its standard error (sample sd / sqrt n)."""
    data = [v for v in values if not math.isnan(v)]
    if not data:
        return Estimate(float("nan"), float("nan"))
    if len(data) == 1:
        return Estimate(data[0], float("nan"))
    return Estimate(statistics.fmean(data), statistics.stdev(data) / math.sqrt(len(data)))
