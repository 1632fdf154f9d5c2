"""The scaling policy: measured metrics + replica counts + history -> a Decision.

Pure: no clock, no environment, no I/O. Time comes in as `now` (epoch seconds) and the
history the policy needs between calls (recent recommendations, idle start, the last
wake token consumed, recent decisions) is an `AutoscalerState` passed in and returned;
the operator keeps it in `status.autoscaling` (`AutoscalerState.to_status()`).

The shape follows the Kubernetes HPA so its behaviour is familiar:
  per metric   recommendation = ceil(ready x value / target), skipped within tolerance
  across       the highest recommendation wins
  windows      scale-up uses the lowest recommendation of the up-window (skipped when a
               metric is at panicThreshold x target and the recommendation is not
               shrinking), scale-down the highest of the down-window
  limits       at most maxScaleUpStep / maxScaleDownStep per decision, then clamped to
               [max(minReplicas, 1), maxReplicas]
LLM-specific additions: pods still starting are not capacity and a scale-up is not
repeated while they start (cold starts take minutes, and the queue keeps growing meanwhile,
which would otherwise add replicas again and again) unless the load is at panicThreshold x
target even with the starting replicas counted as capacity; scale to zero after an idle period and
back to one on a wake signal (there are no vLLM metrics while no pod runs).

`mode: demand` replaces the per-metric ratios and windows with `llmops.autoscale.demand`
(offered load, backlog, drain, a hold of one cold start) whenever an arrival rate is
measured, and falls back to the ratio rules when none is. Bounds, step limits, scale to
zero and the capacity cap apply to both modes: while pods are Unschedulable, desired
replicas are capped at the scheduled ones plus one probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Optional

from llmops.api.autoscaling import WAKE_ANNOTATION, AutoscalingMode, AutoscalingSpec, MetricTarget, MetricType
from llmops.autoscale import demand as demand_sizing
from llmops.autoscale.demand import DemandSignals, Term
from llmops.timestamps import rfc3339

HISTORY_LIMIT = 10

# Per-replica metrics are sums over pods divided by ready replicas.
_SUMMED_TYPES = {
    MetricType.waiting_requests,
    MetricType.running_requests,
    MetricType.generation_tokens_per_second,
}


class Reason(str, Enum):
    scaled_up = "scaled-up"
    scaled_down = "scaled-down"
    held_stabilization = "held-stabilization"
    held_tolerance = "held-tolerance"
    at_max = "at-max"
    at_min = "at-min"
    metrics_stale = "metrics-stale"
    metrics_unavailable = "metrics-unavailable"
    idle_scale_to_zero = "idle-scale-to-zero"
    waiting_for_starting_pods = "waiting-for-starting-pods"
    capacity_capped = "capacity-capped"
    disabled = "disabled"

    @property
    def condition_reason(self) -> str:
        """CamelCase form for a Kubernetes condition reason, e.g. HeldStabilization."""
        return "".join(part.capitalize() for part in self.value.split("-"))


class SampleStatus(str, Enum):
    ok = "ok"            # a value was measured (its age is checked by the policy)
    missing = "missing"  # the query ran and returned nothing (no series, or all stale-marked)
    error = "error"      # Prometheus unreachable or the query failed


@dataclass(frozen=True)
class MetricSample:
    """What was measured for one `spec.autoscaling.metrics` entry."""

    metric: MetricTarget
    query: str
    status: SampleStatus
    value: Optional[float] = None        # the query's value: a sum, a mean or a percentile
    age_seconds: Optional[float] = None  # age of the newest underlying sample; None = unknown
    message: str = ""


@dataclass(frozen=True)
class WakeSignals:
    """What can wake a deployment at zero replicas (no vLLM metrics exist then)."""

    annotation: Optional[str] = None          # value of the llmops.io/wake annotation, if set
    activation_value: Optional[float] = None  # value of spec.autoscaling.activationQuery, if measured


@dataclass(frozen=True)
class Capacity:
    """What the scheduler says about this deployment's pods."""

    unschedulable: int = 0  # pods Pending with PodScheduled=False, reason Unschedulable
    message: str = ""       # the scheduler's message for one of them


