"""The pure scaling policy: windows, tolerance, limits, several metrics, zero, missing data."""

from __future__ import annotations

import json
import math

import pytest

from llmops.api.autoscaling import AutoscalingSpec
from llmops.autoscale.policy import (
    HISTORY_LIMIT,
    AutoscalerState,
    MetricSample,
    PolicyInput,
    Reason,
    SampleStatus,
    WakeSignals,
    decide,
)

T0 = 1_700_000_000.0


def make_spec(**overrides) -> AutoscalingSpec:
    wire = {
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": [{"type": "waitingRequests", "target": 2}],
        "behavior": {
            "scaleUpStabilizationSeconds": 0,
            "scaleDownStabilizationSeconds": 0,
            "maxScaleUpStep": 100,
            "maxScaleDownStep": 100,
        },
    }
    behavior = overrides.pop("behavior", {})
    wire.update(overrides)
    wire["behavior"] = {**wire["behavior"], **behavior}
    return AutoscalingSpec.model_validate(wire)


def ok(spec: AutoscalingSpec, *values: float, age: float | None = 1.0) -> tuple[MetricSample, ...]:
    return tuple(
        MetricSample(metric, f"q{i}", SampleStatus.ok, value=value, age_seconds=age)
        for i, (metric, value) in enumerate(zip(spec.metrics, values))
    )


def run(spec, *, current, ready=None, starting=0, samples=(), now=T0, state=None, activity=None, wake=WakeSignals()):
    inputs = PolicyInput(
        spec=spec,
        now=now,
        current_replicas=current,
        ready_replicas=current if ready is None else ready,
        starting_replicas=starting,
        samples=samples,
        activity=activity,
        wake=wake,
    )
    return decide(inputs, state or AutoscalerState())


def test_ratio_scales_up_to_ceil_of_sum_over_target():
    spec = make_spec()
    decision, _ = run(spec, current=2, samples=ok(spec, 9))  # 4.5 waiting per replica vs 2
    assert decision.desired_replicas == 5  # ceil(9 / 2)
    assert decision.reason is Reason.scaled_up
    detail = decision.metrics[0]
    assert detail.value == pytest.approx(4.5)
    assert detail.recommendation == 5
    assert "waitingRequests" in decision.message


def test_within_tolerance_holds():
    spec = make_spec(behavior={"tolerance": 0.1})
    decision, _ = run(spec, current=4, samples=ok(spec, 8.6))  # ratio 1.075
    assert decision.desired_replicas == 4
    assert decision.reason is Reason.held_tolerance
    assert decision.metrics[0].recommendation == 4


def test_just_outside_tolerance_scales():
    spec = make_spec(behavior={"tolerance": 0.1})
    decision, _ = run(spec, current=4, samples=ok(spec, 9.2))  # ratio 1.15
    assert decision.desired_replicas == 5


def test_highest_recommendation_across_metrics_wins():
    spec = make_spec(
        metrics=[
            {"type": "waitingRequests", "target": 2},
            {"type": "kvCacheUtilization", "target": 0.5},
            {"type": "timeToFirstToken", "target": 1.0},
        ]
    )
    # waiting: 4/2 replicas = 2 per replica -> within tolerance (2); kv 0.9/0.5 x2 -> 4; ttft 1.5 x 2 -> 3
    decision, _ = run(spec, current=2, samples=ok(spec, 4, 0.9, 1.5))
    assert [m.recommendation for m in decision.metrics] == [2, 4, 3]
    assert decision.desired_replicas == 4
    assert "kvCacheUtilization" in decision.message


def test_missing_metric_gives_no_recommendation_others_still_count():
    spec = make_spec(metrics=[{"type": "waitingRequests", "target": 2}, {"type": "runningRequests", "target": 8}])
    samples = (
        MetricSample(spec.metrics[0], "q0", SampleStatus.missing, message="no series"),
        MetricSample(spec.metrics[1], "q1", SampleStatus.ok, value=48, age_seconds=2),
    )
    decision, _ = run(spec, current=3, samples=samples)
    assert decision.metrics[0].recommendation is None
    assert decision.desired_replicas == 6


def test_all_stale_holds_with_metrics_stale():
    spec = make_spec(behavior={"metricsMaxAgeSeconds": 30})
    decision, _ = run(spec, current=3, samples=ok(spec, 100, age=31))
    assert decision.desired_replicas == 3
    assert decision.reason is Reason.metrics_stale
    assert decision.metrics[0].status == "stale"
    assert "31s old" in decision.message


