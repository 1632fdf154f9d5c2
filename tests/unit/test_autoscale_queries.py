"""PromQL building, response parsing, metric-name choice and spec validation messages."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from llmops.api.autoscaling import AutoscalingSpec, MetricTarget
from llmops.autoscale.detect import INTER_TOKEN_LATENCY_NAMES, KV_CACHE_NAMES, NameDetection, choose, choose_names
from llmops.autoscale.evaluate import condition_for
from llmops.autoscale.policy import Decision, Reason
from llmops.autoscale.prometheus import OutcomeKind, parse_response
from llmops.autoscale.queries import MetricNames, activity_query, detection_query, metric_queries, selector

SEL = 'namespace="team-a",llmops_deployment="llama"'


def q(**metric):
    return metric_queries(MetricTarget.model_validate(metric), "team-a", "llama")


def test_queries_per_metric_type():
    assert q(type="waitingRequests", target=2).value == f"sum(vllm:num_requests_waiting{{{SEL}}})"
    assert q(type="runningRequests", target=8).value == f"sum(vllm:num_requests_running{{{SEL}}})"
    assert q(type="kvCacheUtilization", target=0.8).value == (
        f"avg(avg by (namespace, pod) (vllm:kv_cache_usage_perc{{{SEL}}}))"
    )
    assert q(type="timeToFirstToken", target=1, percentile=0.95).value == (
        f"histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{{SEL}}}[1m])))"
    )
    assert q(type="generationTokensPerSecond", target=500).value == (
        f"sum(rate(vllm:generation_tokens_total{{{SEL}}}[1m]))"
    )


def test_age_queries_use_the_underlying_series():
    assert q(type="waitingRequests", target=2).age == (
        f"time() - max(timestamp(vllm:num_requests_waiting{{{SEL}}}))"
    )
    assert "vllm:time_to_first_token_seconds_count{" in q(type="timeToFirstToken", target=1).age
    assert q(type="prometheus", target=1, query="sum(x)").age is None


def test_custom_query_substitutes_namespace_and_name_but_keeps_braces():
    got = q(type="prometheus", target=3, query='sum(gw_pending{ns="{namespace}",route="{name}"})').value
    assert got == 'sum(gw_pending{ns="team-a",route="llama"})'


def test_kv_cache_query_uses_detected_name():
    metric = MetricTarget(type="kvCacheUtilization", target=0.8)
    got = metric_queries(metric, "ns", "d", names=MetricNames(kv_cache="vllm:gpu_cache_usage_perc")).value
    assert "vllm:gpu_cache_usage_perc{" in got


def test_selector_escapes_quotes():
    assert selector('a"b', "c\\d") == 'namespace="a\\"b",llmops_deployment="c\\\\d"'


def test_detection_and_activity_queries():
    assert detection_query(KV_CACHE_NAMES[:2], "team-a", "llama") == (
        'count by (__name__) ({__name__=~"vllm:kv_cache_usage_perc|vllm:gpu_cache_usage_perc",' + SEL + "})"
    )
    activity = activity_query("team-a", "llama").value
    assert "vllm:num_requests_running" in activity and "vllm:generation_tokens_total" in activity


def test_choose_prefers_newest_name_and_reports_absence():
    both = choose(KV_CACHE_NAMES, {"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"})
    assert both.chosen == "vllm:kv_cache_usage_perc" and both.detected
    assert "also vllm:gpu_cache_usage_perc" in both.message
    legacy = choose(KV_CACHE_NAMES, {"vllm:gpu_cache_usage_perc"})
    assert legacy.chosen == "vllm:gpu_cache_usage_perc"
    none = choose(INTER_TOKEN_LATENCY_NAMES, set())
    assert not none.detected and none.chosen == "vllm:inter_token_latency_seconds_count"
    assert "assuming" in none.message


def test_choose_names_handles_escaped_colons_and_round_trips_through_status():
    present = {"vllm_num_requests_waiting", "vllm_gpu_cache_usage_perc", "vllm_time_to_first_token_seconds_count",
               "vllm:num_requests_running"}
    found = choose_names(present)
    assert found.names == MetricNames(
        waiting="vllm_num_requests_waiting",
        running="vllm:num_requests_running",
        generation_tokens="vllm:generation_tokens_total",  # not seen: the default, marked undetected
        ttft="vllm_time_to_first_token_seconds",
        kv_cache="vllm_gpu_cache_usage_perc",
    )
    assert not found.families["generation_tokens"].detected
    status = found.to_status()
    assert status["kvCache"]["metric"] == "vllm_gpu_cache_usage_perc"
    assert NameDetection.from_status(status).names == found.names
    assert NameDetection.from_status({"kvCache": {"metric": "something-else"}}) is None
    ttft = metric_queries(MetricTarget(type="timeToFirstToken", target=1), "n", "d", names=found.names)
    assert "vllm_time_to_first_token_seconds_bucket{" in ttft.value


def test_parse_vector_scalar_empty_and_errors():
    vec = parse_response("q", 200, {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": "p1"}, "value": [1700000000.5, "3.25"]}]}})
    assert vec.kind is OutcomeKind.ok and vec.scalar() == 3.25 and vec.samples[0].labels == {"pod": "p1"}
    nan = parse_response("q", 200, {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1, "NaN"]}]}})
    assert math.isnan(nan.scalar())
    scalar = parse_response("q", 200, {"status": "success", "data": {"resultType": "scalar", "result": [1, "7"]}})
    assert scalar.scalar() == 7
    empty = parse_response("q", 200, {"status": "success", "data": {"resultType": "vector", "result": []}})
    assert empty.kind is OutcomeKind.empty and empty.scalar() is None
    bad = parse_response("q", 400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
    assert bad.kind is OutcomeKind.query_error and "bad_data: parse error" == bad.message
    down = parse_response("q", 503, {"status": "error", "errorType": "unavailable", "error": "starting"})
    assert down.kind is OutcomeKind.unreachable
    matrix = parse_response("q", 200, {"status": "success", "data": {"resultType": "matrix", "result": []}})
    assert matrix.kind is OutcomeKind.query_error and "sum(" in matrix.message


def test_condition_false_for_missing_metrics_with_camel_case_reason():
    decision = Decision(at=0, current_replicas=2, desired_replicas=2, reason=Reason.metrics_stale, message="m")
    assert condition_for(decision) == {"type": "Autoscaling", "status": "False", "reason": "MetricsStale",
                                       "message": "m"}
    held = Decision(at=0, current_replicas=2, desired_replicas=2, reason=Reason.held_stabilization, message="")
    assert condition_for(held)["status"] == "True"
    assert condition_for(held)["reason"] == "HeldStabilization"


@pytest.mark.parametrize(
    "wire, words",
    [
        ({"maxReplicas": 2, "minReplicas": 3}, ["minReplicas", "maxReplicas"]),
        ({"maxReplicas": 2, "metrics": []}, ["metrics", "waitingRequests"]),
        ({"maxReplicas": 2, "metrics": [{"type": "prometheus", "target": 1}]}, ["query"]),
        ({"maxReplicas": 2, "metrics": [{"type": "kvCacheUtilization", "target": 80}]}, ["kvCacheUtilization", "0.8"]),
        ({"maxReplicas": 2, "behavior": {"panicThreshold": 1.05}}, ["panicThreshold", "tolerance"]),
        ({"maxReplicas": 2, "activationQuery": " "}, ["activationQuery"]),
    ],
)
def test_invalid_specs_name_the_field_and_the_fix(wire, words):
    with pytest.raises(ValidationError) as info:
        AutoscalingSpec.model_validate(wire)
    text = str(info.value)
    for word in words:
        assert word in text


def test_evaluation_due_follows_the_interval():
    from llmops.autoscale.evaluate import evaluation_due

    autoscaling = AutoscalingSpec.model_validate({"maxReplicas": 3, "behavior": {"evaluationIntervalSeconds": 15}})
    assert evaluation_due(autoscaling, None, 1000.0)
    assert not evaluation_due(autoscaling, {"lastEvaluatedAt": 990.0}, 1000.0)
    assert evaluation_due(autoscaling, {"lastEvaluatedAt": 985.0}, 1000.0)
