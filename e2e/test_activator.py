"""The activator (issue 15): a deployment at zero replicas holds requests instead of refusing
them. A burst of 50 streaming requests through the Service of a deployment at zero all complete
after the wake, each held about one cold start; requests beyond spec.activator.queueSize get 429
with Retry-After; the same for a multi-node group. Once a replica is Ready the Service's
endpoints are the pods again, and requests no longer pass through the activator."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Optional

import aiohttp
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from llmops.activator.server import HELD_HEADER
from llmops.kube import Kube
from llmops_sandbox.fixtures import FOREIGN_CLUSTER
from llmops_testing.samples import sim_deployment
from llmops_sandbox.tools.chart import render
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
BURST, QUEUE, EXTRA = 50, 50, 10
AUTOSCALING = {
    "minReplicas": 0, "maxReplicas": 1,
    "metrics": [{"type": "waitingRequests", "target": 1000}],
    "behavior": {"evaluationIntervalSeconds": 1, "scaleUpStabilizationSeconds": 0,
                 "scaleDownStabilizationSeconds": 0, "scaleToZeroAfterSeconds": 600, "metricsMaxAgeSeconds": 30},
}
ACTIVATOR_SPEC = {"enabled": True, "queueSize": QUEUE, "holdSeconds": 180}


@dataclass
class Installed:
    namespace: str
    service: str

    def ip(self, core: client.CoreV1Api) -> Optional[str]:
        return next(iter(endpoint_ips(core, self.namespace, self.service)), None)

    def metrics(self, core: client.CoreV1Api) -> dict[tuple[str, tuple], float]:
        with urllib.request.urlopen(f"http://{self.ip(core)}:8080/metrics", timeout=5) as r:
            text = r.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(text) for s in f.samples}


def metric(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all(dict(ls).get(k) == x for k, x in labels.items()))


def endpoint_ips(core: client.CoreV1Api, namespace: str, name: str) -> list[str]:
    try:
        eps = core.read_namespaced_endpoints(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return []
        raise
    return sorted(a.ip for s in eps.subsets or [] for a in s.addresses or [])


@pytest.fixture(scope="module")
def activator(api_client, operator, crd_installed):
    """The chart's activator objects, applied as Helm renders them; the operator told of it.
    On a cluster the chart installed (kind: e2e/kind/run-e2e.sh), the chart's own activator."""
    core = client.CoreV1Api(api_client)
    if FOREIGN_CLUSTER:
        services = core.list_service_for_all_namespaces(
            label_selector="app.kubernetes.io/part-of=llmops,app.kubernetes.io/component=activator").items
        if not services:
            pytest.fail("no llmops activator Service on the cluster; install the chart with activator.enabled=true "
                        "(e2e/kind/run-e2e.sh does)")
        yield Installed(services[0].metadata.namespace, services[0].metadata.name)
        return
    namespace = f"llmops-activator-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": namespace}})
    docs = [d for d in render({"activator": {"enabled": True}}, namespace=namespace)
            if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "activator"]
    kube = Kube(api_client)
    service = next(d for d in docs if d["kind"] == "Service")["metadata"]["name"]
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    kube.apply(sa)
    wait_for(lambda: core.read_namespaced_service_account(sa["metadata"]["name"], namespace).secrets, 30,
             "the activator's ServiceAccount got no token")
    for doc in docs:
        kube.apply(doc)
    installed = Installed(namespace, service)
    wait_for(lambda: installed.ip(core), 90, "the activator pod never became Ready (its Service has no endpoints)")
    original = list(operator.cmd) if operator else None
    if operator is not None:
        operator.cmd += ["--activator", f"{namespace}/{service}"]
        operator.restart()
    yield installed
    if operator is not None:
        operator.cmd[:] = original
        operator.restart()
    for doc in docs:
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            kube.delete(doc["apiVersion"], doc["kind"], doc["metadata"]["name"], None)
    core.delete_namespace(namespace)


