"""Sandbox figures: start time to all nodes Ready (cached binaries), and time for N pods to be Ready.

Runs its own sandbox (own dir, bridge llmopsb0, pods 10.246.0.0/16) and takes it down after.
Usage: python tests/benchmarks/bench_sandbox.py [--pods 100]   (as root)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from llmops_sandbox import lifecycle
from llmops.waiting import wait_for


def ready_count(core: client.CoreV1Api, namespace: str) -> int:
    data = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)
    return sum(1 for p in data["items"] for c in p.get("status", {}).get("conditions") or ()
               if c["type"] == "Ready" and c["status"] == "True")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--no-prometheus", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="llmops-bench-")) / "sandbox"
    opts = lifecycle.UpOptions(dir=root, bridge="llmopsb0", pod_cidr="10.246.0.0/16",
                               prometheus=not args.no_prometheus, build=False)
    t0 = time.monotonic()
    info, _ = lifecycle.up(opts, progress=lambda m: print("  " + m, file=sys.stderr))
    start_seconds = time.monotonic() - t0
    print(f"sandbox up -> all nodes Ready: {start_seconds:.1f} s")
    try:
        api = config.new_client_from_config(config_file=info.kubeconfig)
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        wait_for(lambda: core.read_namespaced_service_account("default", "default").secrets, 30,
                 "default service account token missing")
        apps.create_namespaced_deployment("default", {
            "metadata": {"name": "bench"},
            "spec": {"replicas": args.pods, "selector": {"matchLabels": {"app": "bench"}},
                     "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {
                         "terminationGracePeriodSeconds": 2,
                         "containers": [{"name": "web", "image": "llmops/test-http:1", "args": ["--port", "8080"],
                                         "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                                            "periodSeconds": 1}}]}}}})
        t1 = time.monotonic()
        last = -1
        while True:
            n = ready_count(core, "default")
            if n != last:
                print(f"  {time.monotonic() - t1:5.1f}s {n}/{args.pods} Ready", file=sys.stderr)
                last = n
            if n >= args.pods:
                break
            if time.monotonic() - t1 > 600:
                raise TimeoutError(f"only {n}/{args.pods} pods Ready after 600 s")
            time.sleep(0.5)
        pods_seconds = time.monotonic() - t1
        print(f"{args.pods} pods (Deployment) -> all Ready: {pods_seconds:.1f} s")
        api.close()
    finally:
        t2 = time.monotonic()
        lifecycle.down(root, progress=lambda m: None)
        root.parent.rmdir()
        print(f"sandbox down with {args.pods} pods: {time.monotonic() - t2:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
