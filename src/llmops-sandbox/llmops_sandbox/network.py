"""Host networking for sandbox pods: one bridge, one network namespace per pod, veth pairs.
Needs root (CAP_NET_ADMIN). Everything is named from the bridge name so two sandboxes
(different --dir and --bridge) never touch each other's namespaces."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def netns_name(bridge: str, pod_uid: str) -> str:
    return f"{bridge}-{pod_uid}"


def host_veth_name(pod_uid: str) -> str:
    return "vl" + pod_uid.replace("-", "")[:12]  # interface names are at most 15 chars


def link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def ensure_bridge(bridge: str, gateway_ip: str, prefixlen: int) -> None:
    if not link_exists(bridge):
        _ip("link", "add", "name", bridge, "type", "bridge")
    addrs = _ip("-o", "addr", "show", "dev", bridge).stdout
    if f" {gateway_ip}/{prefixlen} " not in addrs:
        _ip("addr", "add", f"{gateway_ip}/{prefixlen}", "dev", bridge)
    _ip("link", "set", bridge, "up")


def delete_bridge(bridge: str) -> bool:
    if link_exists(bridge):
        _ip("link", "del", bridge)
        return True
    return False


def list_netns(prefix: str) -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]


def netns_pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


@dataclass(frozen=True)
class PodNetwork:
    netns: str
    ip: str
    prefixlen: int
    gateway: str
    host_veth: str


def create_pod_network(bridge: str, pod_uid: str, ip: str, prefixlen: int, gateway: str) -> PodNetwork:
    ns = netns_name(bridge, pod_uid)
    veth = host_veth_name(pod_uid)
    delete_pod_network(ns)  # leftovers of a crashed agent
    _ip("link", "del", veth, check=False)
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", veth, "master", bridge, "up")
        _ip("-n", ns, "addr", "add", f"{ip}/{prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "route", "add", "default", "via", gateway)
    except NetworkError:
        delete_pod_network(ns)
        raise
    return PodNetwork(netns=ns, ip=ip, prefixlen=prefixlen, gateway=gateway, host_veth=veth)


def delete_pod_network(ns: str) -> None:
    """Deleting the namespace also deletes its end of the veth pair, hence both ends."""
    _ip("netns", "del", ns, check=False)
