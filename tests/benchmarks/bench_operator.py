"""The operator at scale, against the local sandbox (issue 17's figures):

- burst: N LLMDeployments created at once; `operator_s` = first create -> every child of every
  one exists; `bare_client_s` = a plain client, same machine, same run, creating the same
  objects itself (the LLMDeployments and their rendered children): the API server's own limit;
  p50/p99 = per deployment, created -> all its children exist;
- steady: R LLMDeployments per second for S seconds, p99 created -> children exist;
- rss_mib: the operator's resident memory after both;
- idle_requests_per_min: API requests per minute the operator makes when nothing changes, from
  the API server's `apiserver_request_total` (a window with the operator idle minus an equal
  window with it stopped: the counter has no client label).

    .venv/bin/python tests/benchmarks/bench_operator.py [--burst 500] [--steady-rate 10]
        [--steady-seconds 60] [--idle-seconds 60] [--json] [--png FILE]

Deployments have replicas 0, so the figures measure the operator and the API server, not pod
start-up. Progress goes to stderr; `--json` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from kubernetes import client, watch
from kubernetes.dynamic import DynamicClient

from llmops.kube import Kube, load_api_client
from llmops.planner.sharding import resolve_sharding
from llmops.render import ClusterCapabilities, render_children
from llmops_sandbox import lifecycle
from llmops_sandbox.state import resolve_dir
from llmops_sandbox.operator_process import install_crd, start_operator
from llmops.validation import api_view, validate_manifest

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
CREATORS = 8  # client threads creating objects, for the operator run and the bare-client run alike
CHILD_KINDS = ("Deployment", "Service", "PodDisruptionBudget")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """user + system CPU the process has used (from /proc/PID/stat, in clock ticks)."""
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ChildWatch:
    """Watches the namespace's Deployments, Services and PDBs; records when each owner
    (label llmops.io/deployment) has all three."""

    def __init__(self, api: client.ApiClient, namespace: str, pdb_api: str):
        self.namespace, self.seen, self.complete, self.stopped = namespace, {}, {}, False
        self.lock = threading.Lock()
        dynamic = DynamicClient(api)
        # policy/v1beta1 on a 1.20 server, which today's typed client no longer has: use dynamic.
        kinds = {"Deployment": "apps/v1", "Service": "v1", "PodDisruptionBudget": pdb_api}
        resources = {kind: dynamic.resources.get(api_version=v, kind=kind) for kind, v in kinds.items()}
        self.watches = [watch.Watch() for _ in resources]
        self.threads = [threading.Thread(target=self._run, args=(dynamic, w, kind, resource), daemon=True)
                        for w, (kind, resource) in zip(self.watches, resources.items())]
        for t in self.threads:
            t.start()
        time.sleep(0.5)  # let the watches open before the first create

    def _run(self, dynamic: DynamicClient, w: watch.Watch, kind: str, resource) -> None:
        try:
            for event in dynamic.watch(resource, namespace=self.namespace, timeout=3600, watcher=w):
                if event["type"] != "ADDED":
                    continue
                owner = (event["raw_object"]["metadata"].get("labels") or {}).get("llmops.io/deployment")
                if not owner:
                    continue
                now = time.monotonic()
                with self.lock:
                    kinds = self.seen.setdefault(owner, set())
                    kinds.add(kind)
                    if len(kinds) == len(CHILD_KINDS):
                        self.complete.setdefault(owner, now)
        except Exception as exc:  # noqa: BLE001 - reported as missing children
            if not self.stopped:
                log(f"  watch of {kind} ended: {exc}")

    def wait(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(n in self.complete for n in names):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.stopped = True
        for w in self.watches:
            w.stop()


def create_all(make: Callable[[int], None], count: int, label: str) -> None:
    done = 0
    with concurrent.futures.ThreadPoolExecutor(CREATORS) as pool:
        for _ in pool.map(make, range(count)):
            done += 1
            if done % 100 == 0:
                log(f"  {label}: created {done}/{count}")


def bare_client_run(api: client.ApiClient, count: int, caps: ClusterCapabilities) -> float:
    """The same objects (LLMDeployments and rendered children) created by a plain client."""
    namespace = f"bench-bare-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    crs, kube = client.CustomObjectsApi(api), Kube(api)

    def make(i: int) -> None:
        body = manifest(f"m{i}", namespace)
        created = crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        d = validate_manifest(api_view(created))
        sharding, _ = resolve_sharding(d)
        for child in render_children(d, sharding, caps):
            kube.apply(child)

    started = time.monotonic()
    create_all(make, count, "bare client")
    elapsed = time.monotonic() - started
    delete_namespace(api, namespace)  # gone before the operator starts, so it cannot skew what follows
    return elapsed


def delete_namespace(api: client.ApiClient, namespace: str, timeout: float = 180) -> None:
    core = client.CoreV1Api(api)
    core.delete_namespace(namespace, _preload_content=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(ns.metadata.name == namespace for ns in core.list_namespace().items):
            return
        time.sleep(1)
    log(f"  namespace {namespace} still terminating after {timeout}s")


def operator_burst(api: client.ApiClient, namespace: str, count: int, pdb_api: str, timeout: float) -> dict:
    crs = client.CustomObjectsApi(api)
    children = ChildWatch(api, namespace, pdb_api)
    created: dict[str, float] = {}

    def make(i: int) -> None:
        crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(f"m{i}", namespace))
        created[f"m{i}"] = time.monotonic()

    started = time.monotonic()
    create_all(make, count, "burst")
    if not children.wait(list(created), timeout):
        log(f"  timeout: {len(children.complete)}/{count} deployments complete after {timeout}s")
    finished = max(children.complete.values(), default=float("nan"))
    children.stop()
    latencies = [children.complete[n] - created[n] for n in created if n in children.complete]
    return {"n": count, "complete": len(latencies), "operator_s": round(finished - started, 3),
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p99_s": round(pct(latencies, 0.99), 3), "latencies": latencies}


def steady(api: client.ApiClient, namespace: str, rate: float, seconds: float, pdb_api: str) -> dict:
    crs = client.CustomObjectsApi(api)
    children = ChildWatch(api, namespace, pdb_api)
    created: dict[str, float] = {}
    total = int(rate * seconds)
    started = time.monotonic()
    for i in range(total):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(f"s{i}", namespace))
        created[f"s{i}"] = time.monotonic()
        if i % int(rate * 10) == 0:
            log(f"  steady: {i}/{total} created, {len(children.complete)} complete")
    children.wait(list(created), 60)
    children.stop()
    latencies = [children.complete[n] - created[n] for n in created if n in children.complete]
    return {"rate_per_s": rate, "seconds": seconds, "n": total, "complete": len(latencies),
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p99_s": round(pct(latencies, 0.99), 3), "latencies": latencies}


def settle(api: client.ApiClient, namespace: str, count: int, timeout: float = 120) -> None:
    """Wait until every burst deployment reports status for its generation, so the steady
    phase measures steady state, not the burst's tail of status writes."""
    crs = client.CustomObjectsApi(api)
    started, deadline = time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = crs.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        done = sum((i.get("status") or {}).get("observedGeneration") == i["metadata"]["generation"] for i in items)
        if done >= count:
            log(f"  burst settled (status of all {count}) {time.monotonic() - started:.1f}s after its children")
            time.sleep(5)
            return
        time.sleep(1)
    log(f"  burst not settled after {timeout}s")


