"""Knative's KPA, ported from knative/serving pkg/autoscaler/scaling/autoscaler.go (Scale).

Defaults (config-autoscaler): stable window 60 s, panic window 10 % of it (6 s), panic
threshold 200 %, max scale-up rate 1000, max scale-down rate 2, scale-down delay 0, a
decision every 2 s (tickInterval). The metric is concurrency: requests in flight at each
pod's queue-proxy, which for vLLM is running + waiting; Knative scrapes it from the pods
every second and averages the per-second totals over each window
(pkg/autoscaler/metrics/collector.go: StableAndPanicConcurrency).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

STABLE_WINDOW = 60.0
PANIC_WINDOW = 6.0
PANIC_THRESHOLD = 2.0    # panic-threshold-percentage 200 / 100
MAX_SCALE_UP_RATE = 1000.0
MAX_SCALE_DOWN_RATE = 2.0
TICK_SECONDS = 2.0


@dataclass
class ConcurrencyWindows:
    """Per-second totals of in-flight requests; window averages as the collector gives."""

    samples: deque = field(default_factory=deque)  # (t, total concurrency)

    def record(self, t: float, total: float) -> None:
        self.samples.append((t, total))
        while self.samples and self.samples[0][0] <= t - STABLE_WINDOW:
            self.samples.popleft()

    def average(self, now: float, window: float) -> Optional[float]:
        values = [v for t, v in self.samples if t > now - window]
        return sum(values) / len(values) if values else None


@dataclass
class Kpa:
    target: float                       # concurrency per pod (TargetValue)
    panic_time: Optional[float] = None
    max_panic_pods: int = 0

    def scale(self, now: float, ready_pods: int, stable: float, panic: float) -> int:
        """autoscaler.Scale: desired pods from the stable and panic window averages."""
        ready = max(1.0, float(ready_pods))
        max_up = math.ceil(MAX_SCALE_UP_RATE * ready)
        max_down = math.floor(ready / MAX_SCALE_DOWN_RATE)
        dspc = math.ceil(stable / self.target)
        dppc = math.ceil(panic / self.target)
        desired_stable = int(min(max(dspc, max_down), max_up))
        desired_panic = int(min(max(dppc, max_down), max_up))
        over_panic = dppc / ready >= PANIC_THRESHOLD
        if self.panic_time is None and over_panic:
            self.panic_time = now
        elif over_panic:
            self.panic_time = now
        elif self.panic_time is not None and self.panic_time + STABLE_WINDOW < now:
            self.panic_time = None
            self.max_panic_pods = 0
        desired = desired_stable
        if self.panic_time is not None:
            desired = max(desired, desired_panic)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            desired = self.max_panic_pods  # no scale-down while panicking
        return desired