@dataclass
class Result:
    status: int = 0
    retry_after: Optional[str] = None
    sent: float = 0.0
    first_byte: Optional[float] = None
    done: Optional[float] = None
    events: int = 0
    finished: bool = False  # saw data: [DONE]
    error: str = ""
    via: str = ""
    held_header: Optional[str] = None  # the activator's X-Llmops-Held-Seconds: set only on held requests


async def stream_one(session: aiohttp.ClientSession, url: str, model: str) -> Result:
    r = Result(sent=time.time(), via=url)
    body = {"model": model, "prompt": "hello " * 16, "max_tokens": 24, "stream": True}
    try:
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            r.status, r.retry_after = resp.status, resp.headers.get("Retry-After")
            r.held_header = resp.headers.get(HELD_HEADER)
            async for line in resp.content:
                if r.first_byte is None:
                    r.first_byte = time.time()
                if line.startswith(b"data: "):
                    r.events += 1
                    r.finished = r.finished or line.strip() == b"data: [DONE]"
            r.done = time.time()
    except Exception as exc:
        r.error = repr(exc)
    return r


def service_url(core, namespace: str, name: str) -> str:
    """Through the Service: one of its ready endpoints, as the load generator and kube-proxy do."""
    ips = endpoint_ips(core, namespace, name)
    assert ips, f"Service {namespace}/{name} has no ready endpoints"
    return f"http://{ips[0]}:8000"


def pod_ready_at(pod) -> float:
    cond = next(c for c in pod.status.conditions if c.type == "Ready" and c.status == "True")
    return cond.last_transition_time.replace(tzinfo=dt.timezone.utc).timestamp()


def serving_pods(core, namespace: str, name: str):
    pods = core.list_namespaced_pod(namespace, label_selector=f"llmops.io/deployment={name}").items
    return [p for p in pods if not p.metadata.deletion_timestamp
            and (p.metadata.labels or {}).get("llmops.io/role") in (None, "leader")]


async def burst_with_overflow(core, activator: Installed, namespace: str, name: str):
    """BURST requests held at zero, then EXTRA more that find the queue full."""
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        url = service_url(core, namespace, name)
        held = [asyncio.create_task(stream_one(session, url, name)) for _ in range(BURST)]

        async def all_held() -> bool:
            samples = await asyncio.to_thread(activator.metrics, core)
            return metric(samples, "llmops_activator_holding_requests", namespace=namespace, llmdeployment=name) >= BURST

        deadline = time.time() + 60
        while not await all_held():
            assert time.time() < deadline, "the activator did not hold all 50 requests within 60s"
            assert not any(t.done() for t in held), [t.result() for t in held if t.done()][:3]
            await asyncio.sleep(0.2)
        overflow = await asyncio.gather(*(stream_one(session, url, name) for _ in range(EXTRA)))
        return await asyncio.gather(*held), overflow, url


