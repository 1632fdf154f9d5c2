"""The sandbox state directory: where every file of one sandbox lives.

Layout (all under one directory, default /tmp/llmops-sandbox):
  sandbox.json          what others read: kubeconfig path, API server and Prometheus URLs
  kubeconfig            admin kubeconfig (token auth, CA pinned)
  pki/                  CA, API server serving cert, service-account keys, token file
  etcd-data/            etcd's data
  pids/<name>.pid       one per daemon ("<pid> <start-time-ticks>")
  logs/<name>.log       one per daemon
  nodes/<name>/         one real node: its rootfs (hostPath, the node's "disk"), containerd
                        root and state, kubelet and CNI files (realnode_config.NodePaths)
  dns/                  the records dnsmasq serves (cluster DNS)
  prometheus/           prometheus.yml and its TSDB
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_DIR = "/tmp/llmops-sandbox"
STATE_FILE = "sandbox.json"
STATE_FORMAT_VERSION = 1


def resolve_dir(explicit: str | None = None) -> Path:
    """--dir wins, then LLMOPS_SANDBOX_DIR, then the default."""
    return Path(explicit or os.environ.get("LLMOPS_SANDBOX_DIR") or DEFAULT_DIR).absolute()


@dataclass
class SandboxInfo:
    """Contents of sandbox.json: the contract other tools read."""

    dir: str
    kubeconfig: str
    apiserver_url: str            # from the host: https://127.0.0.1:<port>
    apiserver_pod_host: str       # from pod network namespaces (the bridge gateway IP)
    apiserver_port: int
    ca_file: str
    token_file: str               # admin bearer token (system:masters)
    prometheus_url: str | None     # from the host (loopback)
    bridge: str
    pod_cidr: str
    gateway_ip: str
    ports: dict[str, int] = field(default_factory=dict)
    nodes_file: str = ""
    bin_dir: str = ""
    prometheus_pod_url: str | None = None   # from pods: the gateway IP, forwarded by nodeservices
    service_cidr: str = ""
    dns_ip: str = ""                        # cluster DNS (real nodes)
    version: int = STATE_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "SandboxInfo":
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class StateDir:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def info_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    def node_root(self, node: str) -> Path:
        """A node's own filesystem root (its mount namespace's /): where its hostPath volumes
        live, so nodes do not share what one of them wrote (the host's / stays untouched)."""
        return self.root / "nodes" / node / "rootfs"

    def pid_file(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def create(self) -> None:
        for sub in ("pids", "logs", "pki", "etcd-data", "prometheus"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.pki, 0o700)

    def read_info(self) -> SandboxInfo | None:
        try:
            return SandboxInfo.from_json(self.info_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def write_info(self, info: SandboxInfo) -> None:
        tmp = self.info_file.with_suffix(".tmp")
        tmp.write_text(info.to_json())
        tmp.replace(self.info_file)
