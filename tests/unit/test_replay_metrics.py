"""What the policies see through the modeled Prometheus: scrape lag and per-series rates."""

from replay.metrics import PodSample, Prometheus, estimate, percentile


def sample(finished=0, running=0, waiting=0):
    return PodSample(finished, 0.0, finished, running, waiting, 0.0)


def test_queries_see_only_scrapes_older_than_the_lag():
    prometheus = Prometheus(interval=15, lag=5)
    prometheus.record(15, {1: sample(waiting=3)})
    prometheus.record(30, {1: sample(waiting=9)})
    assert prometheus.gauge_sum(33, "waiting") == (3.0, 18.0)
    assert prometheus.gauge_sum(35, "waiting") == (9.0, 5.0)
    assert prometheus.gauge_sum(10, "waiting") == (None, None)


def test_rates_are_per_series_and_summed():
    prometheus = Prometheus(interval=15, lag=0)
    prometheus.record(0, {1: sample(0)})
    prometheus.record(15, {1: sample(30), 2: sample(100)})
    prometheus.record(30, {1: sample(60), 2: sample(130)})
    rate, age = prometheus.rate_sum(30, "finished", 60)
    assert rate == 2.0 + 2.0 and age == 0  # the new pod's first sample is not an increase
    assert prometheus.rate_sum(30, "finished", 10) == (None, 0)  # one sample per series in the window


def test_percentile_and_standard_error():
    assert percentile([5, 1, 4, 2, 3], 0.9) == 5
    assert percentile(list(range(1, 101)), 0.9) == 90
    result = estimate([1.0, 2.0, 3.0])
    assert result.mean == 2.0 and abs(result.se - 1 / 3**0.5) < 1e-12
