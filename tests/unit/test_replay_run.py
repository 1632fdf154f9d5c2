"""The fleet replay's accounting: replica-seconds, cold starts, draining, the balancer."""

from dataclasses import dataclass

from replay.run import simulate
from replay.traces import Trace, workload


@dataclass
class Scripted:
    """A policy that asks for the replicas a script gives for each decision time."""

    script: dict
    interval: float = 15.0
    offset: float = 0.0
    seen: list = None

    def decide(self, view):
        self.seen = (self.seen or []) + [(view.now, view.current, view.ready, len(view.starting_ages))]
        return self.script.get(view.now, view.current)


TRACE = Trace("steady", ((0, 3.0),), 300.0)


def test_one_replica_serves_a_light_load_within_the_slo():
    result = simulate(Scripted({}), TRACE, workload(TRACE, 0), cold_start=60, seed=0)
    assert result.replica_seconds == 300
    assert result.slo_attainment > 0.99 and result.timeouts == 0 and result.scalings == 0
    assert 800 < result.requests < 1000


def test_an_added_replica_costs_from_creation_and_serves_after_its_cold_start():
    policy = Scripted({15.0: 2})
    result = simulate(policy, TRACE, workload(TRACE, 0), cold_start=60, seed=0)
    assert result.replica_seconds == 300 + (300 - 15)
    starting = [(t, ready, starting) for t, _, ready, starting in policy.seen if starting]
    assert starting[0] == (30.0, 1, 1)
    assert all(t < 15 + 66 + 15 for t, _, _ in starting)  # Ready within 60 s x 1.1
    assert result.scalings == 1 and result.direction_changes == 0


def test_a_removed_replica_drains_then_stops_costing():
    policy = Scripted({15.0: 2, 150.0: 1})
    result = simulate(policy, TRACE, workload(TRACE, 0), cold_start=60, seed=0)
    # the newest replica drains from t=150 for at most a request's lifetime (seconds)
    assert 300 + (150 - 15) <= result.replica_seconds <= 300 + (150 - 15) + 30
    assert result.direction_changes == 1 and result.slo_attainment > 0.99


def test_a_replica_removed_while_starting_goes_at_once():
    policy = Scripted({15.0: 3, 30.0: 1})
    result = simulate(policy, TRACE, workload(TRACE, 0), cold_start=60, seed=0)
    assert result.replica_seconds == 300 + 2 * (30 - 15)


def test_overload_without_scaling_times_requests_out():
    busy = Trace("busy", ((0, 15.0),), 300.0)
    result = simulate(Scripted({}), busy, workload(busy, 0), cold_start=60, seed=0)
    assert result.timeouts > 0.3 * result.requests and result.slo_attainment < 0.6
    assert result.p90_ttft == 60.0
