"""Demand mode: sizing terms, fallbacks, hold windows, and the capacity cap (pure)."""

import math

import pytest
from pydantic import ValidationError

from llmops.api.autoscaling import AutoscalingSpec
from llmops.autoscale.demand import DemandSignals, Signal, learned_cold_start
from llmops.autoscale.policy import AutoscalerState, Capacity, MetricSample, PolicyInput, Reason, SampleStatus, decide

T0 = 1_700_000_000.0


def spec(**demand) -> AutoscalingSpec:
    base = {"slotsPerReplica": 16, "serviceSecondsHint": 8, "coldStartSecondsHint": 120,
            "targetUtilization": 1.0, "safetyFactor": 0}
    base.update(demand)
    return AutoscalingSpec.model_validate({"mode": "demand", "maxReplicas": 12, "demand": base})


def signals(rate=None, queue=0.0, slow=None, age=1.0, **extra) -> DemandSignals:
    return DemandSignals(
        arrival_fast=Signal(rate, age), arrival_slow=Signal(slow if slow is not None else rate, age),
        queue=Signal(queue, age) if queue is not None else Signal(), **extra,
    )


def run(autoscaling, sig, current=1, ready=None, starting=0, state=None, at=0.0, **kw):
    ready = current - starting if ready is None else ready
    inputs = PolicyInput(spec=autoscaling, now=T0 + at, current_replicas=current, ready_replicas=ready,
                         starting_replicas=starting, demand=sig, **kw)
    return decide(inputs, state or AutoscalerState())


def term(decision, name):
    return next((t for t in decision.terms if t.name == name), None)


def test_steady_term_sizes_from_offered_load():
    # 6 req/s x 8 s = 48 busy slots / 16 per replica = 3 replicas; 3 Ready replicas keep
    # up, so nothing queues and the fleet stays.
    decision, _ = run(spec(), signals(rate=6.0), current=3)
    assert decision.desired_replicas == 3 and decision.reason is Reason.held_tolerance
    steady = term(decision, "steady")
    assert steady.replicas == 3 and steady.inputs["load"] == pytest.approx(48)
    assert term(decision, "backlog").replicas == 0
    assert steady.inputs["serviceSource"] == "hint" and steady.inputs["slotsSource"] == "spec"


def test_safety_margin_grows_with_the_square_root_of_load():
    small, _ = run(spec(safetyFactor=1), signals(rate=0.5), current=1)    # 4 + 2 = 6 slots
    large, _ = run(spec(safetyFactor=1), signals(rate=8.0), current=1)    # 64 + 8 = 72 slots
    assert term(small, "steady").replicas == 1
    assert term(large, "steady").replicas == math.ceil(72 / 16)


def test_measured_service_time_and_slots_win_over_hints():
    autoscaling = spec(slotsPerReplica=None)
    sig = signals(rate=4.0, service_seconds=Signal(2.0, 1.0, "q"), slots_per_replica=Signal(4.0, 1.0, "kv-cache"))
    decision, _ = run(autoscaling, sig, current=2)
    steady = term(decision, "steady")
    assert (steady.inputs["serviceSource"], steady.inputs["slotsSource"]) == ("q", "kv-cache")
    assert steady.replicas == 2  # 4 req/s x 2 s = 8 busy slots / 4 per replica


def test_backlog_is_projected_one_cold_start_ahead():
    # 2 req/s x 8 s = 16 busy slots: steady 1. One Ready replica finishes 2 req/s, so 40
    # queued requests are still queued in 120 s: one more replica clears them in another 120 s.
    decision, _ = run(spec(), signals(rate=2.0, queue=40), current=1)
    backlog = term(decision, "backlog")
    assert backlog.inputs["projectedQueue"] == pytest.approx(40) and backlog.replicas == 1
    assert decision.desired_replicas == 2


def test_backlog_counts_starting_pods_at_their_expected_ready_time():
    # The same queue, but a replica started 100 s ago joins in 20 s and clears it: no
    # backlog replicas, and the drain term keeps the two replicas while requests wait.
    decision, _ = run(spec(), signals(rate=2.0, queue=40, starting_ages=(100.0,)), current=2, starting=1)
    backlog = term(decision, "backlog")
    assert backlog.inputs["startingReadyInSeconds"] == [20.0]
    assert backlog.inputs["projectedQueue"] == 0 and backlog.replicas == 0
    assert term(decision, "drain").replicas == 2 and decision.desired_replicas == 2


