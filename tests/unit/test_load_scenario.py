"""Scenario parsing and arrival schedules (pure, seeded)."""

import random

import pytest

from llmops_load import scenario as sc
from llmops_load.generator import LoadConfig, plan_scenario


def test_durations():
    assert sc.parse_duration("30s") == 30 and sc.parse_duration("2m") == 120
    assert sc.parse_duration("500ms") == 0.5 and sc.parse_duration(7) == 7.0
    for bad in ("soon", "0s", -1):
        with pytest.raises(sc.ScenarioError):
            sc.parse_duration(bad)


def test_parse_scenario_file_shape():
    s = sc.parse_scenario({
        "api": "completions", "prompt_tokens": 256, "max_tokens": 32, "arrival": "constant",
        "phases": [{"duration": "30s", "rate": 5}, {"duration": "1m", "ramp": {"from": 5, "to": 40}},
                   {"duration": 10, "concurrency": 8}],
    })
    assert [p.describe() for p in s.phases] == ["30s at 5 req/s", "60s ramp 5->40 req/s", "10s x 8 users"]
    assert s.duration == 100 and s.api == "completions" and s.arrival == "constant"


@pytest.mark.parametrize("data,fragment", [
    ({"phases": []}, "non-empty"),
    ({"phases": [{"rate": 5}]}, "duration is required"),
    ({"phases": [{"duration": "1s", "rate": 5, "concurrency": 2}]}, "exactly one"),
    ({"phases": [{"duration": "1s", "ramp": {"from": 1}}]}, "ramp"),
    ({"phases": [{"duration": "1s", "concurrency": 0}]}, "positive integer"),
    ({"phases": [{"duration": "1s", "rate": 1, "burst": 3}]}, "burst"),
    ({"phases": [{"duration": "1s", "rate": 1}], "arrival": "bursty"}, "arrival"),
    ({"phasess": []}, "phasess"),
])
def test_bad_scenarios_name_the_field(data, fragment):
    with pytest.raises(sc.ScenarioError, match=fragment):
        sc.parse_scenario(data)


def test_constant_arrivals_are_evenly_spaced():
    times = sc.arrival_times(sc.Phase(2.0, 5, 5), "constant", random.Random(0))
    assert times == pytest.approx([i * 0.2 for i in range(10)])


def test_poisson_arrivals_average_the_rate_and_are_seeded():
    phase = sc.Phase(1000.0, 4, 4)
    times = sc.arrival_times(phase, "poisson", random.Random(1))
    assert len(times) == pytest.approx(4000, rel=0.05)
    assert times == sorted(times) and times[-1] < 1000
    assert times == sc.arrival_times(phase, "poisson", random.Random(1))
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert sum(g > 0.5 for g in gaps) / len(gaps) == pytest.approx(0.135, abs=0.03)  # P(Exp(4) > 0.5)


def test_ramp_has_the_expected_count_and_rising_density():
    phase = sc.Phase(10.0, 0, 20)
    times = sc.arrival_times(phase, "constant", random.Random(0))
    assert len(times) == pytest.approx(sc.expected_requests(phase), abs=1)  # 100
    first_half = sum(t < 5 for t in times)
    assert first_half == pytest.approx(25, abs=1)  # a quarter of the area under a rising line
    down = sc.arrival_times(sc.Phase(10.0, 20, 0), "constant", random.Random(0))
    assert sum(t < 5 for t in down) == pytest.approx(75, abs=1)


def test_limit_and_closed_loop():
    assert len(sc.arrival_times(sc.Phase(10.0, 100, 100), "constant", random.Random(0), limit=7)) == 7
    assert sc.arrival_times(sc.Phase(10.0, concurrency=3), "poisson", random.Random(0)) == []
    assert sc.arrival_times(sc.Phase(10.0, 0, 0), "poisson", random.Random(0)) == []


def test_plan_from_flags():
    assert plan_scenario(LoadConfig(url="x", rate=3, duration=10)).phases == (sc.Phase(10, 3, 3),)
    assert plan_scenario(LoadConfig(url="x", concurrency=4, duration=5)).phases[0].concurrency == 4
    with pytest.raises(sc.ScenarioError, match="choose one mode"):
        plan_scenario(LoadConfig(url="x"))
    with pytest.raises(sc.ScenarioError, match="choose one mode"):
        plan_scenario(LoadConfig(url="x", rate=1, concurrency=1))