@dataclass(frozen=True)
class PolicyInput:
    spec: AutoscalingSpec
    now: float                      # epoch seconds
    current_replicas: int           # spec.replicas as it is now
    ready_replicas: int             # pods Ready (serving capacity)
    starting_replicas: int          # pods that exist but are not Ready yet (pending, loading)
    samples: tuple[MetricSample, ...] = ()
    # running + waiting requests + generated tokens/s over the deployment; 0 means idle,
    # None means unknown (no data): only needed when minReplicas is 0.
    activity: Optional[float] = None
    wake: WakeSignals = WakeSignals()
    demand: Optional[DemandSignals] = None  # mode demand only
    capacity: Capacity = Capacity()


@dataclass(frozen=True)
class MetricDetail:
    name: str                          # metric type, e.g. waitingRequests
    query: str
    status: str                        # ok, missing, error, stale, no-ready-replicas
    value: Optional[float]             # the compared quantity (per replica, mean or percentile)
    target: float
    age_seconds: Optional[float]
    ratio: Optional[float]             # value / target
    recommendation: Optional[int]      # None = this metric gives no recommendation
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "query": self.query,
            "status": self.status,
            "value": _round(self.value),
            "target": self.target,
            "ageSeconds": _round(self.age_seconds),
            "ratio": _round(self.ratio),
            "recommendation": self.recommendation,
            "note": self.note,
        }


@dataclass(frozen=True)
class Decision:
    at: float
    current_replicas: int
    desired_replicas: int
    reason: Reason
    message: str
    ready_replicas: int = 0
    starting_replicas: int = 0
    metrics: tuple[MetricDetail, ...] = ()
    terms: tuple[Term, ...] = ()          # mode demand: every sizing term with its inputs
    capacity: Optional[dict[str, Any]] = None  # set when the capacity cap applied

    @property
    def changed(self) -> bool:
        return self.desired_replicas != self.current_replicas

    def to_dict(self) -> dict[str, Any]:
        """Full form for status.autoscaling.lastDecision."""
        full = {**self.to_summary(), "metrics": [m.to_dict() for m in self.metrics]}
        if self.terms:
            full["terms"] = [t.to_dict() for t in self.terms]
        if self.capacity:
            full["capacity"] = self.capacity
        return full

    def to_summary(self) -> dict[str, Any]:
        """Compact form kept in the bounded history."""
        return {
            "time": rfc3339(self.at),
            "from": self.current_replicas,
            "to": self.desired_replicas,
            "ready": self.ready_replicas,
            "starting": self.starting_replicas,
            "reason": self.reason.value,
            "message": self.message,
        }


@dataclass(frozen=True)
class AutoscalerState:
    """Everything the policy remembers between decisions (JSON-serialisable via to_status)."""

    recommendations: tuple[tuple[float, int], ...] = ()  # (time, unclamped replicas), oldest first
    idle_since: Optional[float] = None
    wake_token: Optional[str] = None   # last llmops.io/wake value acted on
    history: tuple[dict[str, Any], ...] = ()  # Decision.to_summary(), oldest first
    last_decision: Optional[dict[str, Any]] = None
    last_evaluated_at: Optional[float] = None
    unloaded_service_seconds: Optional[float] = None  # mode demand: last service time without a queue

    def to_status(self, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "lastDecision": self.last_decision,
            "history": list(self.history),
            "recommendations": [[round(t, 3), n] for t, n in self.recommendations],
            "idleSince": self.idle_since,
            "wakeToken": self.wake_token,
            "lastEvaluatedAt": self.last_evaluated_at,
            "unloadedServiceSeconds": self.unloaded_service_seconds,
        }
        status.update(extra or {})
        return status

    @classmethod
    def from_status(cls, status: Optional[dict[str, Any]]) -> "AutoscalerState":
        """Read back what to_status wrote; anything malformed starts fresh rather than failing."""
        if not isinstance(status, dict):
            return cls()
        try:
            recommendations = tuple(
                (float(t), int(n)) for t, n in (status.get("recommendations") or [])
            )
        except (TypeError, ValueError):
            recommendations = ()
        idle_since = status.get("idleSince")
        evaluated = status.get("lastEvaluatedAt")
        unloaded = status.get("unloadedServiceSeconds")
        history = status.get("history") or []
        last = status.get("lastDecision")
        return cls(
            recommendations=recommendations,
            idle_since=float(idle_since) if isinstance(idle_since, (int, float)) else None,
            wake_token=status.get("wakeToken") if isinstance(status.get("wakeToken"), str) else None,
            history=tuple(h for h in history if isinstance(h, dict))[-HISTORY_LIMIT:],
            last_decision=last if isinstance(last, dict) else None,
            last_evaluated_at=float(evaluated) if isinstance(evaluated, (int, float)) else None,
            unloaded_service_seconds=float(unloaded) if isinstance(unloaded, (int, float)) and unloaded > 0 else None,
        )