def test_a_cold_start_backlog_does_not_send_the_fleet_to_max():
    # A step to 10 req/s (5 replicas of load) while 4 replicas are already starting: the
    # ratio rules see a queue of 300 on one replica (150x target); demand asks for what the
    # load and the projected queue need.
    sig = signals(rate=10.0, queue=300, starting_ages=(30.0, 30.0, 30.0, 30.0))
    decision, _ = run(spec(), sig, current=5, starting=4)
    assert decision.desired_replicas < 12
    assert decision.desired_replicas >= 5


def test_no_arrival_rate_falls_back_to_the_ratio_rules():
    autoscaling = spec()
    sample = MetricSample(autoscaling.metrics[0], "q", SampleStatus.ok, value=12.0, age_seconds=1.0)
    decision, _ = run(autoscaling, DemandSignals(), current=2, samples=(sample,))
    assert decision.message.startswith("demand: no arrival rate measured, ratio rules apply")
    assert not decision.terms and decision.desired_replicas == 6  # 12 waiting / 2 ready / target 2 x 2


def test_a_stale_arrival_rate_is_no_arrival_rate():
    autoscaling = spec()
    decision, _ = run(autoscaling, signals(rate=6.0, age=600.0), current=3)
    assert not decision.terms and decision.reason is Reason.metrics_stale


def test_unknown_queue_never_scales_down():
    decision, _ = run(spec(), signals(rate=0.5, queue=None), current=4)
    assert decision.desired_replicas == 4
    assert "queue unknown" in term(decision, "drain").note


def test_backlog_replicas_go_as_soon_as_the_queue_is_empty_but_steady_ones_are_held():
    autoscaling = spec()
    busy, state = run(autoscaling, signals(rate=4.0, queue=400), current=2)  # steady 2 + backlog
    assert busy.desired_replicas > 2
    # The queue drained: down to steady at once (no 300 s window), the steady term is held.
    drained, state = run(autoscaling, signals(rate=4.0, queue=0), current=busy.desired_replicas, state=state, at=15)
    assert drained.desired_replicas == 2 and drained.reason is Reason.scaled_down
    quiet, state = run(autoscaling, signals(rate=1.0, queue=0), current=2, state=state, at=60)
    assert quiet.desired_replicas == 2 and term(quiet, "hold").replicas == 2
    later, _ = run(autoscaling, signals(rate=1.0, queue=0), current=2, state=state, at=200)
    assert later.desired_replicas == 1  # the last steady 2 is older than one cold start


def test_the_hold_window_is_the_learned_cold_start():
    autoscaling = spec()
    learned = {"cold_start_seconds": Signal(30.0, 0.0, "pods")}
    _, state = run(autoscaling, signals(rate=4.0, **learned), current=2)
    held, state = run(autoscaling, signals(rate=1.0, **learned), current=2, state=state, at=20)
    assert held.desired_replicas == 2 and term(held, "hold").inputs["holdSeconds"] == 30
    released, _ = run(autoscaling, signals(rate=1.0, **learned), current=2, state=state, at=45)
    assert released.desired_replicas == 1


def test_steady_noisy_load_changes_direction_at_most_once():
    autoscaling = spec(targetUtilization=0.8, safetyFactor=1)
    state, current, directions, last = AutoscalerState(), 1, 0, 0
    for step in range(80):
        rate = 5.5 * (1 + 0.15 * math.sin(step * 1.7))  # +-15 % noise around a plateau
        decision, state = run(autoscaling, signals(rate=rate, slow=5.5), current=current, state=state, at=15 * step)
        move = (decision.desired_replicas > current) - (decision.desired_replicas < current)
        if move and move != last:
            directions += 1
            last = move
        current = decision.desired_replicas
    assert directions <= 2  # the first scale-up, and at most one change after it


def test_unschedulable_pods_cap_the_recommendation_with_the_schedulers_reason():
    why = "0/6 nodes are available: 6 Insufficient nvidia.com/gpu."
    decision, _ = run(spec(), signals(rate=20.0), current=5, ready=3, starting=2,
                      capacity=Capacity(unschedulable=2, message=why))
    assert decision.desired_replicas == 4 and decision.reason is Reason.capacity_capped
    assert why in decision.message and decision.capacity == {
        "unschedulable": 2, "scheduled": 3, "cap": 4, "wanted": 9, "reason": why}
    assert decision.to_dict()["capacity"]["cap"] == 4


def test_the_capacity_cap_never_goes_below_min_replicas():
    autoscaling = AutoscalingSpec.model_validate({"minReplicas": 3, "maxReplicas": 10,
                                                  "behavior": {"scaleUpStabilizationSeconds": 0}})
    sample = MetricSample(autoscaling.metrics[0], "q", SampleStatus.ok, value=40.0, age_seconds=1.0)
    inputs = PolicyInput(spec=autoscaling, now=T0, current_replicas=3, ready_replicas=1, starting_replicas=2,
                         samples=(sample,), capacity=Capacity(unschedulable=2, message="Insufficient nvidia.com/gpu"))
    decision, _ = decide(inputs, AutoscalerState())
    assert decision.desired_replicas == 3 and decision.reason is Reason.capacity_capped
    assert decision.capacity["cap"] == 3 and "minReplicas 3" in decision.message


