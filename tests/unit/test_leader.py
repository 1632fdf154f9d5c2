"""Leader election decisions (pure) and one candidate's steps against an in-memory Lease."""

from __future__ import annotations

import threading

from llmops.leader import LeaderElector, LeaseRecord, decide


def record(holder, renew="t1", duration=10.0):
    return LeaseRecord(holder, renew, duration, 0, "1")


def test_decide():
    assert decide(None, 0, 0, "a") == "create"
    assert decide(record("a"), 0, 100, "a") == "renew"
    assert decide(record("b"), 0, 5, "a") == "wait"      # b renewed 5 s ago (as seen here)
    assert decide(record("b"), 0, 10.5, "a") == "acquire"  # not renewed for longer than the lease
    assert decide(record(None), 0, 0, "a") == "acquire"    # released


class Store:
    """A Lease with the API server's optimistic concurrency: writes must name the last version."""

    def __init__(self):
        self.record, self.version, self.lock = None, 0, threading.Lock()

    def read_lease(self, namespace, name):
        return self.record

    def write_lease(self, namespace, name, holder, duration, transitions, resource_version):
        with self.lock:
            current = self.record.resource_version if self.record else None
            if resource_version != current:
                return False
            self.version += 1
            self.record = LeaseRecord(holder or None, f"r{self.version}", duration, transitions, str(self.version))
            return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_one_leader_a_standby_takes_over_only_after_the_lease_ran_out():
    store, clock = Store(), Clock()
    a = LeaderElector(store, "ns", "l", "a", clock=clock)
    b = LeaderElector(store, "ns", "l", "b", clock=clock)
    assert a.try_once() and not b.try_once()
    clock.now = 5
    assert a.try_once()                  # renewed
    clock.now = 9
    assert not b.try_once()              # b first sees a's renewal now: its own clock starts at 9
    clock.now = 16                       # a died after t=5, but b measures from when it saw the change
    assert not b.try_once()
    clock.now = 17.5
    assert b.try_once() and b.holder == "b"
    assert store.record.transitions == 1
    assert not a.try_once()              # the old leader finds it lost the lease


def test_a_released_lease_is_taken_at_once():
    store, clock = Store(), Clock()
    a, b = LeaderElector(store, "ns", "l", "a", clock=clock), LeaderElector(store, "ns", "l", "b", clock=clock)
    assert a.try_once()
    a.release()
    assert b.try_once()


def test_a_leader_that_cannot_renew_gives_up_before_the_lease_expires():
    store, clock = Store(), Clock()
    a = LeaderElector(store, "ns", "l", "a", clock=clock, renew_seconds=0.01, renew_deadline=5)
    assert a.try_once()

    def broken(*args):
        raise ConnectionError("API server unreachable")

    store.read_lease = broken
    lost, stop = threading.Event(), threading.Event()
    a.keep_renewing(lost.set, stop)
    clock.now = 5.5
    assert lost.wait(5), "the leader kept acting without a lease"
    stop.set()
