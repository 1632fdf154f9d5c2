"""The sandbox's add-ons: what a kind cluster gets from add-ons and addon images, not from
its kubelets (the nodes themselves are real kubelets, see realnodes.py).

- GPU device plugins, one per GPU node (deviceplugin.py, the kubelet's gRPC API);
- Prometheus service discovery: Debian's prometheus is built without Kubernetes SD, so the
  scrape targets of annotated pods go to a file_sd file;
- Prometheus for pods: it listens on loopback; pods reach it at the bridge gateway;
- cluster DNS records for dnsmasq (clusterdns.py), from Services, Endpoints and Pods;
- the nodes' registry mirror (registry.py), so pulls of the local images succeed.

Run as `python -m llmops_sandbox.nodeservices --dir STATE_DIR`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from . import clusterdns
from .registry import start_registry
from .deviceplugin import NodePlugin, load_api, run_plugins
from .forward import start_forwarder
from .kubeapi import ClusterLister, api_client
from .nodes import parse_nodes
from .prometheus import TARGETS_FILE, scrape_targets, write_targets
from .realnode_config import NodePaths
from .state import StateDir

log = logging.getLogger("llmops_sandbox.nodeservices")
SD_PERIOD = 1.0


def discovery_loop(kube: ClusterLister, targets_file: Path, hosts_dir: Path, stopping: threading.Event) -> None:
    """Scrape targets for Prometheus and DNS records for dnsmasq, from one listing a second."""
    last_targets, last_hosts = None, None
    while not stopping.is_set():
        try:
            pods = kube.pods()
            targets = scrape_targets(pods)
            if targets != last_targets:
                write_targets(targets_file, targets)
                last_targets = targets
            records = clusterdns.service_records(kube.services(), kube.endpoints(), pods)
            hosts = clusterdns.hosts_text(records)
            if hosts != last_hosts:
                clusterdns.write_hosts(hosts_dir, hosts)
                last_hosts = hosts
        except Exception as exc:  # noqa: BLE001 - the API server may restart; keep trying
            log.warning("listing pods/services for scrape targets and DNS failed: %s", exc)
        stopping.wait(SD_PERIOD)


def dns_hosts_dir(state: StateDir) -> Path:
    return state.root / "dns"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops-sandbox-nodeservices")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    state = StateDir(Path(args.dir))
    info = state.read_info()
    if info is None:
        raise SystemExit(f"no sandbox.json in {state.root}")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    specs = parse_nodes(Path(info.nodes_file).read_text())
    api = load_api(Path(info.bin_dir))
    plugins = [NodePlugin(s.name, s.gpu.count, NodePaths(state.root / "nodes" / s.name).device_plugin_dir, api,
                          s.gpu.product)
               for s in specs if s.gpu]
    threading.Thread(target=run_plugins, args=(plugins, stopping), name="device-plugins", daemon=True).start()
    images = state.root / "images.json"
    if images.exists() and info.ports.get("registry"):
        start_registry(info.gateway_ip, info.ports["registry"], [Path(p) for p in json.loads(images.read_text())])
    prom_port = info.ports.get("prometheus")
    if prom_port:
        start_forwarder((info.gateway_ip, prom_port), ("127.0.0.1", prom_port))
    kube = ClusterLister(api_client(info.kubeconfig, pool_size=4))
    targets = state.prometheus / TARGETS_FILE
    state.prometheus.mkdir(parents=True, exist_ok=True)
    threading.Thread(target=discovery_loop, args=(kube, targets, dns_hosts_dir(state), stopping),
                     name="discovery", daemon=True).start()
    log.info("node services running: %d device plugins", len(plugins))
    while not stopping.wait(1.0):
        pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