def test_all_errors_hold_with_metrics_unavailable():
    spec = make_spec()
    samples = (MetricSample(spec.metrics[0], "q0", SampleStatus.error, message="unreachable: connection refused"),)
    decision, _ = run(spec, current=3, samples=samples)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.metrics_unavailable)
    assert "connection refused" in decision.message


def test_scale_down_uses_highest_recommendation_in_window():
    spec = make_spec(behavior={"scaleDownStabilizationSeconds": 300})
    state = AutoscalerState()
    _, state = run(spec, current=6, samples=ok(spec, 12), now=T0, state=state)  # recommends 6
    decision, state = run(spec, current=6, samples=ok(spec, 2), now=T0 + 60, state=state)  # recommends 1
    assert (decision.desired_replicas, decision.reason) == (6, Reason.held_stabilization)
    decision, state = run(spec, current=6, samples=ok(spec, 6), now=T0 + 200, state=state)  # recommends 3
    assert decision.desired_replicas == 6
    # The 6 from T0 leaves the window: the highest left is 3 (T0+200).
    decision, state = run(spec, current=6, samples=ok(spec, 2), now=T0 + 301, state=state)
    assert (decision.desired_replicas, decision.reason) == (3, Reason.scaled_down)


def test_scale_up_uses_lowest_recommendation_in_window():
    spec = make_spec(behavior={"scaleUpStabilizationSeconds": 30, "panicThreshold": 10})
    state = AutoscalerState()
    decision, state = run(spec, current=2, samples=ok(spec, 4), now=T0, state=state)  # 2: tolerance
    decision, state = run(spec, current=2, samples=ok(spec, 8), now=T0 + 15, state=state)  # 4, window min 2
    assert (decision.desired_replicas, decision.reason) == (2, Reason.held_stabilization)
    decision, state = run(spec, current=2, samples=ok(spec, 10), now=T0 + 31, state=state)  # window {4, 5}
    assert (decision.desired_replicas, decision.reason) == (4, Reason.scaled_up)


def test_burst_at_panic_threshold_skips_up_window():
    spec = make_spec(behavior={"scaleUpStabilizationSeconds": 60, "panicThreshold": 2})
    state = AutoscalerState()
    _, state = run(spec, current=2, samples=ok(spec, 4), now=T0, state=state)
    decision, _ = run(spec, current=2, samples=ok(spec, 8), now=T0 + 15, state=state)  # ratio exactly 2
    assert (decision.desired_replicas, decision.reason) == (4, Reason.scaled_up)
    assert "burst" in decision.message


def test_step_limits_up_and_down():
    spec = make_spec(behavior={"maxScaleUpStep": 2, "maxScaleDownStep": 1})
    up, _ = run(spec, current=2, samples=ok(spec, 20))
    assert (up.desired_replicas, up.reason) == (4, Reason.scaled_up)
    assert "limited to +2" in up.message
    down, _ = run(spec, current=8, samples=ok(spec, 2))
    assert (down.desired_replicas, down.reason) == (7, Reason.scaled_down)
    assert "limited to -1" in down.message


def test_clamped_to_bounds_with_at_max_and_at_min():
    spec = make_spec(minReplicas=2, maxReplicas=5)
    decision, _ = run(spec, current=5, samples=ok(spec, 100))
    assert (decision.desired_replicas, decision.reason) == (5, Reason.at_max)
    decision, _ = run(spec, current=4, samples=ok(spec, 100))
    assert (decision.desired_replicas, decision.reason) == (5, Reason.scaled_up)
    decision, _ = run(spec, current=2, samples=ok(spec, 0))
    assert (decision.desired_replicas, decision.reason) == (2, Reason.at_min)


def test_out_of_bounds_replicas_are_corrected_without_metrics():
    spec = make_spec(minReplicas=2, maxReplicas=5)
    assert run(spec, current=9)[0].desired_replicas == 5
    assert run(spec, current=1)[0].desired_replicas == 2


def test_starting_pods_are_not_capacity_and_block_repeated_scale_up():
    spec = make_spec()
    # 2 ready, 2 starting (spec says 4); 12 waiting: per ready replica 6 -> recommends 6.
    decision, _ = run(spec, current=4, ready=2, starting=2, samples=ok(spec, 12))
    assert decision.metrics[0].value == pytest.approx(6)
    assert (decision.desired_replicas, decision.reason) == (4, Reason.waiting_for_starting_pods)
    assert "waiting for 2 starting replicas" in decision.message
    # Once they are ready the scale-up proceeds.
    decision, _ = run(spec, current=4, ready=4, starting=0, samples=ok(spec, 24))
    assert decision.desired_replicas == 12 - 2  # ceil(24/2) = 12, clamped to max 10
    assert decision.reason is Reason.scaled_up


