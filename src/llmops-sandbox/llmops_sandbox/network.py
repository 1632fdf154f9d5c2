"""Host networking of the sandbox: its bridge (the node network) and the nodes' network
namespaces. Needs root (CAP_NET_ADMIN). Everything is named from the bridge name so two
sandboxes (different --dir and --bridge) never touch each other's namespaces."""

from __future__ import annotations

import subprocess


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


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


def delete_netns(name: str) -> None:
    """Deleting a namespace also deletes its end of a veth pair, hence both ends."""
    _ip("netns", "del", name, check=False)
