"""The node agent: one daemon playing the kubelet for every simulated node.

Registers the nodes, keeps them Ready (status heartbeats + Leases), watches pods bound to
them and hands each to a PodWorker. On SIGTERM it stops every pod's processes and removes
their network namespaces. Run as `python -m llmops_sandbox.agent --dir STATE_DIR`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from kubernetes.client.rest import ApiException

from . import network, processes
from .images import parse_images
from .ipam import IpAllocator
from .kubeapi import NodeApi, api_client, now_iso
from .forward import start_forwarder
from .kubelet_api import start_kubelet_api, write_serving_cert
from .nodes import node_labels, node_object, node_status, parse_nodes
from .podrunner import PodWorker, WorkerContext
from .prometheus import TARGETS_FILE, scrape_targets, write_targets
from .state import StateDir

log = logging.getLogger("llmops_sandbox.agent")

HEARTBEAT_SECONDS = 10.0


class Agent:
    def __init__(self, state: StateDir):
        self.state = state
        info = state.read_info()
        if info is None:
            raise SystemExit(f"no sandbox.json in {state.root}")
        self.info = info
        self.nodes = parse_nodes(Path(info.nodes_file).read_text())
        self.node_names = {n.name for n in self.nodes}
        self.node_labels = {n.name: node_labels(n) for n in self.nodes}
        self.image_rules = parse_images(Path(info.images_file).read_text())
        self.python = sys.executable
        self.kube = NodeApi(api_client(info.kubeconfig, pool_size=64))
        self.allocator = IpAllocator(info.pod_cidr, info.gateway_ip)
        self.prefixlen = self.allocator.prefixlen
        self.lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()
        self.started_iso = now_iso()
        self.scrape_pods: dict[str, dict] = {}   # uid -> pod, for Prometheus' file_sd targets
        self.last_targets: list[dict] | None = None
        self.kubelet_port = 0
        self.worker_context = WorkerContext(
            kube=self.kube, info=info, state=state, prefixlen=self.prefixlen, node_labels=self.node_labels,
            image_rules=self.image_rules, python=self.python, allocate_ip=self.allocate_ip,
            release_ip=self.release_ip, worker_done=self.worker_done)

    # --- IPs (shared by pod threads)
    def allocate_ip(self, uid: str) -> str:
        with self.lock:
            return self.allocator.allocate(uid)

    def release_ip(self, uid: str) -> None:
        with self.lock:
            self.allocator.release(uid)

    def worker_done(self, uid: str, worker: PodWorker) -> None:
        with self.lock:
            if self.workers.get(uid) is worker:
                del self.workers[uid]

    # --- nodes
    def register_nodes(self) -> None:
        for spec in self.nodes:
            self.kube.upsert_node(node_object(spec))
        self.heartbeat()

    def heartbeat(self) -> None:
        now = now_iso()
        for spec in self.nodes:
            try:
                self.kube.patch_node_status(
                    spec.name, node_status(spec, self.info.gateway_ip, now, self.started_iso, self.kubelet_port))
                self.kube.renew_lease(spec.name)
            except ApiException as exc:
                if exc.status == 404:   # someone deleted the Node: register it again, as a kubelet does
                    self.kube.upsert_node(node_object(spec))
                else:
                    log.warning("heartbeat for %s failed: %s %s", spec.name, exc.status, exc.reason)
            except Exception as exc:  # noqa: BLE001 - keep beating through API hiccups
                log.warning("heartbeat for %s failed: %s", spec.name, exc)

    def heartbeat_loop(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            self.heartbeat()

    # --- pods
    def update_scrape_targets(self, event_type: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        annotations = pod["metadata"].get("annotations") or {}
        if event_type == "DELETED" or annotations.get("prometheus.io/scrape") != "true":
            self.scrape_pods.pop(uid, None)
        else:
            self.scrape_pods[uid] = pod
        targets = scrape_targets(self.scrape_pods.values())
        if targets != self.last_targets:
            write_targets(self.state.prometheus / TARGETS_FILE, targets)
            self.last_targets = targets

    def on_pod(self, event_type: str, pod: dict) -> None:
        self.update_scrape_targets(event_type, pod)
        spec = pod.get("spec") or {}
        if spec.get("nodeName") not in self.node_names:
            return
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker:
                worker.stop(2.0)
            return
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            if pod["metadata"].get("deletionTimestamp"):
                self.kube.delete_pod_now(pod["metadata"]["namespace"], pod["metadata"]["name"], uid)
            return
        if self.stopping.is_set():
            return
        worker = PodWorker(self.worker_context, pod)
        with self.lock:
            self.workers[uid] = worker
        worker.start()

    def watch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                pods, rv = self.kube.list_pods()
                seen = {p["metadata"]["uid"] for p in pods}
                self.scrape_pods = {uid: p for uid, p in self.scrape_pods.items() if uid in seen}
                with self.lock:
                    vanished = [w for uid, w in self.workers.items() if uid not in seen]
                for w in vanished:
                    w.stop(2.0)
                for pod in pods:
                    self.on_pod("ADDED", pod)
                while not self.stopping.is_set():
                    for event in self.kube.watch_pods(rv):
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise _Relist(obj.get("message", "watch error"))
                        rv = obj["metadata"].get("resourceVersion", rv)
                        if event["type"] != "BOOKMARK":
                            self.on_pod(event["type"], obj)
            except _Relist as exc:
                log.info("relisting pods: %s", exc)
            except Exception as exc:  # noqa: BLE001 - the API server may restart; keep trying
                if self.stopping.is_set():
                    return
                log.warning("pod watch failed (%s); retrying", exc)
                time.sleep(1.0)

    def cleanup_leftovers(self) -> None:
        """Processes and namespaces of pods from a previous agent run of this sandbox."""
        for pid_file in self.state.pods.glob("*/*.pid"):
            pid = processes.read_pid(pid_file)
            if pid is not None:
                processes.kill_group(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        for ns in network.list_netns(self.info.bridge):
            for pid in network.netns_pids(ns):
                processes.kill_group(pid, signal.SIGKILL)
            network.delete_pod_network(ns)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for w in workers:
            w.stop(2.0)
        for w in workers:
            w.join(timeout=15)
        self.cleanup_leftovers()

    def find_log(self, namespace: str, pod: str, container: str) -> Path | None:
        logs = sorted(self.state.pods.glob(f"{namespace}_{pod}_*/{container}.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1] if logs else None

    def run(self) -> None:
        self.cleanup_leftovers()
        cert, key = write_serving_cert(self.state.pki, self.info.gateway_ip, self.state.pki / "generated")
        self.kubelet_port = start_kubelet_api(self.info.gateway_ip, cert, key, self.find_log, self.stopping)
        prom_port = self.info.ports.get("prometheus")
        if prom_port:   # pods reach the loopback-only Prometheus at the gateway IP, same port
            start_forwarder((self.info.gateway_ip, prom_port), ("127.0.0.1", prom_port))
        self.register_nodes()
        (self.state.root / "agent.ready").write_text(json.dumps({"nodes": sorted(self.node_names)}))
        threading.Thread(target=self.heartbeat_loop, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.watch_loop, name="pod-watch", daemon=True).start()
        log.info("agent running for nodes %s", ", ".join(sorted(self.node_names)))
        while not self.stopping.wait(1.0):
            pass


class _Relist(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops-sandbox-agent")
    parser.add_argument("--dir", required=True, help="sandbox state directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    agent = Agent(StateDir(Path(args.dir)))

    def on_signal(signum, _frame):
        log.info("signal %s: stopping pods", signum)
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    agent.shutdown()
    log.info("agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