def test_scale_down_works_while_pods_are_pending():
    decision, _ = run(spec(), signals(rate=2.0), current=5, ready=3, starting=2,
                      capacity=Capacity(unschedulable=2, message="Insufficient nvidia.com/gpu"))
    assert decision.desired_replicas == 1 and decision.reason is Reason.scaled_down


def test_the_capacity_cap_applies_to_ratio_mode_too():
    autoscaling = AutoscalingSpec.model_validate({"maxReplicas": 10, "behavior": {"scaleUpStabilizationSeconds": 0}})
    sample = MetricSample(autoscaling.metrics[0], "q", SampleStatus.ok, value=40.0, age_seconds=1.0)
    inputs = PolicyInput(spec=autoscaling, now=T0, current_replicas=2, ready_replicas=1, starting_replicas=1,
                         samples=(sample,), capacity=Capacity(unschedulable=1, message="Insufficient nvidia.com/gpu"))
    decision, _ = decide(inputs, AutoscalerState())
    assert decision.desired_replicas == 2 and decision.reason is Reason.capacity_capped


def test_learned_cold_start_is_a_high_percentile():
    assert learned_cold_start([]) is None
    assert learned_cold_start([100.0]) == 100.0
    assert learned_cold_start([float(s) for s in range(10, 110, 10)]) == 90.0


@pytest.mark.parametrize("demand, field", [
    ({"fastWindowSeconds": 0}, "fastWindowSeconds"),
    ({"coldStartSecondsHint": 0}, "coldStartSecondsHint"),
    ({"serviceSecondsHint": -1}, "serviceSecondsHint"),
    ({"targetUtilization": 1.5}, "targetUtilization"),
    ({"fastWindowSeconds": 120, "slowWindowSeconds": 60}, "slowWindowSeconds"),
    ({"arrivalsQuery": " "}, "arrivalsQuery"),
])
def test_bad_demand_settings_are_refused_naming_the_field(demand, field):
    with pytest.raises(ValidationError) as error:
        AutoscalingSpec.model_validate({"mode": "demand", "maxReplicas": 3, "demand": demand})
    assert field in str(error.value)


def test_an_unknown_mode_is_refused_with_the_accepted_values():
    with pytest.raises(ValidationError) as error:
        AutoscalingSpec.model_validate({"mode": "predictive", "maxReplicas": 3})
    assert "mode" in str(error.value) and "'ratio' or 'demand'" in str(error.value)


def test_slots_are_max_num_seqs_capped_and_lowered_by_kv_use():
    from llmops.autoscale.demand import DEFAULT_SLOTS_CAP, slots_signal
    assert slots_signal(8, Signal(4.0), Signal(0.1), ready=1) == Signal(8.0, 0.0, "max-num-seqs")
    assert slots_signal(256, Signal(4.0), Signal(0.1), ready=1).value == DEFAULT_SLOTS_CAP
    assert slots_signal(None, Signal(), Signal(), ready=0).source == "default cap"
    by_kv = slots_signal(256, Signal(40.0, 2.0), Signal(0.8, 3.0), ready=2)  # 20 running per replica at 80 %
    assert (by_kv.value, by_kv.source, by_kv.age_seconds) == (25.0, "kv-cache", 3.0)


def test_a_saturated_replicas_service_time_is_not_used_for_sizing():
    autoscaling = spec()
    calm, state = run(autoscaling, signals(rate=2.0, queue=0, service_seconds=Signal(4.0, 1.0, "q")), current=1)
    assert term(calm, "steady").inputs["serviceSeconds"] == 4.0 and state.unloaded_service_seconds == 4.0
    # Queueing inflated the mean to 30 s: sizing keeps the 4 s measured without a queue.
    busy, state = run(autoscaling, signals(rate=6.0, queue=50, service_seconds=Signal(30.0, 1.0, "q")),
                      current=2, state=state, at=15)
    steady = term(busy, "steady")
    assert (steady.inputs["serviceSeconds"], steady.inputs["serviceSource"]) == (4.0, "last unsaturated measurement")
    assert steady.replicas == 2  # 6 req/s x 4 s = 24 slots / 16
    assert AutoscalerState.from_status(state.to_status()).unloaded_service_seconds == 4.0