def test_only_starting_pods_and_no_metrics_waits():
    spec = make_spec()
    samples = (MetricSample(spec.metrics[0], "q0", SampleStatus.missing),)
    decision, _ = run(spec, current=2, ready=0, starting=2, samples=samples)
    assert (decision.desired_replicas, decision.reason) == (2, Reason.waiting_for_starting_pods)


def test_scale_to_zero_after_idle_period():
    spec = make_spec(minReplicas=0, behavior={"scaleToZeroAfterSeconds": 600})
    state = AutoscalerState()
    decision, state = run(spec, current=1, samples=ok(spec, 0), activity=0, now=T0, state=state)
    assert decision.desired_replicas == 1 and state.idle_since == T0
    decision, state = run(spec, current=1, samples=ok(spec, 0), activity=0, now=T0 + 599, state=state)
    assert decision.desired_replicas == 1
    decision, state = run(spec, current=1, samples=ok(spec, 0), activity=0, now=T0 + 600, state=state)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.idle_scale_to_zero)


def test_activity_or_unknown_activity_resets_idle_timer():
    spec = make_spec(minReplicas=0, behavior={"scaleToZeroAfterSeconds": 600})
    _, state = run(spec, current=1, samples=ok(spec, 0), activity=0, now=T0)
    _, state = run(spec, current=1, samples=ok(spec, 0), activity=3.5, now=T0 + 300, state=state)
    assert state.idle_since is None
    _, state = run(spec, current=1, samples=ok(spec, 0), activity=0, now=T0 + 400, state=state)
    _, state = run(spec, current=1, samples=ok(spec, 0), activity=None, now=T0 + 1100, state=state)
    assert state.idle_since is None  # stale activity never scales to zero
    decision, _ = run(spec, current=1, samples=ok(spec, 0), activity=0, now=T0 + 1200, state=state)
    assert decision.desired_replicas == 1


def test_min_one_never_scales_to_zero():
    spec = make_spec(minReplicas=1, behavior={"scaleToZeroAfterSeconds": 0})
    decision, _ = run(spec, current=1, samples=ok(spec, 0), activity=0)
    assert decision.desired_replicas == 1


def test_at_zero_stays_without_wake_signal():
    spec = make_spec(minReplicas=0)
    samples = (MetricSample(spec.metrics[0], "q0", SampleStatus.missing),)
    decision, _ = run(spec, current=0, ready=0, samples=samples)
    assert (decision.desired_replicas, decision.reason) == (0, Reason.idle_scale_to_zero)
    assert "llmops.io/wake" in decision.message


def test_wake_annotation_wakes_once_per_value():
    spec = make_spec(minReplicas=0, behavior={"scaleToZeroAfterSeconds": 0})
    decision, state = run(spec, current=0, ready=0, wake=WakeSignals(annotation="t1"))
    assert (decision.desired_replicas, decision.reason) == (1, Reason.scaled_up)
    assert "llmops.io/wake" in decision.message
    # Running, idle, back to zero: the same annotation value must not wake it again.
    decision, state = run(spec, current=1, samples=ok(spec, 0), activity=0, wake=WakeSignals("t1"), state=state,
                          now=T0 + 10)
    assert decision.desired_replicas == 0
    decision, state = run(spec, current=0, ready=0, wake=WakeSignals("t1"), state=state, now=T0 + 20)
    assert decision.desired_replicas == 0
    decision, state = run(spec, current=0, ready=0, wake=WakeSignals("t2"), state=state, now=T0 + 30)
    assert decision.desired_replicas == 1


def test_annotation_set_while_running_does_not_wake_later():
    spec = make_spec(minReplicas=0, behavior={"scaleToZeroAfterSeconds": 0})
    decision, state = run(spec, current=1, samples=ok(spec, 0), activity=0, wake=WakeSignals("old"))
    assert decision.desired_replicas == 0
    decision, _ = run(spec, current=0, ready=0, wake=WakeSignals("old"), state=state, now=T0 + 15)
    assert decision.desired_replicas == 0


