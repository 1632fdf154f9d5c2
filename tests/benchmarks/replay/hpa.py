"""The Kubernetes HPA, ported: the replica calculator and the default scaling behavior.

Sources (kubernetes/kubernetes):
- pkg/controller/podautoscaler/replica_calculator.go: GetMetricReplicas ->
  calcPlainMetricReplicas (Pods metrics) with groupPods and GetMetricUtilizationRatio
  (usage = integer mean of milli-values over pods with metrics); GetExternalPerPodMetricReplicas
  (External metrics with an AverageValue target, what KEDA's metrics server feeds);
- pkg/controller/podautoscaler/horizontal.go: normalizeDesiredReplicasWithBehaviors,
  stabilizeRecommendationWithBehaviors, convertDesiredReplicasWithBehaviorRate,
  calculateScaleUpLimitWithScalingRules, calculateScaleDownLimitWithBehaviors,
  getReplicasChangePerPeriod, maybeInitScaleDownStabilizationWindow; the defaults are
  pkg/apis/autoscaling/v2/defaults.go (scale-up: no stabilization, max(100 %, 4 pods) per
  15 s; scale-down: 300 s stabilization, 100 % per 15 s; selectPolicy Max).

Pod grouping for a Pods metric (resource ""), as on current master: a pod being deleted
or failed is ignored (its metrics dropped), a Pending pod is unready (dropped, but counted
as 0 on a scale-up), a pod without a metric is missing; readiness-based unready applies to
CPU only. After the first usage ratio: missing pods count as the target (scale-down) or 0
(scale-up), unready pods as 0 on a scale-up, then the ratio is recomputed and the
tolerance and the direction are checked again, also after the pod count changed. (Older
releases, e.g. the commit 19e8ce76 we also read, kept a deleted pod's metrics and lacked
that last check.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

TOLERANCE = 0.1


@dataclass(frozen=True)
class Pod:
    name: str
    phase: str = "Running"       # Pending, Running, Failed
    deleting: bool = False       # DeletionTimestamp set (draining)


def _milli(value: float) -> int:
    return int(round(value * 1000))


def _utilization_ratio(metrics: dict[str, int], target_milli: int) -> tuple[float, int]:
    """metricsclient.GetMetricUtilizationRatio: integer mean of milli-values / target."""
    total = sum(metrics.values())
    current = int(total / len(metrics))  # Go integer division (values are non-negative)
    return current / target_milli, current


def plain_metric_replicas(
    current_replicas: int,
    target: float,
    pods: list[Pod],
    metrics: dict[str, float],
    tolerance: float = TOLERANCE,
) -> Optional[int]:
    """calcPlainMetricReplicas; None where HPA returns an error (no pods, no metrics)."""
    if not pods:
        return None
    target_milli = _milli(target)
    values = {name: _milli(v) for name, v in metrics.items()}
    ready_count, ignored, unready, missing = 0, set(), set(), set()
    for pod in pods:  # groupPods
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        if pod.name not in values:
            missing.add(pod.name)
            continue
        ready_count += 1
    for name in ignored | unready:  # removeMetricsForPods
        values.pop(name, None)
    if not values:
        return None  # "did not receive metrics for any ready pods"
    usage_ratio, _ = _utilization_ratio(values, target_milli)
    scale_up_with_unready = bool(unready) and usage_ratio > 1.0
    if not scale_up_with_unready and not missing:
        if abs(1.0 - usage_ratio) <= tolerance:
            return current_replicas
        return math.ceil(usage_ratio * ready_count)
    if missing:
        fill = target_milli if usage_ratio < 1.0 else 0
        for name in missing:
            values[name] = fill
    if scale_up_with_unready:
        for name in unready:
            values[name] = 0
    new_ratio, _ = _utilization_ratio(values, target_milli)
    if (
        abs(1.0 - new_ratio) <= tolerance
        or (usage_ratio < 1.0 and new_ratio > 1.0)
        or (usage_ratio > 1.0 and new_ratio < 1.0)
    ):
        return current_replicas
    new_replicas = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (new_ratio > 1.0 and new_replicas < current_replicas):
        return current_replicas
    return new_replicas


def external_per_pod_replicas(
    status_replicas: int, target_average: float, total: float, tolerance: float = TOLERANCE
) -> int:
    """GetExternalPerPodMetricReplicas: the metric's sum against target x status.replicas."""
    usage = _milli(total)
    target_milli = _milli(target_average)
    replicas = status_replicas
    usage_ratio = usage / (target_milli * replicas) if replicas else math.inf
    if abs(1.0 - usage_ratio) > tolerance:
        replicas = math.ceil(usage / target_milli)
    return replicas


