"""Report arithmetic and endpoint selection (pure)."""

import json
import math

import pytest

from llmops_load.report import Distribution, RequestResult, build_report, percentile
from llmops_load.targets import Targets, TargetError, parse_service_ref, ready_endpoint_urls


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def ok(start, ttft, latency, tokens, target="a", gaps=()):
    return RequestResult(target, start, start + latency, True, ttft=ttft, output_tokens=tokens,
                         prompt_tokens=10, chunk_gaps=list(gaps))


def test_report_figures():
    results = [ok(0.0, 0.1, 1.1, 11, gaps=[0.1] * 10), ok(0.5, 0.3, 2.3, 11, target="b"),
               RequestResult("a", 1.0, 1.0, False, "http_503"), RequestResult("a", 1.0, 6.0, False, "timeout")]
    report = build_report(results, duration_s=4.0)
    assert (report.requests_sent, report.requests_ok, report.requests_failed) == (4, 2, 2)
    assert report.errors == {"http_503": 1, "timeout": 1}
    assert report.throughput_rps == 0.5 and report.output_tokens_per_s == 5.5
    assert report.ttft.mean == pytest.approx(0.2) and report.ttft.max == 0.3
    assert report.tpot.p50 == pytest.approx(0.15)  # (1.0/10 + 2.0/10) / 2
    assert report.latency.count == 2 and report.itl.count == 10
    assert report.targets == {"a": 3, "b": 1}
    table = report.table()
    assert "TTFT" in table and "http_503 1" in table and "targets:" in table
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ttft"]["p99"] == pytest.approx(0.298) and "results" not in data
    assert len(report.to_dict(include_results=True)["results"]) == 4


def test_empty_distribution_serialises_as_null():
    report = build_report([], 1.0)
    assert report.to_dict()["ttft"]["mean"] is None
    assert Distribution.of([]).count == 0


ENDPOINTS = {
    "subsets": [
        {"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}], "notReadyAddresses": [{"ip": "10.244.0.7"}],
         "ports": [{"name": "http", "port": 8000}, {"name": "metrics", "port": 9090}]},
        {"addresses": [{"ip": "10.244.1.9"}], "ports": [{"port": 8080}]},
    ]
}


def test_ready_endpoint_urls_skip_not_ready_and_pick_the_http_port():
    assert ready_endpoint_urls(ENDPOINTS) == ["http://10.244.0.5:8000", "http://10.244.0.6:8000",
                                              "http://10.244.1.9:8080"]
    assert ready_endpoint_urls(ENDPOINTS, "metrics") == ["http://10.244.0.5:9090", "http://10.244.0.6:9090"]
    assert ready_endpoint_urls(ENDPOINTS, 8080) == ["http://10.244.1.9:8080"]
    assert ready_endpoint_urls({"subsets": None}) == []
    assert ready_endpoint_urls({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]}) == [
        "http://[fd00::1]:80"]


def test_round_robin_and_service_refs():
    targets = Targets(["a", "b"])
    assert [targets.next() for _ in range(5)] == ["a", "b", "a", "b", "a"]
    assert Targets([]).next() is None
    assert parse_service_ref("default/llama") == ("default", "llama")
    with pytest.raises(TargetError, match="NAMESPACE/NAME"):
        parse_service_ref("llama")


def test_prompts_are_unique_per_request_but_keep_their_length():
    from llmops_load.client import RequestSpec, make_prompt, unique_prompt

    prompt = make_prompt(64)
    assert len(prompt) == 256
    first, second = unique_prompt(prompt, 1), unique_prompt(prompt, 2)
    assert first != second and len(first) == len(second) == 256
    assert unique_prompt("tiny", 5) == "tiny"
    chat = RequestSpec("chat", "m", prompt, 64, 8).body(3)
    assert chat["messages"][0]["content"].startswith("00000003 ") and chat["stream_options"]["include_usage"]
    completion = RequestSpec("completions", "m", prompt, 64, 8, stream=False).body(4)
    assert completion["prompt"].startswith("00000004 ") and "stream_options" not in completion


def test_a_shared_system_prompt_leads_every_request():
    from llmops_load.client import RequestSpec, make_prompt, make_system_prompt

    system = make_system_prompt(1000)
    assert len(system) == 4000
    spec = RequestSpec("chat", "m", make_prompt(64), 1064, 8, shared_prefix=system)
    first, second = spec.body(1)["messages"], spec.body(2)["messages"]
    assert first[0] == second[0] == {"role": "system", "content": system}
    assert first[1] != second[1]
    completion = RequestSpec("completions", "m", make_prompt(64), 1064, 8, shared_prefix=system).body(1)
    assert completion["prompt"].startswith(system)


def test_sessions_resend_their_history_turn_by_turn():
    from llmops_load.client import RequestSpec, make_prompt

    spec = RequestSpec("chat", "m", make_prompt(16), 16, 4, sessions=2, turns=3)
    turns_of_session_0 = [spec.messages(n) for n in (0, 2, 4)]
    assert [len(m) for m in turns_of_session_0] == [1, 3, 5]  # user, then (user, assistant) per earlier turn
    assert turns_of_session_0[2][:3] == turns_of_session_0[1]  # the next turn extends the previous prompt
    assert spec.messages(1)[0] != spec.messages(0)[0]  # another session
    assert len(spec.messages(6)) == 1 and spec.messages(6) != spec.messages(0)  # a fresh conversation


def test_turns_need_sessions():
    from llmops_load.generator import LoadConfig, plan_scenario
    from llmops_load.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="--turns must be >= 1 and needs --sessions N"):
        plan_scenario(LoadConfig(url="http://x", rate=1, turns=3))


def test_runs_with_different_seeds_send_different_prompts():
    from llmops_load.client import RequestSpec, make_prompt

    first, second = (RequestSpec("chat", "m", make_prompt(64), 64, 8, seed=s).body(1) for s in (0, 1))
    assert first["messages"] != second["messages"]
    assert first["messages"][0]["content"].startswith("00000001 ")  # seed 0 keeps the plain numbering