def check_burst(core, activator, namespace, name, held, overflow, url, before) -> dict:
    assert url.startswith(f"http://{activator.ip(core)}:"), "at zero the Service did not point at the activator"
    bad = [r for r in held if r.status != 200 or not r.finished or r.error]
    assert not bad, f"{len(bad)} of {BURST} held requests did not complete: {bad[:3]}"
    assert all(r.events > 2 for r in held), "streams arrived as one piece, not as SSE events"
    assert all(r.status == 429 and r.retry_after and int(r.retry_after) >= 1 for r in overflow), \
        f"requests beyond the queue: {[(r.status, r.retry_after) for r in overflow]}"
    [pod] = serving_pods(core, namespace, name)
    ready_at = pod_ready_at(pod)
    cold_start = ready_at - min(r.sent for r in held)
    waits = sorted(r.first_byte - r.sent for r in held)
    # Each held about one cold start: released when the replica got Ready (the Ready time has
    # 1 s resolution), not before it and not much later.
    assert all(r.first_byte >= ready_at - 1.0 for r in held), "a request was answered before any replica was Ready"
    assert waits[-1] <= cold_start + 5, f"held {waits[-1]:.1f}s, well beyond the {cold_start:.1f}s cold start"
    # The activator says how long it held each one: about the cold start, for every request.
    holds = sorted(float(r.held_header) for r in held)
    assert holds[0] >= cold_start - 1.5 and holds[-1] <= cold_start + 5, (holds[0], holds[-1], cold_start)
    after = activator.metrics(core)
    delta = {k: metric(after, k, namespace=namespace, llmdeployment=name) - metric(before, k, namespace=namespace,
                                                                                  llmdeployment=name)
             for k in ("llmops_activator_held_requests_total", "llmops_activator_forwarded_requests_total",
                       "llmops_activator_hold_seconds_count")}
    refused = metric(after, "llmops_activator_refused_requests_total", namespace=namespace, llmdeployment=name,
                     reason="queue-full") - metric(before, "llmops_activator_refused_requests_total",
                                                   namespace=namespace, llmdeployment=name, reason="queue-full")
    assert delta == {"llmops_activator_held_requests_total": BURST,
                     "llmops_activator_forwarded_requests_total": BURST,
                     "llmops_activator_hold_seconds_count": BURST}, delta
    assert refused == EXTRA
    print(f"{name}: cold start {cold_start:.1f}s, first byte after {waits[0]:.1f}..{waits[-1]:.1f}s, "
          f"activator hold {holds[0]:.2f}..{holds[-1]:.2f}s (p50 {holds[len(holds) // 2]:.2f}s); "
          f"{EXTRA} x 429 Retry-After {overflow[0].retry_after}s")
    return after


async def direct(core, namespace: str, name: str, n: int = 10) -> list[Result]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        return await asyncio.gather(*(stream_one(session, service_url(core, namespace, name), name)
                                      for _ in range(n)))


def check_no_extra_hop(core, crs, activator, namespace, name, after_burst) -> None:
    pods = serving_pods(core, namespace, name)
    pod_ips = sorted(p.status.pod_ip for p in pods)
    wait_for(lambda: endpoint_ips(core, namespace, name) == pod_ips, 30,
             "the Service's endpoints did not switch from the activator to the Ready pods")
    svc = core.read_namespaced_service(name, namespace)
    assert svc.spec.selector, "with a Ready replica the Service should select its pods again"
    assert svc.metadata.annotations["llmops.io/route"] == "pods"
    results = asyncio.run(direct(core, namespace, name))
    assert all(r.status == 200 and r.finished for r in results), results[:3]
    assert not any(r.held_header for r in results), "a request with a Ready replica went through the activator"
    assert {r.via for r in results} <= {f"http://{ip}:8000" for ip in pod_ips}
    later = activator.metrics(core)
    assert metric(later, "llmops_activator_forwarded_requests_total", namespace=namespace, llmdeployment=name) == \
        metric(after_burst, "llmops_activator_forwarded_requests_total", namespace=namespace, llmdeployment=name), \
        "requests passed through the activator although a replica was Ready"


def wait_routed_to_activator(core, activator, namespace, name):
    def routed():
        ips = endpoint_ips(core, namespace, name)
        return ips and ips == [activator.ip(core)]

    wait_for(routed, 60, f"{name} at zero: its Service's endpoints never became the activator's")
    svc = core.read_namespaced_service(name, namespace)
    assert not svc.spec.selector and svc.metadata.annotations["llmops.io/route"] == "activator"


def test_burst_at_zero_is_held_through_the_wake_and_overflow_gets_429(activator, e2e_operator, crs, core, namespace):
    name = "held"
    body = sim_deployment(name, namespace, replicas=0, autoscaling=AUTOSCALING, activator=ACTIVATOR_SPEC)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_routed_to_activator(core, activator, namespace, name)
    assert not serving_pods(core, namespace, name)
    before = activator.metrics(core)
    held, overflow, url = asyncio.run(burst_with_overflow(core, activator, namespace, name))
    after = check_burst(core, activator, namespace, name, held, overflow, url, before)
    # Woken through the autoscaler's wake path: the activator set a new llmops.io/wake value.
    annotations = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)["metadata"]["annotations"]
    assert annotations["llmops.io/wake"].startswith("activator-")
    check_no_extra_hop(core, crs, activator, namespace, name, after)
    # Back at zero, the Service points at the activator again.
    crs.patch_namespaced_custom_object_scale(GROUP, VERSION, namespace, PLURAL, name, {"spec": {"replicas": 0}})
    wait_routed_to_activator(core, activator, namespace, name)


