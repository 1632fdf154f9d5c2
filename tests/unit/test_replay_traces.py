"""Traces: CSV input and its errors, arrivals around the rate, seeded built-ins."""

import statistics

import pytest

from replay import traces
from replay.traces import Trace, TraceError, parse_csv


def test_csv_is_piecewise_constant_and_its_last_rate_holds_the_tail():
    trace = parse_csv("t_seconds,rate_rps\n0,2\n600,12.5\n900,0\n", "x.csv")
    assert trace.segments == ((0.0, 2.0), (600.0, 12.5), (900.0, 0.0))
    assert trace.duration == 900 + traces.CSV_TAIL_SECONDS
    assert trace.rate_at(599.9) == 2 and trace.rate_at(600) == 12.5
    assert trace.max_rate(100, 700) == 12.5 and trace.max_rate(650, 1000) == 12.5
    assert trace.name == "x"


@pytest.mark.parametrize(
    "text,row,hint",
    [
        ("0,2\n600,3\n", "row 1", "header"),
        ("t_seconds,rate_rps\n0,2\n600\n", "row 3", "2 columns"),
        ("t_seconds,rate_rps\n0,2\n600,fast\n", "row 3", "two numbers"),
        ("t_seconds,rate_rps\n10,2\n", "row 2", "t_seconds 0"),
        ("t_seconds,rate_rps\n0,2\n600,3\n600,4\n", "row 4", "sort the rows"),
        ("t_seconds,rate_rps\n0,-1\n", "row 2", "outside"),
        ("t_seconds,rate_rps\n0,nan\n", "row 2", "two numbers"),
        ("t_seconds,rate_rps\n", "only a header", "add rows"),
        ("", "empty", "header"),
    ],
)
def test_bad_csv_names_the_row_and_the_fix(text, row, hint):
    with pytest.raises(TraceError) as error:
        parse_csv(text, "bad.csv")
    message = str(error.value)
    assert row in message and hint in message and "\n" not in message


def test_the_command_line_refuses_a_bad_csv_with_one_line_and_exit_2(tmp_path, capsys):
    import bench_autoscale

    path = tmp_path / "bad.csv"
    path.write_text("t_seconds,rate_rps\n0,2\n60,x\n")
    assert bench_autoscale.main(["--trace", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 3" in err
    assert bench_autoscale.main(["--trace", str(tmp_path / "missing.csv")]) == 2


def test_poisson_arrivals_follow_the_rate():
    trace = Trace("t", ((0, 5.0), (1000, 20.0)), 2000.0)
    times = traces.arrival_times(trace, __import__("random").Random(1))
    early = sum(1 for t in times if t < 1000)
    assert 4700 < early < 5300 and 19000 < len(times) - early < 21000
    assert times == sorted(times)


def test_gamma_arrivals_are_burstier_than_poisson_at_the_same_mean():
    trace = Trace("t", ((0, 10.0),), 5000.0, arrival_cv=2.0)
    times = traces.arrival_times(trace, __import__("random").Random(2))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert 45_000 < len(times) < 55_000
    assert 1.7 < statistics.pstdev(gaps) / statistics.fmean(gaps) < 2.3


def test_built_in_traces_are_seeded_and_reproducible():
    for make in traces.BUILT_IN.values():
        first, again = make(3), make(3)
        assert first == again
        assert first.segments[0][0] == 0 and 0 < max(r for _, r in first.segments) <= 60
    assert traces.diurnal(1) != traces.diurnal(2)
    assert traces.workload(traces.big_step(0), 0) == traces.workload(traces.big_step(0), 0)


def test_json_for_a_csv_trace_is_keyed_by_policy_with_the_five_figures(tmp_path, capsys):
    import json

    import bench_autoscale

    path = tmp_path / "short.csv"
    path.write_text("t_seconds,rate_rps\n0,2\n60,8\n")
    assert bench_autoscale.main(["--trace", str(path), "--json", "--seeds", "2", "--no-plots"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert list(figures) == ["hpa", "kpa", "keda", "ratio", "demand", "oracle"]
    for entry in figures.values():
        assert set(entry) == {"replica_seconds", "slo_attainment", "scalings", "replica_seconds_se", "slo_se"}
        assert 0 <= entry["slo_attainment"] <= 1 and entry["replica_seconds"] >= 360
