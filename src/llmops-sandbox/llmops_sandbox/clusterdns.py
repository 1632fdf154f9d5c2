"""Cluster DNS for real sandbox nodes: Debian's dnsmasq, fed from Services.

CoreDNS is not packaged in the registries these machines reach. dnsmasq is (dnsmasq-base),
serves A records from a hosts directory it re-reads on change (--hostsdir, inotify), and
answers authoritatively for cluster.local, so the kubelet's usual resolv.conf
(nameserver <dns ClusterIP>, search <ns>.svc.cluster.local svc.cluster.local cluster.local,
ndots:5) works unchanged. The records are what CoreDNS's kubernetes plugin serves for the
cases pods use: <svc>.<ns>.svc.cluster.local -> ClusterIP; a headless Service -> its ready
endpoints; <hostname>.<subdomain>.<ns>.svc.cluster.local -> the pod IP (StatefulSet and
group members). dnsmasq runs on the host at the bridge address; the `kube-dns` Service
(clusterIP = the DNS IP the kubelets announce) has a manual Endpoints object pointing
there, so queries go through kube-proxy like any other Service traffic.

Pure record building here; nodeservices.py feeds it, lifecycle.py starts dnsmasq."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

DOMAIN = "cluster.local"
HOSTS_FILE = "cluster.hosts"


def service_records(services: Iterable[dict], endpoints: Iterable[dict], pods: Iterable[dict]) -> list[tuple[str, str]]:
    """(ip, name) pairs, sorted, from the raw JSON of Services, Endpoints and Pods."""
    records: set[tuple[str, str]] = set()
    eps = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec") or {}
        name = f"{meta['name']}.{meta['namespace']}.svc.{DOMAIN}"
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            records.add((cluster_ip, name))
        elif cluster_ip == "None":
            for subset in (eps.get((meta["namespace"], meta["name"])) or {}).get("subsets") or ():
                for addr in subset.get("addresses") or ():
                    records.add((addr["ip"], name))
                    if addr.get("hostname"):
                        records.add((addr["ip"], f"{addr['hostname']}.{name}"))
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        if spec.get("hostname") and spec.get("subdomain") and status.get("podIP"):
            records.add((status["podIP"], f"{spec['hostname']}.{spec['subdomain']}.{meta['namespace']}.svc.{DOMAIN}"))
    return sorted(records, key=lambda r: (r[1], r[0]))


def hosts_text(records: list[tuple[str, str]]) -> str:
    return "".join(f"{ip} {name}\n" for ip, name in records)


def write_hosts(hosts_dir: Path, text: str) -> None:
    hosts_dir.mkdir(parents=True, exist_ok=True)
    tmp = hosts_dir / f".{HOSTS_FILE}.tmp"
    tmp.write_text(text)
    tmp.replace(hosts_dir / HOSTS_FILE)


def dnsmasq_argv(listen_ip: str, hosts_dir: Path, port: int = 53) -> list[str]:
    return [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--user=root",
        f"--listen-address={listen_ip}", "--bind-interfaces", f"--port={port}",
        "--no-resolv", "--no-hosts", f"--hostsdir={hosts_dir}",
        f"--local=/{DOMAIN}/",          # authoritative: unknown cluster names are NXDOMAIN at once
        "--no-negcache", "--log-facility=-", "--pid-file=",
    ]


def dns_service(dns_ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "llmops.io/sandbox": "true"}},
            "spec": {"clusterIP": dns_ip, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}


def dns_endpoints(host_ip: str) -> dict:
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kube-dns", "namespace": "kube-system"},
            "subsets": [{"addresses": [{"ip": host_ip}],
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}]}
