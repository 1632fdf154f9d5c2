"""Reconcile latency (LLMDeployment created -> its Deployment exists) for 1, 100 and 500
LLMDeployments against the local sandbox, and the operator's memory at the end.

    .venv/bin/python tests/benchmarks/bench_operator.py [--counts 1 100 500]

Deployments are created with replicas 0, so the figures measure the operator and the API
server, not pod start-up. Prints one line per batch and a summary table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kubernetes import client, watch

from llmops.kube import load_api_client
from llmops_sandbox import lifecycle
from llmops_sandbox.state import resolve_dir
from llmops_sandbox.operator_process import install_crd, start_operator

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"


def manifest(name: str, namespace: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                 "engine": {"image": "llmops/vllm-sim:latest"},
                 "sharding": {"tensorParallelSize": 1}, "replicas": 0},
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_batch(api: client.ApiClient, count: int, timeout: float) -> list[float]:
    namespace = f"bench-{count}-{uuid.uuid4().hex[:6]}"
    core, crs = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": namespace}})
    created: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch_children() -> None:
        w = watch.Watch()
        for event in w.stream(client.AppsV1Api(api).list_namespaced_deployment, namespace, timeout_seconds=int(timeout)):
            if event["type"] == "ADDED":
                seen.setdefault(event["object"].metadata.name, time.monotonic())
                if len(seen) >= count:
                    w.stop()
        done.set()

    watcher = threading.Thread(target=watch_children, daemon=True)
    watcher.start()
    time.sleep(0.5)  # let the watch open before the first create
    for i in range(count):
        name = f"m{i}"
        crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(name, namespace))
        created[name] = time.monotonic()
        if count > 1 and i % 100 == 99:
            print(f"  created {i + 1}/{count}", file=sys.stderr, flush=True)
    if not done.wait(timeout):
        print(f"  timeout: {len(seen)}/{count} children after {timeout}s", file=sys.stderr)
    latencies = [seen[n] - created[n] for n in created if n in seen]
    core.delete_namespace(namespace, _preload_content=False)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    root = resolve_dir(None)
    info, _ = lifecycle.up(lifecycle.UpOptions(dir=root), progress=lambda m: print(m, file=sys.stderr))
    api = load_api_client(str(info.kubeconfig))
    install_crd(api)
    log = Path(tempfile.mkdtemp(prefix="bench-operator-")) / "operator.log"
    operator = start_operator(str(info.kubeconfig), log)
    rows = []
    try:
        for count in args.counts:
            print(f"batch of {count} LLMDeployments ...", file=sys.stderr, flush=True)
            latencies = run_batch(api, count, args.timeout)
            rss = rss_mib(operator.process.pid)
            rows.append((count, len(latencies), statistics.median(latencies), pct(latencies, 0.99), max(latencies), rss))
    finally:
        operator.stop()
    print(f"{'LLMDeployments':>15} {'children':>9} {'p50 (s)':>8} {'p99 (s)':>8} {'max (s)':>8} {'operator RSS (MiB)':>19}")
    for count, got, p50, p99, worst, rss in rows:
        print(f"{count:>15} {got:>9} {p50:>8.3f} {p99:>8.3f} {worst:>8.3f} {rss:>19.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