def test_multi_node_group_at_zero_holds_the_burst_until_the_whole_group_is_ready(
        activator, e2e_operator, crs, core, namespace):
    name = "held-group"
    body = {
        "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            # 8B at 128k context fits only across two edge L4 nodes: one group of two pods.
            "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "servedName": name},
            "engine": {"image": "llmops/vllm-sim:latest",
                       "env": [{"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "1"}]},
            "sharding": {"allowMultiNode": True},
            "resources": {"gpu": {"type": "NVIDIA-L4"}},
            "placement": {"profile": "edge"},
            "replicas": 0, "autoscaling": AUTOSCALING, "activator": ACTIVATOR_SPEC,
        },
    }
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_routed_to_activator(core, activator, namespace, name)
    before = activator.metrics(core)
    held, overflow, url = asyncio.run(burst_with_overflow(core, activator, namespace, name))
    after = check_burst(core, activator, namespace, name, held, overflow, url, before)
    status = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)["status"]
    assert status["nodesPerReplica"] == 2
    # Released only when the whole group was Ready: the worker was Ready before the first answer.
    workers = [p for p in core.list_namespaced_pod(namespace, label_selector=f"llmops.io/deployment={name}").items
               if p.metadata.labels.get("llmops.io/role") == "worker"]
    assert workers and all(pod_ready_at(w) <= min(r.first_byte for r in held) + 1 for w in workers)
    check_no_extra_hop(core, crs, activator, namespace, name, after)


def test_refusals_are_status_codes_with_retry_after_and_each_is_counted(activator, e2e_operator, crs, core, namespace):
    """Held past holdSeconds: 503 + Retry-After. For no deployment it holds for: 404 (no open
    proxy). A client that gives up while held: counted as abandoned."""
    name = "never-wakes"
    # No autoscaling: nothing acts on the wake annotation, so every hold runs out.
    body = sim_deployment(name, namespace, replicas=0, activator={"enabled": True, "queueSize": 5, "holdSeconds": 3})
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    wait_routed_to_activator(core, activator, namespace, name)
    before = activator.metrics(core)

    async def run():
        url = service_url(core, namespace, name)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            timed_out, unknown = await asyncio.gather(stream_one(session, url, name),
                                                      stream_one(session, url, "no-such-model"))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as impatient:
            gave_up = await stream_one(impatient, url, name)
        return timed_out, unknown, gave_up

    timed_out, unknown, gave_up = asyncio.run(run())
    assert timed_out.status == 503 and int(timed_out.retry_after) >= 1, timed_out
    assert 2.5 <= timed_out.done - timed_out.sent <= 6, f"held {timed_out.done - timed_out.sent:.1f}s, holdSeconds is 3"
    assert unknown.status == 404, unknown
    assert "TimeoutError" in gave_up.error, gave_up

    def counted(after=None):
        after = activator.metrics(core)
        delta = lambda n, **l: metric(after, n, **l) - metric(before, n, **l)  # noqa: E731
        return (delta("llmops_activator_refused_requests_total", namespace=namespace, llmdeployment=name,
                      reason="hold-timeout") == 1
                and delta("llmops_activator_refused_requests_total", reason="unknown-deployment") >= 1
                and delta("llmops_activator_abandoned_requests_total", namespace=namespace, llmdeployment=name) == 1
                and metric(after, "llmops_activator_holding_requests", namespace=namespace, llmdeployment=name) == 0)

    wait_for(counted, 10, "the activator did not count the 503, the 404 and the abandoned request")