@dataclass(frozen=True)
class ScalingPolicy:
    kind: str        # Pods or Percent
    value: int
    period: float    # seconds


@dataclass(frozen=True)
class ScalingRules:
    stabilization: float
    policies: tuple[ScalingPolicy, ...]
    select: str = "Max"


DEFAULT_SCALE_UP = ScalingRules(0, (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = ScalingRules(300, (ScalingPolicy("Percent", 100, 15),))


@dataclass
class Behavior:
    """The controller's per-HPA memory: recommendations and scale events."""

    min_replicas: int
    max_replicas: int
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN
    recommendations: list[list] = field(default_factory=list)   # [replicas, time]
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def normalize(self, now: float, current: int, desired: int) -> int:
        """normalizeDesiredReplicasWithBehaviors: stabilize, then rate-limit and bound."""
        if not self.recommendations and self.scale_down.stabilization > 0:
            self.recommendations.append([current, now])  # maybeInitScaleDownStabilizationWindow
        stabilized = self._stabilize(now, current, desired)
        return self._rate_limit(now, current, stabilized)

    def record_scale(self, now: float, previous: int, new: int) -> None:
        """storeScaleEvent, dropping events older than the longest policy period."""
        longest = max(p.period for p in self.scale_up.policies + self.scale_down.policies)
        self.up_events = [e for e in self.up_events if e[0] > now - longest]
        self.down_events = [e for e in self.down_events if e[0] > now - longest]
        if new > previous:
            self.up_events.append((now, new - previous))
        elif new < previous:
            self.down_events.append((now, previous - new))

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        up_cutoff = now - self.scale_up.stabilization
        down_cutoff = now - self.scale_down.stabilization
        up, down = desired, desired
        old_index = None
        for index, (replicas, at) in enumerate(self.recommendations):
            if at > up_cutoff:
                up = min(up, replicas)
            if at > down_cutoff:
                down = max(down, replicas)
            if at < up_cutoff and at < down_cutoff:
                old_index = index
        recommendation = current
        if recommendation < up:
            recommendation = up
        if recommendation > down:
            recommendation = down
        if old_index is not None:
            self.recommendations[old_index] = [desired, now]
        else:
            self.recommendations.append([desired, now])
        return recommendation

    @staticmethod
    def _changed_in(period: float, events: list[tuple[float, int]], now: float) -> int:
        return sum(delta for at, delta in events if at > now - period)

    def _limit(self, now: float, current: int, rules: ScalingRules, up: bool) -> int:
        if rules.select == "Disabled":
            return current
        pick = min if (rules.select == "Min") == up else max
        result: Optional[int] = None
        for policy in rules.policies:
            added = self._changed_in(policy.period, self.up_events, now)
            deleted = self._changed_in(policy.period, self.down_events, now)
            start = current - added + deleted
            if policy.kind == "Pods":
                proposed = start + policy.value if up else start - policy.value
            elif up:
                proposed = math.ceil(start * (1 + policy.value / 100))
            else:
                proposed = int(start * (1 - policy.value / 100))
            result = proposed if result is None else pick(result, proposed)
        return current if result is None else result

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        if desired > current:
            limit = max(self._limit(now, current, self.scale_up, up=True), current)
            return min(desired, min(self.max_replicas, limit))
        if desired < current:
            limit = min(self._limit(now, current, self.scale_down, up=False), current)
            return max(desired, max(self.min_replicas, limit))
        return desired
