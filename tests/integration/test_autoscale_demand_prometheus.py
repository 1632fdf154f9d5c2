"""Demand mode's signals through a real Prometheus scraping a real simulator under load:
the arrival rate and service time the operator reads must match what was offered and
what the engine measured, and a broken arrivalsQuery is reported, never raised."""

import asyncio
import time
import urllib.request

import pytest

from llmops.api.autoscaling import AutoscalingSpec
from llmops.autoscale.evaluate import evaluate_once
from llmops.autoscale.pods import PodFacts, ReplicaCounts
from llmops.autoscale.prometheus import PrometheusClient
from llmops_testing.prometheus import LocalPrometheus, ScrapeTarget, prometheus_available
from llmops_load.generator import LoadConfig, run_load_sync
from llmops_sim.process import start_sim

pytestmark = pytest.mark.skipif(not prometheus_available(), reason="needs /usr/bin/prometheus (apt-get install prometheus)")

NS, NAME = "team-d", "chat"
RATE = 4.0


def demand_spec(**demand) -> AutoscalingSpec:
    settings = {"fastWindowSeconds": 15, "slowWindowSeconds": 30, "coldStartSecondsHint": 60, **demand}
    return AutoscalingSpec.model_validate({"mode": "demand", "maxReplicas": 8, "demand": settings})


def exposed(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def evaluate(prometheus_url: str, autoscaling: AutoscalingSpec, previous=None):
    async def go():
        async with PrometheusClient(prometheus_url, timeout_seconds=5) as prometheus:
            return await evaluate_once(
                prometheus, namespace=NS, name=NAME, spec=autoscaling,
                pods=PodFacts(ReplicaCounts(current=1, ready=1, starting=0), started=(("chat-0", 42.0),)),
                previous_status=previous, now=time.time(), engine_slots=8,
            )

    return asyncio.run(go())


@pytest.fixture(scope="module")
def loaded():
    """One simulator under RATE req/s of open-loop load for 35 s, scraped every second."""
    sim = start_sim(["meta-llama/Llama-3.1-8B-Instruct", "--max-num-seqs", "8"],
                    env={"LLMOPS_SIM_GPU": "NVIDIA-A100-SXM4-80GB"})
    sim.wait_ready()
    address = sim.url.removeprefix("http://")
    prometheus = LocalPrometheus([ScrapeTarget(address, {"namespace": NS, "llmops_deployment": NAME, "pod": "chat-0"})])
    prometheus.start()
    try:
        prometheus.wait_for_value('count(up{job="vllm"} == 1)', lambda v: v == 1)
        report = run_load_sync(LoadConfig(url=sim.url, api="completions", rate=RATE, arrival="constant",
                                          duration=35, prompt_tokens=128, max_tokens=48, progress_interval=0))
        assert report.requests_ok > 100 and not report.errors
        # Wait until Prometheus has scraped the last completions.
        finished = exposed(sim.url, "vllm:request_success_total")
        prometheus.wait_for_value(f'sum(vllm:request_success_total{{namespace="{NS}"}})', lambda v: v >= finished)
        yield prometheus, sim
    finally:
        prometheus.stop()
        sim.stop()


def test_the_arrival_rate_and_service_time_match_what_was_offered_and_measured(loaded):
    prometheus, sim = loaded
    evaluation = evaluate(prometheus.url, demand_spec())
    steady = next(t for t in evaluation.decision.terms if t.name == "steady")
    # Load ended just now, so the slow window (30 s) saw RATE all along; the fast one ends
    # with the drain and may read a little lower.
    assert steady.inputs["arrivalSlow"] == pytest.approx(RATE, rel=0.25)
    assert 0 < steady.inputs["arrivalFast"] <= RATE * 1.25
    measured = exposed(sim.url, "vllm:request_inference_time_seconds_sum") / exposed(
        sim.url, "vllm:request_inference_time_seconds_count")
    assert steady.inputs["serviceSeconds"] == pytest.approx(measured, rel=0.3)
    assert steady.inputs["serviceSource"].startswith("sum(rate(vllm:request_inference_time_seconds_sum")
    assert steady.inputs["slotsPerReplica"] == 8 and steady.inputs["slotsSource"] == "max-num-seqs"
    backlog = next(t for t in evaluation.decision.terms if t.name == "backlog")
    assert backlog.inputs["queue"] == 0 and backlog.inputs["horizonSeconds"] == 42.0  # learned from the pod
    assert evaluation.status["coldStarts"] == [["chat-0", 42.0]]
    assert evaluation.status["lastDecision"]["terms"][0]["name"] == "steady"


def test_a_custom_arrivals_query_is_used_with_its_window(loaded):
    prometheus, _ = loaded
    query = 'sum(rate(vllm:request_success_total{namespace="{namespace}",llmops_deployment="{name}"}[{window}]))'
    evaluation = evaluate(prometheus.url, demand_spec(arrivalsQuery=query))
    steady = next(t for t in evaluation.decision.terms if t.name == "steady")
    assert steady.inputs["arrivalSlow"] == pytest.approx(RATE, rel=0.25)


def test_an_invalid_arrivals_query_is_reported_in_the_condition_not_raised(loaded):
    prometheus, _ = loaded
    evaluation = evaluate(prometheus.url, demand_spec(arrivalsQuery="sum(rate(vllm:request_success_total[{window}]"))
    message = evaluation.condition["message"]
    assert message.startswith("demand: no arrival rate measured (arrivalsQuery failed: query-error")
    assert "ratio rules apply" in message and not evaluation.decision.terms
