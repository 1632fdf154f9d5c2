"""Figures for the chart and the admission webhook (prints them; not collected by pytest).

    .venv/bin/python tests/benchmarks/bench_helm.py    # needs the sandbox up (llmops sandbox up)

- helm template time (default values);
- admission latency through the real API server: server-side dry-run creates of a valid and an
  invalid LLMDeployment with the chart installed (webhook in the path) vs without it;
- helm install --wait until the operator pod is Ready.
"""

from __future__ import annotations

import statistics
import time
import uuid

from kubernetes import client, config

from llmops_sandbox.state import StateDir, resolve_dir
from llmops_sandbox.tools.chart import CHART_DIR, helm, render
from llmops.waiting import wait_for

N = 100
VALID = {"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "bench"},
         "spec": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "replicas": 1}}
INVALID = {**VALID, "spec": {**VALID["spec"], "engine": {"dtype": "fp17"}}}


def ms(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms"


def admission_latency(crs, namespace: str, body: dict) -> list[float]:
    samples = []
    for _ in range(N):
        started = time.perf_counter()
        try:
            crs.create_namespaced_custom_object("llmops.io", "v1alpha1", namespace, "llmdeployments",
                                                {**body, "metadata": {"name": "bench", "namespace": namespace}},
                                                dry_run="All")
        except client.ApiException as exc:
            assert exc.status == 422, exc
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    started = time.perf_counter()
    for _ in range(5):
        render()
    print(f"helm template (defaults): {(time.perf_counter() - started) / 5 * 1000:.0f} ms per render")

    kubeconfig = StateDir(resolve_dir()).read_info().kubeconfig
    api = config.new_client_from_config(config_file=kubeconfig)
    core, crs = client.CoreV1Api(api), client.CustomObjectsApi(api)
    suffix = uuid.uuid4().hex[:5]
    ops, ml = f"bench-ops-{suffix}", f"bench-ml-{suffix}"
    for ns in (ops, ml):
        core.create_namespace({"metadata": {"name": ns, "labels": {"llmops.io/bench": suffix}}})
        wait_for(lambda ns=ns: (core.read_namespaced_service_account("default", ns).secrets or None)
                 if core.list_namespaced_service_account(ns).items else None, 30, f"{ns}: no default ServiceAccount")
    try:
        print(f"dry-run create without webhook, valid: {ms(admission_latency(crs, ml, VALID))}")
        values = {"operator": {"watchNamespaces": [ml]},
                  "webhook": {"namespaceSelector": {"matchLabels": {"llmops.io/bench": suffix}}}}
        started = time.perf_counter()
        helm(["install", "bench", str(CHART_DIR), "-n", ops, "--wait", "--timeout", "120s"], values,
             kubeconfig=kubeconfig)
        print(f"helm install --wait (operator Ready): {time.perf_counter() - started:.1f} s")
        print(f"dry-run create through the webhook, valid: {ms(admission_latency(crs, ml, VALID))}")
        print(f"dry-run create through the webhook, invalid (refused): {ms(admission_latency(crs, ml, INVALID))}")
    finally:
        helm(["uninstall", "bench", "-n", ops, "--wait"], kubeconfig=kubeconfig, check=False)
        for ns in (ops, ml):
            core.delete_namespace(ns)


if __name__ == "__main__":
    main()