def decide(inputs: PolicyInput, state: AutoscalerState) -> tuple[Decision, AutoscalerState]:
    """The one entry point: returns the decision and the state to keep for the next call."""
    decision, state = _decide(inputs, state)
    decision = _cap_to_capacity(decision, inputs)
    summary = decision.to_summary()
    # Every decision consumes the current llmops.io/wake value, so only a value set after
    # this point can wake the deployment from zero later.
    if inputs.wake.annotation is not None:
        state = replace(state, wake_token=inputs.wake.annotation)
    return decision, replace(
        state,
        history=(state.history + (summary,))[-HISTORY_LIMIT:],
        last_decision=decision.to_dict(),
        last_evaluated_at=inputs.now,
    )


Outcome = tuple["Decision", "AutoscalerState"]


class _Maker:
    """Builds this decision's Decision: the same inputs, metric details and message prefix
    (a note every message of the decision starts with) whatever stage decides."""

    def __init__(self, inp: PolicyInput, details: tuple[MetricDetail, ...]):
        self.inp, self.details, self.prefix = inp, details, ""

    def __call__(self, desired: int, reason: Reason, message: str) -> Decision:
        inp = self.inp
        return Decision(
            at=inp.now,
            current_replicas=inp.current_replicas,
            desired_replicas=desired,
            reason=reason,
            message=self.prefix + message,
            ready_replicas=inp.ready_replicas,
            starting_replicas=inp.starting_replicas,
            metrics=self.details,
        )


@dataclass(frozen=True)
class _Stabilized:
    """The ratio rules' answer before step limits: the winning metric and the windows' view."""

    driver: MetricDetail
    unclamped: int              # the driver's recommendation, outside the bounds too
    raw: int                    # ... within minReplicas/maxReplicas
    stabilized: int             # after the up- and down-windows
    down_recommendation: int    # the highest recommendation in the down-window
    panic: tuple[MetricDetail, ...]
    overwhelming: tuple[MetricDetail, ...]   # panic metrics still a burst counting starting pods
    future_share: float


def _decide(inp: PolicyInput, state: AutoscalerState) -> Outcome:
    """The stages in order; the first that decides wins."""
    make = _Maker(inp, tuple(_evaluate_metric(s, inp) for s in inp.samples))
    floor = max(inp.spec.min_replicas, 1)
    state = _forget_old_recommendations(inp, state)
    decided = _outside_the_rules(inp, state, make, floor)
    if decided is None:
        state = _track_idle(inp, state)
        decided = _scale_to_zero(inp, state, make)
    if decided is None and inp.spec.mode is AutoscalingMode.demand:
        decided = _decide_demand(inp, state, floor)
        if decided is not None:
            decision, state = decided
            return replace(decision, metrics=make.details), state
        make.prefix = _demand_fallback_note(inp)
    if decided is not None:
        return decided
    usable = [d for d in make.details if d.recommendation is not None]
    if not usable:
        return _without_metrics(inp, make), state
    state, stable = _stabilize(inp, state, usable, floor)
    return _act(inp, stable, usable, make, floor), state


