"""The activator's admission policy: hold, refuse with 429 beyond the queue, 503 after the hold
limit, Retry-After from the learned cold start, and when to (re-)wake."""

from __future__ import annotations

import pytest

from llmops.activator import policy


def test_a_ready_replica_means_forward_whatever_the_queue():
    assert policy.admit(held=500, queue_size=1, any_ready=True) == policy.Verdict(hold=True)


def test_requests_are_held_up_to_the_queue_size_then_refused_with_429():
    assert policy.admit(held=49, queue_size=50, any_ready=False).hold
    full = policy.admit(held=50, queue_size=50, any_ready=False, cold_start=30.0, waking_for=12.0)
    assert (full.hold, full.status, full.reason, full.retry_after) == (False, 429, "queue-full", 18)
    assert "spec.activator.queueSize" in full.message


def test_hold_timeout_is_a_503_naming_the_field():
    verdict = policy.hold_timeout(120, None, None)
    assert (verdict.status, verdict.reason, verdict.retry_after) == (503, "hold-timeout", policy.RETRY_AFTER_UNKNOWN)
    assert "spec.activator.holdSeconds" in verdict.message


@pytest.mark.parametrize("cold_start, waking_for, expected", [
    (None, 3.0, policy.RETRY_AFTER_UNKNOWN),  # nothing learned yet
    (40.0, 10.0, 30),                         # the rest of the cold start
    (40.0, 39.5, 1),                          # nearly there: never 0
    (40.0, 100.0, 1),                         # overdue
    (900.0, 0.0, policy.RETRY_AFTER_MAX),     # a long cold start: come back in a minute, not in 15
    (12.2, None, 13),                         # not waking yet: the whole cold start, rounded up
])
def test_retry_after(cold_start, waking_for, expected):
    assert policy.retry_after(cold_start, waking_for) == expected


def test_cold_start_is_the_90th_percentile_of_learned_starts_and_ignores_junk():
    starts = [[f"p{i}", float(s)] for i, s in enumerate([10, 11, 12, 13, 14, 15, 16, 17, 18, 90])]
    assert policy.cold_start_seconds(starts) == 18.0
    assert policy.cold_start_seconds([["p", 5.0], "junk", ["q"], ["r", "x"], ["s", -1]]) == 5.0
    assert policy.cold_start_seconds(None) is None and policy.cold_start_seconds([]) is None


def test_wake_only_at_zero_and_at_most_every_ten_seconds():
    assert policy.should_wake(0, None, 100.0)
    assert not policy.should_wake(0, 95.0, 100.0)
    assert policy.should_wake(0, 90.0, 100.0)
    assert not policy.should_wake(1, None, 100.0)  # woken: a replica is on its way
