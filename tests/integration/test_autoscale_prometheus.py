"""The Prometheus client and evaluate_once against a real Prometheus scraping real targets.

Three fake "pods" on loopback: two for deployment `llama` (current KV-cache metric name),
one for `legacy` (old vllm:gpu_cache_usage_perc name), plus `gone` (a target stopped during
a test) and `frozen` (a sample with an old explicit timestamp). Static target labels stand in
for the namespace / pod / llmops_deployment labels the pod scrape config attaches.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from llmops.api.autoscaling import AutoscalingSpec
from llmops.autoscale.detect import KV_CACHE_NAMES, detect
from llmops.autoscale.evaluate import evaluate_once
from llmops.autoscale.pods import PodFacts, ReplicaCounts
from llmops.autoscale.policy import Reason
from llmops.autoscale.prometheus import OutcomeKind, PrometheusClient
from llmops_testing.prometheus import (
    LocalPrometheus,
    MetricsTarget,
    ScrapeTarget,
    free_loopback_port,
    prometheus_available,
)

pytestmark = pytest.mark.skipif(not prometheus_available(), reason="needs /usr/bin/prometheus (apt-get install prometheus)")

NS = "team-a"
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)


class VllmPod(MetricsTarget):
    def __init__(self, kv_name: str = "vllm:kv_cache_usage_perc", negotiate: bool = False):
        super().__init__(negotiate=negotiate)
        labels = ["model_name", "engine"]
        self.waiting = Gauge("vllm:num_requests_waiting", "waiting", labels, registry=self.registry)
        self.running = Gauge("vllm:num_requests_running", "running", labels, registry=self.registry)
        self.kv = Gauge(kv_name, "kv", labels, registry=self.registry)
        self.tokens = Counter("vllm:generation_tokens", "tokens", labels, registry=self.registry)
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds", "ttft", labels, buckets=TTFT_BUCKETS, registry=self.registry
        )
        for metric in (self.waiting, self.running, self.kv, self.tokens, self.ttft):
            metric.labels("m", "0")

    def set(self, waiting: float = 0, running: float = 0, kv: float = 0) -> None:
        self.waiting.labels("m", "0").set(waiting)
        self.running.labels("m", "0").set(running)
        self.kv.labels("m", "0").set(kv)


class FrozenSample:
    """A collector whose sample carries an explicit timestamp two minutes in the past."""

    def collect(self):
        family = GaugeMetricFamily("vllm:num_requests_waiting", "waiting", labels=["model_name"])
        family.add_metric(["m"], 50, timestamp=time.time() - 120)
        yield family


def labels(deployment: str, pod: str) -> dict[str, str]:
    return {"namespace": NS, "llmops_deployment": deployment, "pod": pod}


@pytest.fixture(scope="module")
def world():
    pods = {
        "llama-0": VllmPod().start(),
        "llama-1": VllmPod().start(),
        # Old KV name, served by prometheus_client's own negotiating server: Prometheus stores
        # the names with ':' escaped to '_' (prometheus/client_python#1177).
        "legacy-0": VllmPod(kv_name="vllm:gpu_cache_usage_perc", negotiate=True).start(),
        "gone-0": VllmPod().start(),
    }
    frozen = MetricsTarget()
    frozen.registry.register(FrozenSample())
    frozen.start()
    targets = [ScrapeTarget(pod.address, labels(name.rsplit("-", 1)[0], name)) for name, pod in pods.items()]
    targets.append(ScrapeTarget(frozen.address, labels("frozen", "frozen-0")))
    prometheus = LocalPrometheus(targets).start()
    try:
        prometheus.wait_for_value('count(up{job="vllm"} == 1)', lambda v: v == len(targets))
        yield prometheus, pods
    finally:
        prometheus.stop()
        for pod in pods.values():
            pod.stop()
        frozen.stop()


def spec(**wire) -> AutoscalingSpec:
    base = {"minReplicas": 1, "maxReplicas": 10, "behavior": {"scaleUpStabilizationSeconds": 0}}
    base.update(wire)
    return AutoscalingSpec.model_validate(base)


def evaluate(url: str, name: str, autoscaling: AutoscalingSpec, replicas: ReplicaCounts | PodFacts,
             previous=None, engine_slots=None):
    facts = replicas if isinstance(replicas, PodFacts) else PodFacts(replicas)

    async def go():
        async with PrometheusClient(url, timeout_seconds=3) as prometheus:
            return await evaluate_once(
                prometheus, namespace=NS, name=name, spec=autoscaling, pods=facts,
                previous_status=previous, now=time.time(), engine_slots=engine_slots,
            )

    return asyncio.run(go())


def test_waiting_requests_scoped_to_the_deployment_drive_a_scale_up(world):
    prometheus, pods = world
    pods["llama-0"].set(waiting=7)
    pods["llama-1"].set(waiting=5)
    pods["legacy-0"].set(waiting=100)  # another deployment: must not count
    prometheus.wait_for_value(f'sum(vllm:num_requests_waiting{{namespace="{NS}",llmops_deployment="llama"}})',
                              lambda v: v == 12)
    result = evaluate(prometheus.url, "llama", spec(metrics=[{"type": "waitingRequests", "target": 2}]),
                      ReplicaCounts(current=2, ready=2, starting=0))
    detail = result.decision.metrics[0]
    assert detail.value == pytest.approx(6)  # 12 over 2 ready replicas
    assert 0 <= detail.age_seconds < 5
    assert (result.desired_replicas, result.decision.reason) == (6, Reason.scaled_up)
    assert result.condition["status"] == "True"
    assert result.status["history"][-1]["to"] == 6


def test_kv_cache_name_is_detected_per_deployment(world):
    prometheus, pods = world
    pods["legacy-0"].set(kv=0.95)
    pods["llama-0"].set(kv=0.2)
    pods["llama-1"].set(kv=0.4)
    prometheus.wait_for_value('vllm_gpu_cache_usage_perc{llmops_deployment="legacy"}', lambda v: v == 0.95)
    prometheus.wait_for_value('avg(vllm:kv_cache_usage_perc{llmops_deployment="llama"})', lambda v: abs(v - 0.3) < 1e-9)

    async def both():
        async with PrometheusClient(prometheus.url) as client:
            return await detect(client, KV_CACHE_NAMES, NS, "legacy"), await detect(client, KV_CACHE_NAMES, NS, "llama")

    legacy, current = asyncio.run(both())
    assert (legacy.chosen, legacy.detected) == ("vllm_gpu_cache_usage_perc", True)
    assert (current.chosen, current.detected) == ("vllm:kv_cache_usage_perc", True)

    kv_spec = spec(metrics=[{"type": "kvCacheUtilization", "target": 0.5}])
    result = evaluate(prometheus.url, "legacy", kv_spec, ReplicaCounts(current=1, ready=1, starting=0))
    assert result.status["metricNames"]["kvCache"]["metric"] == "vllm_gpu_cache_usage_perc"
    assert result.status["metricNames"]["waiting"]["metric"] == "vllm_num_requests_waiting"
    assert result.decision.metrics[0].value == pytest.approx(0.95)
    assert result.desired_replicas == 2
    llama = evaluate(prometheus.url, "llama", kv_spec, ReplicaCounts(current=2, ready=2, starting=0))
    assert llama.decision.metrics[0].value == pytest.approx(0.3)  # mean over the two pods
    # ceil(2 x 0.3 / 0.5) = 2: nothing to do, and the message says why.
    assert llama.desired_replicas == 2 and llama.decision.reason is Reason.held_tolerance
    assert "equals the current replicas" in llama.decision.message
    assert llama.status["metricNames"]["kvCache"]["metric"] == "vllm:kv_cache_usage_perc"


def test_ttft_percentile_and_token_rate(world):
    prometheus, pods = world
    sel = f'namespace="{NS}",llmops_deployment="llama"'
    deadline = time.monotonic() + 20
    # Keep observations flowing so rate() over 1m sees increases between scrapes.
    while time.monotonic() < deadline:
        for pod in ("llama-0", "llama-1"):
            for _ in range(20):
                pods[pod].ttft.labels("m", "0").observe(3.0)  # lands in the (2.5, 5] bucket
            pods[pod].tokens.labels("m", "0").inc(100)
        result = prometheus.query(
            f"histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[1m])))"
        )
        if result and result[0]["value"][1] not in ("NaN",):
            break
        time.sleep(0.5)
    autoscaling = spec(metrics=[
        {"type": "timeToFirstToken", "target": 2.5, "percentile": 0.9},
        {"type": "generationTokensPerSecond", "target": 1000},
    ])
    result = evaluate(prometheus.url, "llama", autoscaling, ReplicaCounts(current=2, ready=2, starting=0))
    ttft, tokens = result.decision.metrics
    assert 2.5 < ttft.value <= 5.0
    assert ttft.recommendation >= 3  # ratio > 1.1 on 2 replicas
    assert tokens.status == "ok" and tokens.value > 0
    assert result.decision.reason is Reason.scaled_up


def test_stopped_target_goes_stale_and_policy_holds(world):
    prometheus, pods = world
    pods["gone-0"].set(waiting=9)
    sel = f'namespace="{NS}",llmops_deployment="gone"'
    prometheus.wait_for_value(f"sum(vllm:num_requests_waiting{{{sel}}})", lambda v: v == 9)
    pods["gone-0"].stop()
    # A failed scrape writes staleness markers: the series disappears from instant queries.
    prometheus.wait_for_empty(f"vllm:num_requests_waiting{{{sel}}}")
    result = evaluate(prometheus.url, "gone", spec(metrics=[{"type": "waitingRequests", "target": 2}]),
                      ReplicaCounts(current=3, ready=3, starting=0))
    assert (result.desired_replicas, result.decision.reason) == (3, Reason.metrics_stale)
    assert result.decision.metrics[0].status == "missing"
    assert result.condition == {"type": "Autoscaling", "status": "False", "reason": "MetricsStale",
                                "message": result.decision.message}


def test_old_sample_counts_as_stale_by_age(world):
    prometheus, _ = world
    prometheus.wait_for_value('vllm:num_requests_waiting{llmops_deployment="frozen"}', lambda v: v == 50)
    result = evaluate(prometheus.url, "frozen", spec(metrics=[{"type": "waitingRequests", "target": 2}],
                                                     behavior={"metricsMaxAgeSeconds": 60}),
                      ReplicaCounts(current=1, ready=1, starting=0))
    detail = result.decision.metrics[0]
    assert detail.status == "stale" and 110 < detail.age_seconds < 180
    assert (result.desired_replicas, result.decision.reason) == (1, Reason.metrics_stale)


def test_unreachable_prometheus_is_a_typed_outcome_and_a_hold():
    url = f"http://127.0.0.1:{free_loopback_port()}"  # nothing listens there

    async def query():
        async with PrometheusClient(url, timeout_seconds=2) as client:
            return await client.instant_query("up")

    outcome = asyncio.run(query())
    assert outcome.kind is OutcomeKind.unreachable and "127.0.0.1" in outcome.message
    result = evaluate(url, "llama", spec(metrics=[{"type": "waitingRequests", "target": 2}]),
                      ReplicaCounts(current=4, ready=4, starting=0))
    assert (result.desired_replicas, result.decision.reason) == (4, Reason.metrics_unavailable)
    assert result.condition["status"] == "False" and result.condition["reason"] == "MetricsUnavailable"


def test_bad_query_and_empty_result_outcomes(world):
    prometheus, _ = world

    async def queries():
        async with PrometheusClient(prometheus.url) as client:
            return (
                await client.instant_query("sum(vllm:num_requests_waiting{"),
                await client.instant_query('vllm:num_requests_waiting{llmops_deployment="nobody"}'),
                await client.instant_query("vllm:num_requests_waiting[1m]"),
                await client.instant_query("1 + 1"),
            )

    bad, empty, matrix, scalar = asyncio.run(queries())
    assert bad.kind is OutcomeKind.query_error and "bad_data" in bad.message
    assert empty.kind is OutcomeKind.empty
    assert matrix.kind is OutcomeKind.query_error
    assert scalar.kind is OutcomeKind.ok and scalar.scalar() == 2


def test_activation_query_wakes_from_zero(world):
    prometheus, pods = world
    pods["llama-0"].set(waiting=3)
    prometheus.wait_for_value('sum(vllm:num_requests_waiting{llmops_deployment="llama",pod="llama-0"})',
                              lambda v: v == 3)
    # Stand-in for a gateway metric that still exists while the deployment has no pods.
    autoscaling = spec(minReplicas=0, activationQuery='sum(vllm:num_requests_waiting{pod="{name}-0"})')
    result = evaluate(prometheus.url, "llama", autoscaling, ReplicaCounts(current=0, ready=0, starting=0))
    assert (result.desired_replicas, result.decision.reason) == (1, Reason.scaled_up)
    assert "activationQuery" in result.decision.message
    quiet = evaluate(prometheus.url, "nobody", autoscaling, ReplicaCounts(current=0, ready=0, starting=0))
    assert (quiet.desired_replicas, quiet.decision.reason) == (0, Reason.idle_scale_to_zero)


def test_state_carried_in_status_keeps_the_scale_down_window(world):
    prometheus, pods = world
    sel = f'namespace="{NS}",llmops_deployment="llama"'
    autoscaling = spec(metrics=[{"type": "waitingRequests", "target": 2}],
                       behavior={"scaleDownStabilizationSeconds": 300})
    pods["llama-0"].set(waiting=10)
    pods["llama-1"].set(waiting=10)
    prometheus.wait_for_value(f"sum(vllm:num_requests_waiting{{{sel}}})", lambda v: v == 20)
    first = evaluate(prometheus.url, "llama", autoscaling, ReplicaCounts(current=10, ready=10, starting=0))
    assert first.decision.reason is Reason.held_tolerance  # 2 per replica on 10 replicas
    pods["llama-0"].set(waiting=1)
    pods["llama-1"].set(waiting=0)
    prometheus.wait_for_value(f"sum(vllm:num_requests_waiting{{{sel}}})", lambda v: v == 1)
    status = json.loads(json.dumps(first.status))  # as it comes back from the API server
    second = evaluate(prometheus.url, "llama", autoscaling, ReplicaCounts(current=10, ready=10, starting=0), status)
    assert (second.desired_replicas, second.decision.reason) == (10, Reason.held_stabilization)
    assert [h["reason"] for h in second.status["history"]] == ["held-tolerance", "held-stabilization"]
    fresh = evaluate(prometheus.url, "llama", autoscaling, ReplicaCounts(current=10, ready=10, starting=0))
    assert (fresh.desired_replicas, fresh.decision.reason) == (6, Reason.scaled_down)  # -4 step, no memory


def test_disabled_autoscaling_queries_nothing():
    url = f"http://127.0.0.1:{free_loopback_port()}"  # would be unreachable if queried
    result = evaluate(url, "llama", spec(enabled=False), ReplicaCounts(current=3, ready=3, starting=0))
    assert (result.desired_replicas, result.decision.reason) == (3, Reason.disabled)
    assert result.decision.metrics == ()


def test_unreachable_prometheus_keeps_the_previous_name_detection(world):
    prometheus, _ = world
    autoscaling = spec(metrics=[{"type": "kvCacheUtilization", "target": 0.5}])
    good = evaluate(prometheus.url, "legacy", autoscaling, ReplicaCounts(current=1, ready=1, starting=0))
    assert good.status["metricNames"]["kvCache"]["metric"] == "vllm_gpu_cache_usage_perc"
    down = f"http://127.0.0.1:{free_loopback_port()}"
    held = evaluate(down, "legacy", autoscaling, ReplicaCounts(current=1, ready=1, starting=0), good.status)
    assert held.decision.reason is Reason.metrics_unavailable
    assert held.status["metricNames"]["kvCache"]["metric"] == "vllm_gpu_cache_usage_perc"
    assert "vllm_gpu_cache_usage_perc" in held.decision.metrics[0].query