def _forget_old_recommendations(inp: PolicyInput, state: AutoscalerState) -> AutoscalerState:
    """Keep the recommendations the longest window (or, in mode demand, a cold start) reads."""
    behavior = inp.spec.behavior
    window = max(behavior.scale_up_stabilization_seconds, behavior.scale_down_stabilization_seconds)
    if inp.spec.mode is AutoscalingMode.demand:
        window = max(window, demand_sizing.cold_start_estimate(inp.spec, inp.demand)[0])
    return replace(state, recommendations=tuple((t, n) for t, n in state.recommendations if t >= inp.now - window))


def _outside_the_rules(inp: PolicyInput, state: AutoscalerState, make: _Maker, floor: int) -> Optional[Outcome]:
    """Disabled, at zero, or outside minReplicas..maxReplicas: no metric is consulted."""
    spec, current = inp.spec, inp.current_replicas
    if not spec.enabled:
        return make(current, Reason.disabled, "autoscaling.enabled is false; replicas are left as set"), state
    if current == 0:
        return _from_zero(inp, state, make, floor)
    if current > spec.max_replicas:
        return make(spec.max_replicas, Reason.scaled_down, f"above maxReplicas {spec.max_replicas}"), state
    if current < floor:
        return make(floor, Reason.scaled_up, f"below minReplicas {spec.min_replicas}"), state
    return None


def _scale_to_zero(inp: PolicyInput, state: AutoscalerState, make: _Maker) -> Optional[Outcome]:
    spec = inp.spec
    if (
        spec.min_replicas == 0
        and state.idle_since is not None
        and inp.now - state.idle_since >= spec.behavior.scale_to_zero_after_seconds
        and inp.starting_replicas == 0
    ):
        idle_for = inp.now - state.idle_since
        return (
            make(0, Reason.idle_scale_to_zero, f"no requests or generated tokens for {idle_for:.0f}s; scaled to zero"),
            replace(state, recommendations=(), idle_since=None),
        )
    return None


def _demand_fallback_note(inp: PolicyInput) -> str:
    """Why mode demand fell back to the ratio rules (prefixes every message of the decision)."""
    failed = inp.demand.arrival_fast.error if inp.demand else ""
    which = "arrivalsQuery" if inp.spec.demand.arrivals_query else "arrival-rate query"
    why = f" ({which} failed: {failed})" if failed and failed != "empty" else ""
    return f"demand: no arrival rate measured{why}, ratio rules apply; "


def _without_metrics(inp: PolicyInput, make: _Maker) -> Decision:
    """No metric gave a recommendation: hold, saying why."""
    current, details = inp.current_replicas, make.details
    if inp.ready_replicas == 0 and inp.starting_replicas > 0:
        return make(current, Reason.waiting_for_starting_pods, _starting_message(inp))
    if details and all(d.status == SampleStatus.error.value for d in details):
        return make(current, Reason.metrics_unavailable, _problems(details))
    return make(current, Reason.metrics_stale, _problems(details) or "no metrics configured")