def test_activation_query_or_custom_metric_demand_wakes_from_zero():
    spec = make_spec(minReplicas=0)
    decision, _ = run(spec, current=0, ready=0, wake=WakeSignals(activation_value=3))
    assert (decision.desired_replicas, decision.reason) == (1, Reason.scaled_up)
    assert "activationQuery" in decision.message
    decision, _ = run(spec, current=0, ready=0, wake=WakeSignals(activation_value=0))
    assert decision.desired_replicas == 0
    custom = make_spec(minReplicas=0, metrics=[{"type": "prometheus", "target": 5,
                                                  "query": 'sum(gateway_pending{route="{name}"})'}])
    decision, _ = run(custom, current=0, ready=0, samples=ok(custom, 2))
    assert decision.desired_replicas == 1


def test_ttft_nan_means_no_requests_and_scales_down():
    spec = make_spec(metrics=[{"type": "timeToFirstToken", "target": 2}])
    decision, _ = run(spec, current=3, samples=ok(spec, math.nan))
    assert decision.desired_replicas == 1
    assert decision.metrics[0].note.startswith("no requests")


def test_prometheus_metric_per_replica_and_total():
    per = make_spec(metrics=[{"type": "prometheus", "target": 10, "query": "sum(x)"}])
    assert run(per, current=2, samples=ok(per, 60))[0].desired_replicas == 6
    total = make_spec(metrics=[{"type": "prometheus", "target": 10, "query": "max(x)", "perReplica": False}])
    assert run(total, current=2, samples=ok(total, 30))[0].desired_replicas == 6  # ratio 3 x 2 ready


def test_disabled_leaves_replicas():
    spec = make_spec(enabled=False)
    decision, _ = run(spec, current=7, samples=ok(spec, 100))
    assert (decision.desired_replicas, decision.reason) == (7, Reason.disabled)


def test_state_round_trips_through_json_and_history_is_bounded():
    spec = make_spec(behavior={"scaleDownStabilizationSeconds": 300})
    state = AutoscalerState()
    for i in range(HISTORY_LIMIT + 5):
        _, state = run(spec, current=3, samples=ok(spec, 6 + i), now=T0 + 15 * i, state=state)
        state = AutoscalerState.from_status(json.loads(json.dumps(state.to_status())))
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1]["time"] == "2023-11-14T22:16:50Z"
    assert state.last_decision["metrics"][0]["name"] == "waitingRequests"
    assert all(t >= T0 + 15 * (HISTORY_LIMIT + 4) - 300 for t, _ in state.recommendations)


def test_malformed_status_starts_fresh():
    assert AutoscalerState.from_status({"recommendations": "junk", "idleSince": "x"}) == AutoscalerState()
    assert AutoscalerState.from_status(None) == AutoscalerState()


def test_overwhelming_burst_scales_up_despite_starting_pods():
    spec = make_spec(behavior={"panicThreshold": 2, "maxScaleUpStep": 4})
    # 1 ready + 4 starting; 243 waiting: even over 5 replicas that is 24 per replica vs 2.
    decision, _ = run(spec, current=5, ready=1, starting=4, samples=ok(spec, 243))
    assert (decision.desired_replicas, decision.reason) == (9, Reason.scaled_up)
    assert "even counting 4 starting replicas" in decision.message
    # 12 waiting over 1 ready is 6x target, but over 5 replicas only 1.2x: wait for them.
    decision, _ = run(spec, current=5, ready=1, starting=4, samples=ok(spec, 12))
    assert decision.reason is Reason.waiting_for_starting_pods


def test_receding_backlog_gets_no_fast_path():
    spec = make_spec(behavior={"scaleUpStabilizationSeconds": 60, "panicThreshold": 2})
    # A cold start left 126 waiting on the first ready replica (recommendation 63); now it drains.
    fresh = AutoscalerState(recommendations=((T0 - 30, 1), (T0, 63)))
    decision, _ = run(spec, current=2, samples=ok(spec, 110), now=T0 + 15, state=fresh)  # 55 < 63: receding
    assert (decision.desired_replicas, decision.reason) == (2, Reason.held_stabilization)
    growing = AutoscalerState(recommendations=((T0 - 30, 1), (T0, 50)))
    decision, _ = run(spec, current=2, samples=ok(spec, 110), now=T0 + 15, state=growing)
    assert (decision.desired_replicas, decision.reason) == (55 - 45, Reason.scaled_up)  # 55 clamped to max 10
