"""The sandbox's node file (declarative: GPUs, zones, edge sites) and the labels and taints each
real node gets from it (pure)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from importlib import resources

import yaml

EDGE_LABEL = "llmops.io/edge"
EDGE_ROLE_LABEL = "node-role.kubernetes.io/edge"
EDGE_TAINT = {"key": EDGE_LABEL, "value": "true", "effect": "NoSchedule"}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")


class NodeFileError(ValueError):
    pass


@dataclass(frozen=True)
class GpuSpec:
    product: str
    count: int
    memory_mib: int


@dataclass(frozen=True)
class NodeSpec:
    name: str
    zone: str
    region: str
    cpu: str
    memory: str
    pods: int
    gpu: GpuSpec | None = None
    edge: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    pod_cidr: str | None = None      # real nodes: this node's pod range (default: derived)


def default_nodes_text() -> str:
    return resources.files("llmops_sandbox").joinpath("nodes.yaml").read_text()


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise NodeFileError(f"{where}: {msg}")


def parse_nodes(text: str) -> list[NodeSpec]:
    """Parse a node file into NodeSpecs, with errors naming the offending field."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise NodeFileError(f"not valid YAML: {exc}") from exc
    _require(isinstance(doc, dict), "node file", "must be a mapping with a `nodes` list")
    defaults = doc.get("defaults") or {}
    entries = doc.get("nodes")
    _require(isinstance(entries, list) and entries, "nodes", "must be a non-empty list")
    specs: list[NodeSpec] = []
    for i, raw in enumerate(entries):
        where = f"nodes[{i}]"
        _require(isinstance(raw, dict), where, "must be a mapping")
        entry = {**defaults, **raw}
        name = entry.get("name")
        _require(isinstance(name, str) and bool(_NAME_RE.match(name or "")), f"{where}.name",
                 "must be a DNS label (lowercase letters, digits, '-')")
        for key in ("cpu", "memory"):
            _require(bool(_QUANTITY_RE.match(str(entry.get(key, "")))), f"{where}.{key}",
                     f"must be a Kubernetes quantity, got {entry.get(key)!r}")
        gpu = None
        if entry.get("gpu"):
            g = entry["gpu"]
            _require(isinstance(g, dict) and isinstance(g.get("product"), str), f"{where}.gpu.product",
                     "must be a string such as NVIDIA-A100-SXM4-80GB")
            _require(isinstance(g.get("count"), int) and g["count"] > 0, f"{where}.gpu.count",
                     "must be a positive integer")
            _require(isinstance(g.get("memoryMiB"), int) and g["memoryMiB"] > 0,
                     f"{where}.gpu.memoryMiB", "must be a positive integer (MiB per GPU)")
            from llmops.planner.gpus import known_gpu_products, lookup_gpu
            _require(lookup_gpu(g["product"]) is not None, f"{where}.gpu.product",
                     f"unknown GPU product {g['product']!r}; fix: one of the node labels GPU feature discovery "
                     f"gives, e.g. {', '.join(known_gpu_products()[:4])} (`llmops plan --list` shows all)")
            gpu = GpuSpec(product=g["product"], count=g["count"], memory_mib=g["memoryMiB"])
        count = entry.get("count")
        _require(count is None or (isinstance(count, int) and count > 0), f"{where}.count",
                 f"must be a positive integer, got {count!r}")
        names = [name] if count is None else [f"{name}-{n}" for n in range(int(count))]
        pod_cidr = entry.get("podCIDR")
        if pod_cidr is not None:
            _require(count is None, f"{where}.podCIDR", "names one node's range; fix: drop `count` or `podCIDR`")
            try:
                pod_cidr = str(ipaddress.ip_network(str(pod_cidr)))
            except ValueError as exc:
                raise NodeFileError(f"{where}.podCIDR: {exc}; fix: a range such as 10.243.7.0/24") from None
        taints = tuple(dict(t) for t in entry.get("taints") or ())
        for t in taints:
            _require(t.get("effect") in ("NoSchedule", "PreferNoSchedule", "NoExecute") and "key" in t,
                     f"{where}.taints", "each taint needs key and effect NoSchedule|PreferNoSchedule|NoExecute")
        for node_name in names:
            specs.append(NodeSpec(
                name=node_name,
                zone=str(entry.get("zone") or f"{entry.get('region', 'sandbox')}-a"),
                region=str(entry.get("region") or "sandbox"),
                cpu=str(entry["cpu"]),
                memory=str(entry["memory"]),
                pods=int(entry.get("pods", 110)),
                gpu=gpu,
                edge=bool(entry.get("edge", False)),
                labels={str(k): str(v) for k, v in (entry.get("labels") or {}).items()},
                taints=taints,
                pod_cidr=pod_cidr,
            ))
    seen: set[str] = set()
    for s in specs:
        _require(s.name not in seen, "nodes", f"duplicate node name {s.name!r}; fix: rename one "
                 "(an entry with `count` names its nodes <name>-0, <name>-1, ...)")
        seen.add(s.name)
    ranged = [s for s in specs if s.pod_cidr]
    for i, a in enumerate(ranged):
        for b in ranged[i + 1:]:
            _require(not ipaddress.ip_network(a.pod_cidr).overlaps(ipaddress.ip_network(b.pod_cidr)),
                     "nodes", f"pod ranges overlap: {a.name} {a.pod_cidr} and {b.name} {b.pod_cidr}; "
                     "fix: give each node its own podCIDR (or leave podCIDR out to have one derived)")
    return specs


def node_labels(spec: NodeSpec) -> dict[str, str]:
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/os": "linux",
        "kubernetes.io/hostname": spec.name,
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "topology.kubernetes.io/zone": spec.zone,
        "topology.kubernetes.io/region": spec.region,
        "llmops.io/sandbox": "true",
    }
    if spec.gpu:
        labels.update({
            "nvidia.com/gpu.product": spec.gpu.product,
            "nvidia.com/gpu.memory": str(spec.gpu.memory_mib),
            "nvidia.com/gpu.count": str(spec.gpu.count),
            "nvidia.com/gpu.present": "true",
        })
    if spec.edge:
        labels[EDGE_LABEL] = "true"
        labels[EDGE_ROLE_LABEL] = ""
    labels.update(spec.labels)
    return labels


def node_taints(spec: NodeSpec) -> list[dict[str, str]]:
    taints = [dict(t) for t in spec.taints]
    if spec.edge and not any(t.get("key") == EDGE_LABEL for t in taints):
        taints.append(dict(EDGE_TAINT))
    return taints