def _stabilize(inp: PolicyInput, state: AutoscalerState, usable: list[MetricDetail],
               floor: int) -> tuple[AutoscalerState, _Stabilized]:
    """The highest recommendation wins; it is remembered, then the windows smooth it (a burst
    of load that is building skips the up-window)."""
    spec, behavior, now, current = inp.spec, inp.spec.behavior, inp.now, inp.current_replicas
    driver = max(usable, key=lambda d: d.recommendation)
    unclamped = driver.recommendation
    raw = min(max(unclamped, floor), spec.max_replicas)
    # Stored unclamped (windows then clamp), so a backlog shrinking above maxReplicas is visible.
    previous = state.recommendations[-1][1] if state.recommendations else None
    recommendations = state.recommendations + ((now, unclamped),)
    state = replace(state, recommendations=recommendations)
    # The fast path is for load that is building. A backlog already shrinking (e.g. the queue
    # left by a cold start, draining on the replicas just started) gets the normal windows.
    receding = previous is not None and unclamped < previous
    panic = () if receding else tuple(
        d for d in usable if d.ratio is not None and d.ratio >= behavior.panic_threshold
    )

    up_from = now - behavior.scale_up_stabilization_seconds
    down_from = now - behavior.scale_down_stabilization_seconds
    up_recommendation = unclamped if panic else min(n for t, n in recommendations if t >= up_from)
    down_recommendation = max(n for t, n in recommendations if t >= down_from)
    stabilized = current
    if stabilized < up_recommendation:
        stabilized = up_recommendation
    if stabilized > down_recommendation:
        stabilized = down_recommendation
    stabilized = min(max(stabilized, floor), spec.max_replicas)

    # Starting replicas are capacity on its way: do not add more for the same load, unless
    # the load is a burst even when they are counted (ratio over ready + starting replicas).
    future_share = inp.ready_replicas / (inp.ready_replicas + inp.starting_replicas)
    overwhelming = tuple(d for d in panic if d.ratio * future_share >= behavior.panic_threshold)
    return state, _Stabilized(driver, unclamped, raw, stabilized, down_recommendation, panic, overwhelming,
                              future_share)


def _act(inp: PolicyInput, s: _Stabilized, usable: list[MetricDetail], make: _Maker, floor: int) -> Decision:
    """Step limits and bounds, then the decision with the reason it was taken (or held)."""
    spec, behavior, current = inp.spec, inp.spec.behavior, inp.current_replicas
    if s.stabilized > current and inp.starting_replicas > 0 and not s.overwhelming:
        return make(current, Reason.waiting_for_starting_pods, _starting_message(inp, s.raw))

    desired = min(s.stabilized, current + behavior.max_scale_up_step)
    desired = max(desired, current - behavior.max_scale_down_step)
    desired = min(max(desired, floor), spec.max_replicas)
    why = f"{s.driver.name} {_fmt(s.driver.value)} vs target {_fmt(s.driver.target)} -> {s.unclamped}"

    if desired > current:
        notes = [why]
        if s.overwhelming and inp.starting_replicas:
            notes.append(
                f"burst: {s.overwhelming[0].name} at {s.overwhelming[0].ratio * s.future_share:.1f}x target even "
                f"counting {inp.starting_replicas} starting replicas"
            )
        elif s.panic:
            notes.append(f"burst: {s.panic[0].name} at {s.panic[0].ratio:.1f}x target skipped the up-window")
        if desired < s.stabilized:
            notes.append(f"limited to +{behavior.max_scale_up_step} per decision")
        return make(desired, Reason.scaled_up, "; ".join(notes))
    if desired < current:
        notes = [why]
        if desired > s.stabilized:
            notes.append(f"limited to -{behavior.max_scale_down_step} per decision")
        return make(desired, Reason.scaled_down, "; ".join(notes))
    return _held(inp, s, usable, make, floor, why)


def _held(inp: PolicyInput, s: _Stabilized, usable: list[MetricDetail], make: _Maker, floor: int,
          why: str) -> Decision:
    """No change: name what holds the replicas (a bound, a window, the tolerance)."""
    spec, behavior, current = inp.spec, inp.spec.behavior, inp.current_replicas
    if s.unclamped > current and current >= spec.max_replicas:
        return make(current, Reason.at_max, f"{why}; at maxReplicas {spec.max_replicas}")
    if s.unclamped < current and current <= floor:
        return make(current, Reason.at_min, f"{why}; at minReplicas {floor}")
    if s.raw > current:
        window_s = behavior.scale_up_stabilization_seconds
        return make(current, Reason.held_stabilization, f"{why}; scale-up window {window_s:.0f}s")
    if s.raw < current:
        window_s = behavior.scale_down_stabilization_seconds
        return make(
            current,
            Reason.held_stabilization,
            f"{why}; scale-down window {window_s:.0f}s holds {min(s.down_recommendation, spec.max_replicas)}",
        )
    if any(d.note.endswith("within tolerance") for d in usable if d.recommendation == s.raw):
        return make(current, Reason.held_tolerance, f"{why}; within tolerance {behavior.tolerance:g}")
    return make(current, Reason.held_tolerance, f"{why}; the recommendation equals the current replicas")