def requests_total(api: client.ApiClient) -> float:
    method, url, headers, body, post = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers)
    response.read()
    text = response.data.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_request_total{"))


def request_rate(api: client.ApiClient, seconds: float) -> float:
    first = requests_total(api)
    time.sleep(seconds)
    return (requests_total(api) - first) * 60.0 / seconds


def write_png(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (title, data) in zip(axes, (("burst", result["burst"]), ("steady", result["steady"]))):
        lat = sorted(data.get("latencies") or [])
        ax.plot(lat, [i / max(1, len(lat)) for i in range(len(lat))])
        ax.set_title(f"{title}: created -> children exist (n={len(lat)})")
        ax.set_xlabel("seconds")
        ax.set_ylabel("fraction of deployments")
        ax.grid(alpha=0.3)
    b = result["burst"]
    axes[0].axvline(b["bare_client_s"], color="grey", ls="--", label=f"bare client, all: {b['bare_client_s']:.1f}s")
    axes[0].axvline(b["operator_s"], color="red", ls="--", label=f"operator, all: {b['operator_s']:.1f}s")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--steady-rate", type=float, default=10)
    parser.add_argument("--steady-seconds", type=float, default=60)
    parser.add_argument("--idle-seconds", type=float, default=60, help="each of the two idle windows")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--png", type=Path, help="also plot the latency distributions here")
    args = parser.parse_args()

    info, _ = lifecycle.up(lifecycle.UpOptions(dir=resolve_dir(None)), progress=log)
    api = load_api_client(str(info.kubeconfig))
    install_crd(api)
    caps = Kube(api).discover_capabilities()
    burst_ns, steady_ns = (f"bench-{kind}-{uuid.uuid4().hex[:6]}" for kind in ("burst", "steady"))
    for ns in (burst_ns, steady_ns):
        client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})

    log(f"bare client: {args.burst} LLMDeployments and their children ...")
    bare = bare_client_run(api, args.burst, caps)
    log(f"  bare client: {bare:.2f}s")

    oplog = Path(tempfile.mkdtemp(prefix="bench-operator-")) / "operator.log"
    operator = start_operator(str(info.kubeconfig), oplog, extra_args=("-n", burst_ns, "-n", steady_ns))
    try:
        log(f"burst of {args.burst} LLMDeployments ...")
        cpu_before = cpu_seconds(operator.process.pid)
        burst = operator_burst(api, burst_ns, args.burst, caps.pdb_api_version, args.timeout)
        log(f"  operator: {burst['operator_s']}s for all; p50 {burst['p50_s']}s p99 {burst['p99_s']}s; "
            f"operator CPU {cpu_seconds(operator.process.pid) - cpu_before:.1f}s")
        rss_at_burst = rss_mib(operator.process.pid)
        settle(api, burst_ns, args.burst)
        log(f"steady: {args.steady_rate}/s for {args.steady_seconds}s ...")
        stead = steady(api, steady_ns, args.steady_rate, args.steady_seconds, caps.pdb_api_version)
        log(f"  steady: p50 {stead['p50_s']}s p99 {stead['p99_s']}s")
        rss = rss_mib(operator.process.pid)
        log(f"  RSS {rss_at_burst:.1f} MiB with {args.burst} LLMDeployments, {rss:.1f} MiB with "
            f"{args.burst + stead['n']}")
        log(f"idle: {args.idle_seconds}s with the operator running, then {args.idle_seconds}s stopped ...")
        time.sleep(5)  # the last creations settle
        with_operator = request_rate(api, args.idle_seconds)
    finally:
        operator.stop()
    without = request_rate(api, args.idle_seconds)
    for ns in (burst_ns, steady_ns):
        delete_namespace(api, ns)

    result = {
        "burst": {"n": args.burst, "operator_s": burst["operator_s"], "bare_client_s": round(bare, 3),
                  "p50_s": burst["p50_s"], "p99_s": burst["p99_s"]},
        "steady": {"rate_per_s": args.steady_rate, "p99_s": stead["p99_s"]},
        "rss_mib": round(rss_at_burst, 1),  # the target is stated at N (the burst's count)
        "idle_requests_per_min": round(max(0.0, with_operator - without), 1),
    }
    detail = (f"burst {args.burst}: operator {result['burst']['operator_s']}s vs bare client {result['burst']['bare_client_s']}s "
              f"(ratio {result['burst']['operator_s'] / bare:.2f}, target <= 1.5); p50 {burst['p50_s']}s p99 {burst['p99_s']}s; "
              f"steady {args.steady_rate}/s p99 {stead['p99_s']}s (target < 0.5); RSS {result['rss_mib']} MiB (target < 150); "
              f"idle {result['idle_requests_per_min']} requests/min ({with_operator:.0f} with, {without:.0f} without)")
    if args.json:
        log(detail)
        print(json.dumps(result), flush=True)
    else:
        print(detail, flush=True)
    if args.png:  # after the figures are out: a plotting problem must not lose a 5-minute run
        write_png({**result, "burst": {**result["burst"], "latencies": burst["latencies"]},
                   "steady": {**result["steady"], "latencies": stead["latencies"]}}, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
