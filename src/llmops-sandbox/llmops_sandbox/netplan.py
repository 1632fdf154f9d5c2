"""Addresses of a real-node sandbox, all derived from its one pod range (pure).

The sandbox's range (LLMOPS_SANDBOX_POD_CIDR, e.g. 10.243.0.0/16) is cut into:
  - the first /24: the node network on the sandbox bridge (host = .1, nodes from .10);
  - the last 1/16: the Service range (kube-apiserver --service-cluster-ip-range), whose
    .1 is the `kubernetes` Service and .10 the cluster DNS;
  - the /24s between: one pod range per node (its CNI bridge's subnet).
So two sandboxes with different ranges never share a node IP, a pod IP or a ClusterIP."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

NODE_IP_OFFSET = 10       # node i is <node network>.(10 + i)
NODE_NET_PREFIX = 24
POD_NET_PREFIX = 24
MIN_RANGE_PREFIX = 16     # a /16 gives 239 node ranges and a /20 of Services
DNS_OFFSET = 10


class NetPlanError(ValueError):
    pass


@dataclass(frozen=True)
class NodeNet:
    index: int
    name: str
    ip: str                 # on the sandbox bridge
    pod_cidr: str           # this node's pods (its CNI bridge subnet)
    pod_gateway: str        # the CNI bridge's address inside the node
    netns: str              # /run/netns/<netns>
    host_veth: str          # the node's link on the sandbox bridge, host side


@dataclass(frozen=True)
class NetPlan:
    bridge: str
    cidr: str
    gateway: str            # the host's address on the bridge: API server, Prometheus, DNS
    node_prefixlen: int
    service_cidr: str
    kubernetes_service_ip: str
    dns_ip: str
    nodes: tuple[NodeNet, ...]

    def node(self, name: str) -> NodeNet:
        return next(n for n in self.nodes if n.name == name)


def max_nodes(cidr: str) -> int:
    net = ipaddress.ip_network(cidr)
    return (2 ** (POD_NET_PREFIX - net.prefixlen)) * 15 // 16 - 1


def plan(bridge: str, cidr: str, node_names: list[str], pod_cidrs: dict[str, str] | None = None) -> NetPlan:
    """pod_cidrs: ranges the node file gives some nodes (podCIDR); the others get the next free /24."""
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise NetPlanError(f"pod range {cidr!r}: {exc}; fix: give a range such as 10.243.0.0/16") from None
    if net.version != 4 or net.prefixlen > MIN_RANGE_PREFIX:
        raise NetPlanError(f"pod range {cidr}: real nodes need an IPv4 range of /{MIN_RANGE_PREFIX} or larger "
                           "(node network, one /24 per node, Services); fix: e.g. 10.243.0.0/16")
    if len(node_names) > max_nodes(cidr):
        raise NetPlanError(f"nodes: {len(node_names)} nodes do not fit in {cidr} (at most {max_nodes(cidr)}); "
                           "fix: fewer nodes or a larger range")
    subnets = list(net.subnets(new_prefix=POD_NET_PREFIX))
    node_net = subnets[0]
    service = list(net.subnets(new_prefix=net.prefixlen + 4))[-1]
    explicit = {name: ipaddress.ip_network(r) for name, r in (pod_cidrs or {}).items()}
    for name, r in explicit.items():
        if not r.subnet_of(net) or r.overlaps(node_net) or r.overlaps(service):
            raise NetPlanError(f"nodes: {name}.podCIDR {r} must lie inside {cidr}, outside the node network "
                               f"{node_net} and the Service range {service}; fix: e.g. {subnets[-17]}")
    free = (s for s in subnets[1:] if not s.overlaps(service) and not any(s.overlaps(r) for r in explicit.values()))
    nodes = []
    for i, name in enumerate(node_names):
        pods = explicit.get(name) or next(free, None)
        if pods is None:
            raise NetPlanError(f"nodes: no free /{POD_NET_PREFIX} left in {cidr} for {name}; fix: fewer nodes")
        nodes.append(NodeNet(
            index=i, name=name, ip=str(node_net.network_address + NODE_IP_OFFSET + i), pod_cidr=str(pods),
            pod_gateway=str(pods.network_address + 1), netns=f"{bridge}-node-{i}",
            host_veth=f"{bridge}n{i}"[:15],
        ))
    return NetPlan(
        bridge=bridge, cidr=str(net), gateway=str(node_net.network_address + 1), node_prefixlen=NODE_NET_PREFIX,
        service_cidr=str(service), kubernetes_service_ip=str(service.network_address + 1),
        dns_ip=str(service.network_address + DNS_OFFSET), nodes=tuple(nodes),
    )