def _decide_demand(
    inp: PolicyInput, state: AutoscalerState, floor: int
) -> Optional[tuple[Decision, AutoscalerState]]:
    """Mode demand; None when it cannot size (no arrival rate): the ratio rules then apply."""
    spec, behavior, now, current = inp.spec, inp.spec.behavior, inp.now, inp.current_replicas
    sizing = demand_sizing.size(
        spec,
        inp.demand or DemandSignals(),
        now=now,
        current=current,
        ready=inp.ready_replicas,
        history=state.recommendations,
        max_age=behavior.metrics_max_age_seconds,
        unloaded_service=state.unloaded_service_seconds,
    )
    if sizing is None:
        return None
    state = replace(
        state,
        recommendations=state.recommendations + ((now, sizing.steady),),
        unloaded_service_seconds=sizing.unloaded_service,
    )
    bounded = min(max(sizing.desired, floor), spec.max_replicas)
    desired = min(bounded, current + behavior.max_scale_up_step)
    desired = max(desired, current - behavior.max_scale_down_step)
    notes = [sizing.message]
    if desired != bounded:
        notes.append(f"limited to {behavior.max_scale_up_step if desired > current else -behavior.max_scale_down_step:+d} per decision")
    if sizing.desired > spec.max_replicas:
        notes.append(f"at maxReplicas {spec.max_replicas}")
    elif sizing.desired < floor:
        notes.append(f"at minReplicas {floor}")
    if desired > current:
        reason = Reason.scaled_up
    elif desired < current:
        reason = Reason.scaled_down
    elif sizing.desired > current and current >= spec.max_replicas:
        reason = Reason.at_max
    elif sizing.desired < current and current <= floor:
        reason = Reason.at_min
    elif any(t.name in ("hold", "drain") for t in sizing.terms):
        reason = Reason.held_stabilization
    else:
        reason = Reason.held_tolerance
    decision = Decision(
        at=now,
        current_replicas=current,
        desired_replicas=desired,
        reason=reason,
        message="; ".join(notes),
        ready_replicas=inp.ready_replicas,
        starting_replicas=inp.starting_replicas,
        terms=sizing.terms,
    )
    return decision, state


def _cap_to_capacity(decision: Decision, inp: PolicyInput) -> Decision:
    """Pods the scheduler cannot place are not capacity, and asking for more of them only
    queues more: cap at the pods that did get a node plus one probe replica, which finds
    out when capacity appears (a new node, a cluster autoscaler). Never below minReplicas:
    that floor is the user's, and a missing node must not lower it."""
    unschedulable = inp.capacity.unschedulable
    if unschedulable <= 0:
        return decision
    scheduled = max(0, inp.ready_replicas + inp.starting_replicas - unschedulable)
    cap = max(scheduled + 1, inp.spec.min_replicas)
    if decision.desired_replicas <= cap:
        return decision
    why = inp.capacity.message or "pods are Unschedulable"
    return replace(
        decision,
        desired_replicas=cap,
        reason=Reason.capacity_capped,
        message=(
            f"wanted {decision.desired_replicas}, capped at {cap} "
            f"({scheduled} scheduled + 1 probe, at least minReplicas {inp.spec.min_replicas}): "
            f"{unschedulable} unschedulable: {why}"
        )[:1024],
        capacity={"unschedulable": unschedulable, "scheduled": scheduled, "cap": cap,
                  "wanted": decision.desired_replicas, "reason": why[:512]},
    )


