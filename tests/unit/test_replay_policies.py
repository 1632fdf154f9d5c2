"""The replay's policy adapters: what demand mode is fed, KEDA's polling, the oracle."""

import pytest

from replay.kpa import ConcurrencyWindows
from replay.metrics import PodSample, Prometheus
from replay.policies import FleetView, Keda, Oracle, Setup, demand_signals, llmops_spec
from replay.traces import Trace

SETUP = Setup(min_replicas=1, max_replicas=16, kpa_target=40, capacity_rps=5.0, max_num_seqs=256,
              cold_start_seconds=120, cold_start_jitter=0.1)


def view(prometheus, now, current=2, ready=2, starting_ages=(), start_durations=()):
    return FleetView(now=now, current=current, ready=ready, starting_ages=starting_ages, pods=(),
                     prometheus=prometheus, concurrency=ConcurrencyWindows(), start_durations=start_durations)


def growing_fleet():
    """Two pods finishing 5 req/s each while each queue grows by 1 request/s, each request
    having taken 8 s from scheduled to finished."""
    prometheus = Prometheus(interval=15, lag=5)
    for t in range(0, 601, 15):
        done = 5 * t
        prometheus.record(t, {pod: PodSample(done, 8.0 * done, done, 40, t, 0.1) for pod in (1, 2)})
    return prometheus


def test_demand_is_fed_arrivals_from_finishes_plus_the_growth_in_the_system():
    signals = demand_signals(view(growing_fleet(), 605, start_durations=(100, 130, 110)), SETUP,
                             llmops_spec(SETUP, "demand"))
    assert signals.arrival_fast.value == pytest.approx(12.0)   # 2 x (5 finished + 1 queued) per s
    assert signals.arrival_slow.value == pytest.approx(12.0)
    assert signals.arrival_fast.age_seconds == 5
    assert signals.queue.value == 1200 and signals.running.value == 80
    assert signals.service_seconds.value == pytest.approx(8.0)
    assert signals.slots_per_replica.value == 48               # the default cap; KV usage 0.1 is not the limit
    assert signals.cold_start_seconds.value == 130             # p90 of the three starts


def test_demand_without_enough_scrapes_has_no_arrival_rate():
    prometheus = Prometheus(interval=15, lag=5)
    prometheus.record(15, {1: PodSample(0, 0.0, 0, 0, 0, 0.0)})
    signals = demand_signals(view(prometheus, 20), SETUP, llmops_spec(SETUP, "demand"))
    assert signals.arrival_fast.value is None and signals.cold_start_seconds.value is None


def test_keda_reads_prometheus_only_every_polling_interval():
    prometheus = Prometheus(interval=15, lag=0)
    prometheus.record(0, {1: PodSample(0, 0.0, 0, 0, 30, 0.0)})
    keda = Keda(SETUP)
    assert keda.decide(view(prometheus, 0, current=1, ready=1)) == 5   # ceil(30 / 5), +4 pods at most
    prometheus.record(15, {1: PodSample(0, 0.0, 0, 0, 0, 0.0)})
    assert keda.polled_value == 30
    keda.decide(view(prometheus, 15, current=5, ready=1))
    assert keda.polled_value == 30                                    # cached: polled 15 s ago
    keda.decide(view(prometheus, 30, current=5, ready=1))
    assert keda.polled_value == 0


def test_the_oracle_sizes_for_the_peak_one_cold_start_ahead():
    trace = Trace("t", ((0, 4.0), (200, 23.0), (1000, 1.0)), 2000.0)
    oracle = Oracle(SETUP, trace)
    assert oracle.decide(view(None, 0)) == 1          # 200 s is beyond 120 x 1.1 + 15
    assert oracle.decide(view(None, 60)) == 5         # ceil(23 / 5)
    assert oracle.decide(view(None, 1000)) == 1
