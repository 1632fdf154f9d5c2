"""Command lines and kubeconfig for etcd and the Kubernetes control plane (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    prometheus: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ControlPlaneFiles:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    token_file: Path
    kubeconfig: Path
    etcd_data: Path
    cert_dir: Path


def etcd_argv(etcd: Path, ports: Ports, files: ControlPlaneFiles) -> list[str]:
    return [
        str(etcd),
        "--name=sandbox",
        f"--data-dir={files.etcd_data}",
        f"--listen-client-urls=http://127.0.0.1:{ports.etcd_client}",
        f"--advertise-client-urls=http://127.0.0.1:{ports.etcd_client}",
        f"--listen-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ports.etcd_peer}",
        f"--initial-cluster=sandbox=http://127.0.0.1:{ports.etcd_peer}",
        "--unsafe-no-fsync",          # a throwaway cluster; fsync would dominate start time
        "--log-level=warn",
    ]


def apiserver_argv(apiserver: Path, ports: Ports, files: ControlPlaneFiles, gateway_ip: str,
                   minor: int = 20, service_cidr: str = SERVICE_CIDR) -> list[str]:
    argv = [
        str(apiserver),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        # 0.0.0.0 so pods (in their own network namespaces) reach it via the bridge gateway.
        "--bind-address=0.0.0.0",
        f"--advertise-address={gateway_ip}",
        f"--secure-port={ports.apiserver}",
        "--insecure-port=0",
        f"--cert-dir={files.cert_dir}",
        f"--tls-cert-file={files.serving_cert}",
        f"--tls-private-key-file={files.serving_key}",
        f"--client-ca-file={files.ca_cert}",
        f"--token-auth-file={files.token_file}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={service_cidr}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-signing-key-file={files.sa_key}",
        f"--service-account-key-file={files.sa_pub}",
        f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
        # Webhooks served from pods are called at endpoint IPs: no kube-proxy or DNS here.
        "--enable-aggregator-routing=true",
        "--allow-privileged=true",
        # Logs and exec go to the kubelet at the node's InternalIP; node names are not in DNS.
        "--kubelet-preferred-address-types=InternalIP",
        "--max-requests-inflight=800",
        "--max-mutating-requests-inflight=400",
        "--event-ttl=1h",
        "--v=1",
    ]
    return _without_removed_flags(argv, minor)


# Insecure-port flags were removed from newer releases (their insecure serving was off by then).
_REMOVED_FLAGS = {"--insecure-port=0": 24, "--port=0": 23}


def _without_removed_flags(argv: list[str], minor: int) -> list[str]:
    return [a for a in argv if not (a in _REMOVED_FLAGS and minor >= _REMOVED_FLAGS[a])]


def controller_manager_argv(binary: Path, ports: Ports, files: ControlPlaneFiles, minor: int = 20,
                            service_cidr: str = SERVICE_CIDR) -> list[str]:
    return _without_removed_flags([
        str(binary),
        f"--kubeconfig={files.kubeconfig}",
        "--controllers=*,-nodeipam",
        f"--service-account-private-key-file={files.sa_key}",
        f"--root-ca-file={files.ca_cert}",
        f"--cluster-signing-cert-file={files.ca_cert}",
        f"--cluster-signing-key-file={files.ca_key}",
        f"--service-cluster-ip-range={service_cidr}",
        "--leader-elect=false",
        "--port=0",
        f"--secure-port={ports.controller_manager}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={files.cert_dir / 'controller-manager'}",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--concurrent-deployment-syncs=10",
        "--concurrent-replicaset-syncs=10",
        "--concurrent-endpoint-syncs=10",
        "--v=1",
    ], minor)


def scheduler_argv(binary: Path, ports: Ports, files: ControlPlaneFiles, minor: int = 20) -> list[str]:
    return _without_removed_flags([
        str(binary),
        f"--kubeconfig={files.kubeconfig}",
        "--leader-elect=false",
        "--port=0",
        f"--secure-port={ports.scheduler}",
        "--bind-address=127.0.0.1",
        f"--cert-dir={files.cert_dir / 'scheduler'}",
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--v=1",
    ], minor)


def kubeconfig_yaml(server: str, ca_cert: Path, token: str, name: str = "llmops-sandbox") -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)