def _evaluate_metric(sample: MetricSample, inp: PolicyInput) -> MetricDetail:
    metric = sample.metric
    base = dict(name=metric.type.value, query=sample.query, target=metric.target, age_seconds=sample.age_seconds)
    if sample.status is not SampleStatus.ok or sample.value is None:
        status = SampleStatus.missing if sample.status is SampleStatus.ok else sample.status
        return MetricDetail(
            status=status.value, value=None, ratio=None, recommendation=None,
            note=sample.message or "no data", **base,
        )
    max_age = inp.spec.behavior.metrics_max_age_seconds
    if sample.age_seconds is not None and sample.age_seconds > max_age:
        return MetricDetail(
            status="stale", value=sample.value, ratio=None, recommendation=None,
            note=f"newest sample {sample.age_seconds:.0f}s old (limit {max_age:.0f}s)", **base,
        )
    ready = inp.ready_replicas
    if ready == 0:
        return MetricDetail(
            status="no-ready-replicas", value=sample.value, ratio=None, recommendation=None,
            note="no Ready replica to compare against", **base,
        )
    value, note = _comparable_value(metric, sample.value, ready)
    ratio = value / metric.target
    if abs(ratio - 1) <= inp.spec.behavior.tolerance:
        recommendation = inp.current_replicas
        note = (note + "; " if note else "") + "within tolerance"
    else:
        recommendation = math.ceil(round(ready * ratio, 9))
    return MetricDetail(status="ok", value=value, ratio=ratio, recommendation=recommendation, note=note, **base)


def _comparable_value(metric: MetricTarget, value: float, ready: int) -> tuple[float, str]:
    if math.isnan(value):
        # A percentile over a window without requests: no latency pressure at all.
        return 0.0, "no requests in the window"
    if metric.type in _SUMMED_TYPES or (metric.type is MetricType.prometheus and metric.per_replica):
        return value / ready, f"{_fmt(value)} over {ready} ready replicas"
    return value, ""


def _track_idle(inp: PolicyInput, state: AutoscalerState) -> AutoscalerState:
    idle = inp.activity is not None and inp.activity <= 0 and inp.ready_replicas > 0
    if not idle:
        return replace(state, idle_since=None)
    return state if state.idle_since is not None else replace(state, idle_since=inp.now)


def _from_zero(inp: PolicyInput, state: AutoscalerState, make: _Maker, floor: int) -> Outcome:
    if inp.spec.min_replicas > 0:
        return make(floor, Reason.scaled_up, f"below minReplicas {inp.spec.min_replicas}"), state
    wake = inp.wake
    woken_by = None
    if wake.annotation is not None and wake.annotation != state.wake_token:
        woken_by = f"annotation {WAKE_ANNOTATION}={wake.annotation!r}"
    elif wake.activation_value is not None and not math.isnan(wake.activation_value) and wake.activation_value > 0:
        woken_by = f"activationQuery = {_fmt(wake.activation_value)}"
    else:
        demand = [
            s for s in inp.samples
            if s.status is SampleStatus.ok and s.value is not None and not math.isnan(s.value) and s.value > 0
            and (s.age_seconds is None or s.age_seconds <= inp.spec.behavior.metrics_max_age_seconds)
        ]
        if demand:
            woken_by = f"{demand[0].metric.type.value} = {_fmt(demand[0].value)}"
    if woken_by is None:
        return make(
            0,
            Reason.idle_scale_to_zero,
            f"at zero; wakes when annotation {WAKE_ANNOTATION} gets a new value or activationQuery is > 0",
        ), state
    return make(1, Reason.scaled_up, f"woken from zero by {woken_by}"), replace(state, idle_since=None, recommendations=())


def _starting_message(inp: PolicyInput, recommendation: Optional[int] = None) -> str:
    message = f"waiting for {inp.starting_replicas} starting replicas"
    if recommendation is not None:
        message += f" before scaling up again (recommendation {recommendation})"
    return message


def _problems(details: tuple[MetricDetail, ...]) -> str:
    return "; ".join(f"{d.name}: {d.status} ({d.note})" for d in details)


def _fmt(value: Optional[float]) -> str:
    return "none" if value is None else f"{value:.3g}"


def _round(value: Optional[float]) -> Optional[float]:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 4)

