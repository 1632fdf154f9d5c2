"""The KPA port: window averages and the panic mode of autoscaler.go."""

from replay.kpa import ConcurrencyWindows, Kpa


def test_windows_average_the_per_second_totals():
    windows = ConcurrencyWindows()
    for t in range(1, 121):
        windows.record(float(t), 10.0 if t <= 114 else 40.0)
    assert windows.average(120.0, 6.0) == 40.0
    assert windows.average(120.0, 60.0) == (54 * 10 + 6 * 40) / 60
    assert len(windows.samples) == 60  # older samples are dropped


def test_stable_mode_sizes_by_the_stable_average():
    kpa = Kpa(target=10)
    assert kpa.scale(0, ready_pods=2, stable=25, panic=25) == 3


def test_panic_takes_the_panic_window_and_never_scales_down_until_60s_calm():
    kpa = Kpa(target=10)
    assert kpa.scale(0, ready_pods=2, stable=25, panic=50) == 5   # 5 / 2 pods >= 200 %
    assert kpa.panic_time == 0
    assert kpa.scale(30, ready_pods=2, stable=25, panic=10) == 5  # calm, but still panicking
    assert kpa.scale(61, ready_pods=5, stable=25, panic=10) == 3  # 60 s after the last panic
    assert kpa.panic_time is None and kpa.max_panic_pods == 0


def test_scale_down_is_at_most_half_the_ready_pods():
    kpa = Kpa(target=10)
    assert kpa.scale(0, ready_pods=10, stable=1, panic=1) == 5
