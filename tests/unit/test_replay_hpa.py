"""The HPA port against cases computed by hand from replica_calculator.go and horizontal.go."""

import pytest

from replay.hpa import Behavior, Pod, external_per_pod_replicas, plain_metric_replicas


def ready(*names):
    return [Pod(n) for n in names]


def test_all_pods_reporting_scale_by_the_ratio():
    # mean 4 vs target 2 -> ratio 2 -> ceil(2 x 3 ready)
    assert plain_metric_replicas(3, 2, ready("a", "b", "c"), {"a": 4, "b": 4, "c": 4}) == 6


def test_within_tolerance_keeps_current():
    # mean 2.1 / 2 = 1.05 -> |1 - 1.05| <= 0.1
    assert plain_metric_replicas(3, 2, ready("a", "b", "c"), {"a": 2, "b": 2, "c": 2.3}) == 3


def test_missing_pods_count_as_zero_on_scale_up():
    # ready mean 6 -> ratio 3 > 1; 2 missing as 0: mean 12/4 = 3 -> ratio 1.5 -> ceil(1.5 x 4)
    pods = ready("a", "b", "new1", "new2")
    assert plain_metric_replicas(4, 2, pods, {"a": 6, "b": 6}) == 6


def test_missing_pods_count_as_target_on_scale_down():
    # ready mean 0 -> ratio 0; 1 missing as 2: mean 2/3 -> ratio 1/3 -> ceil(1/3 x 3)
    assert plain_metric_replicas(3, 2, ready("a", "b", "new"), {"a": 0, "b": 0}) == 1


def test_tolerance_is_checked_again_after_the_recompute():
    # ready ratio 2.1; the missing pod as 0 gives 1.05: within tolerance -> current
    assert plain_metric_replicas(2, 2, ready("a", "new"), {"a": 4.2}) == 2


def test_a_recompute_that_flips_direction_keeps_current():
    # ready ratio 1.2 (> tolerance); the missing pod as 0 gives 0.6 < 1 -> current
    assert plain_metric_replicas(2, 2, ready("a", "new"), {"a": 2.4}) == 2


def test_pending_pods_are_ignored_except_as_zero_on_scale_up():
    pods = [Pod("a"), Pod("p", phase="Pending")]
    # ratio 3 -> the pending pod as 0 -> ratio 1.5 over 2 pods -> 3
    assert plain_metric_replicas(2, 2, pods, {"a": 6}) == 3
    # scale-down: the pending pod is simply left out: ratio 0 over 1 ready pod -> 0
    assert plain_metric_replicas(2, 2, pods, {"a": 0}) == 0


def test_pods_being_deleted_do_not_count_even_with_metrics():
    pods = [Pod("a"), Pod("gone", deleting=True)]
    assert plain_metric_replicas(1, 2, pods, {"a": 2, "gone": 100}) == 1


def test_no_metrics_is_an_error():
    assert plain_metric_replicas(2, 2, ready("new1", "new2"), {}) is None
    assert plain_metric_replicas(2, 2, [], {}) is None


def test_external_average_value_uses_status_replicas():
    assert external_per_pod_replicas(4, 5, 30) == 6   # 30 / (5 x 4) = 1.5 -> ceil(30 / 5)
    assert external_per_pod_replicas(4, 5, 21) == 4   # 1.05: within tolerance
    assert external_per_pod_replicas(4, 5, 0) == 0


def test_default_scale_up_is_max_of_four_pods_and_double_per_15s():
    behavior = Behavior(min_replicas=1, max_replicas=16)
    assert behavior.normalize(0, 1, 10) == 5          # max(1 + 4, 2 x 1)
    behavior.record_scale(0, 1, 5)
    assert behavior.normalize(10, 5, 16) == 5         # +4 already within the last 15 s
    assert behavior.normalize(15, 5, 16) == 10        # the event at 0 is out of (0, 15]: max(9, 10)


def test_default_scale_down_holds_the_highest_recommendation_for_300s():
    behavior = Behavior(min_replicas=1, max_replicas=16)
    assert behavior.normalize(0, 8, 8) == 8
    for t in range(15, 300, 15):
        assert behavior.normalize(t, 8, 2) == 8
    assert behavior.normalize(315, 8, 2) == 2         # 100 % per 15 s: straight down


def test_first_decision_does_not_scale_down_at_once():
    # maybeInitScaleDownStabilizationWindow: the current count seeds the window
    behavior = Behavior(min_replicas=1, max_replicas=16)
    assert behavior.normalize(0, 5, 1) == 5


@pytest.mark.parametrize("desired,expected", [(0, 1), (40, 16)])
def test_bounds(desired, expected):
    behavior = Behavior(min_replicas=1, max_replicas=16, recommendations=[[desired, -1000.0]])
    current = 2 if desired == 0 else 16
    assert behavior.normalize(0, current, desired) == expected


def test_a_pod_being_deleted_is_not_counted_as_zero_on_scale_up():
    # a: 6, new: missing -> 0: ratio 1.5 over 2 pods -> 3. Counting the deleted pod as 0
    # too would give ratio 1.0 (within tolerance) and keep 2.
    pods = [Pod("a"), Pod("new"), Pod("gone", deleting=True)]
    assert plain_metric_replicas(2, 2, pods, {"a": 6, "gone": 6}) == 3
