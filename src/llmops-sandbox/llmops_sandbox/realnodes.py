"""Real sandbox nodes, from the host: each node's network namespace on the sandbox bridge,
routes between the nodes' pod ranges, its cgroup, its files, its supervisor (nodeinit.py
running containerd + kubelet + kube-proxy), image import, registration and labels; and
taking all of it down again, with a check that nothing is left."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import cgroups, network, processes
from .deviceplugin import PLUGIN_LINK
from .netplan import NetPlan
from .nodeimages import BuiltImage, ImageError, import_image, imported_names, seed_containerd_root
from .nodes import NodeSpec
from .realnode_config import (
    CONTAINERD_LINK, PRIVATE_DIRS, Machine, NodePaths, cni_conflist, containerd_toml, kube_proxy_argv, kubelet_argv,
    kubelet_config_yaml, labels_patched_later, node_kubeconfig, node_token_lines, resolv_conf_text,
)
from .shortpaths import link_short_dir, short_dir, unlink_short_dir
from .state import StateDir

Progress = Callable[[str], None]
REGISTER_TIMEOUT = 60.0
CRASH_LOOP_EXITS = 3      # a component that exits this often while the node starts will not come up


class RealNodeError(RuntimeError):
    pass


def node_paths(state: StateDir, name: str) -> NodePaths:
    return NodePaths(state.root / "nodes" / name)


def pid_name(node: str) -> str:
    return f"node-{node}"


def make_tokens(specs: list[NodeSpec]) -> dict[str, str]:
    tokens = {s.name: secrets.token_hex(24) for s in specs}
    tokens["kube-proxy"] = secrets.token_hex(24)
    return tokens


def append_tokens(token_file: Path, tokens: dict[str, str]) -> None:
    with open(token_file, "a") as fh:
        fh.write(node_token_lines(tokens))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RealNodeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def create_node_network(plan: NetPlan) -> None:
    for node in plan.nodes:
        _ip("netns", "del", node.netns, check=False)
        _ip("link", "del", node.host_veth, check=False)
        _ip("netns", "add", node.netns)
        _ip("link", "add", node.host_veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
        _ip("link", "set", node.host_veth, "master", plan.bridge, "up")
        _ip("-n", node.netns, "addr", "add", f"{node.ip}/{plan.node_prefixlen}", "dev", "eth0")
        _ip("-n", node.netns, "link", "set", "eth0", "up")
        _ip("-n", node.netns, "link", "set", "lo", "up")
        _ip("-n", node.netns, "route", "add", "default", "via", plan.gateway)
        # The host reaches every pod (Prometheus scrapes, tests) through the pod's node.
        _ip("route", "replace", node.pod_cidr, "via", node.ip, "dev", plan.bridge)
    for node in plan.nodes:
        for other in plan.nodes:
            if other is not node:
                _ip("-n", node.netns, "route", "add", other.pod_cidr, "via", other.ip)


def write_node_files(state: StateDir, plan: NetPlan, spec: NodeSpec, bins: dict[str, Path], server: str,
                     ca_cert: Path, tokens: dict[str, str], cgroup: str, machine: Machine,
                     template: Path | None = None, registry_port: int = 0) -> NodePaths:
    paths = node_paths(state, spec.name)
    if template is not None:     # the images, already imported and unpacked
        seed_containerd_root(template, paths.containerd_root)
    for d in (paths.base, paths.containerd_root, paths.containerd_state, paths.cni_conf_dir,
              paths.cni_ipam_dir, paths.cert_dir, paths.volume_plugin_dir, paths.device_plugin_dir):
        d.mkdir(parents=True, exist_ok=True)
    link_short_dir(paths.containerd_dir, CONTAINERD_LINK)
    node = plan.node(spec.name)
    registry = f"http://{plan.gateway}:{registry_port}" if registry_port else None
    paths.containerd_config.write_text(containerd_toml(paths, registry))
    (paths.cni_conf_dir / "10-llmops.conflist").write_text(cni_conflist(node, paths))
    paths.resolv_conf.write_text(resolv_conf_text(plan))
    paths.kubelet_config.write_text(kubelet_config_yaml(plan, spec, str(paths.base), machine))
    paths.kubelet_kubeconfig.write_text(node_kubeconfig(server, ca_cert, tokens[spec.name], f"system:node:{spec.name}"))
    paths.proxy_kubeconfig.write_text(node_kubeconfig(server, ca_cert, tokens["kube-proxy"], "system:kube-proxy"))
    for f in (paths.kubelet_kubeconfig, paths.proxy_kubeconfig):
        f.chmod(0o600)
    components = [
        ("containerd", ["containerd", "--config", str(paths.containerd_config)]),
        ("kubelet", kubelet_argv(bins["kubelet"], plan, spec, paths, cgroup)),
        ("kube-proxy", kube_proxy_argv(bins["kube-proxy"], plan, spec, paths)),
    ]
    paths.spec_file.write_text(json.dumps({
        "name": spec.name, "rootfs": str(paths.rootfs), "private_dirs": list(PRIVATE_DIRS),
        "cgroup": cgroup, "log_dir": str(state.root / "logs"), "containerd_sock": str(paths.containerd_sock),
        "components": components, "netns": node.netns,
        "bind_files": [[str(paths.resolv_conf), "/etc/resolv.conf"]],
    }, indent=2))
    return paths


def start_node(state: StateDir, netns: str, paths: NodePaths, name: str) -> None:
    argv = ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation", "private",
            sys.executable, "-m", "llmops_sandbox.nodeinit", "--spec", str(paths.spec_file)]
    processes.start_daemon(argv, state.pid_file(pid_name(name)), state.log_file(pid_name(name)), cwd=state.root)


def container_pids(state: StateDir, node: str) -> dict[str, int]:
    """Container id -> host pid of its main process, for every running task of a node's
    containerd (the pid namespace is the host's; only mounts and network are the node's)."""
    sock = node_paths(state, node).containerd_sock
    proc = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "tasks", "ls"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RealNodeError(f"node {node}: ctr tasks ls: {proc.stderr.strip()}")
    pids = {}
    for line in proc.stdout.splitlines()[1:]:      # TASK PID STATUS
        fields = line.split()
        if len(fields) >= 3 and fields[1].isdigit() and fields[2] == "RUNNING":
            pids[fields[0]] = int(fields[1])
    return pids


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "    (no log)"
    return "\n".join("    " + line for line in text)


def component_log(state: StateDir, node: str, component: str) -> Path:
    return state.root / "logs" / f"{node}.{component}.log"


def component_exits(state: StateDir, node: str, component: str) -> int:
    """How often a node's supervisor (nodeinit.py) saw the component exit."""
    try:
        text = state.log_file(pid_name(node)).read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return text.count(f"nodeinit: {component} exited with ")


def _wait(state: StateDir, node: str, what: str, component: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if processes.read_pid(state.pid_file(pid_name(node))) is None:
            raise RealNodeError(f"node {node}: its supervisor exited while waiting for {what}; "
                                f"{pid_name(node)}.log ends with:\n" + log_tail(state.log_file(pid_name(node)))
                                + f"\n  {component} log ends with:\n" + log_tail(component_log(state, node, component)))
        if time.monotonic() > deadline:
            raise RealNodeError(f"node {node}: {what} not done after {timeout:g}s; {component} log "
                                f"({component_log(state, node, component)}) ends with:\n"
                                + log_tail(component_log(state, node, component)))
        time.sleep(0.1)


def import_images(state: StateDir, specs: list[NodeSpec], images: list[BuiltImage], progress: Progress) -> None:
    def one(spec: NodeSpec) -> None:
        paths = node_paths(state, spec.name)
        _wait(state, spec.name, "containerd's socket", "containerd", paths.containerd_sock.exists, 30)
        have = imported_names(paths.containerd_sock)
        for image in images:
            from .oci import full_name
            if all(full_name(n) in have for n in image.names):
                continue
            try:
                import_image(image, paths.containerd_sock)
            except ImageError as exc:
                raise RealNodeError(f"node {spec.name}: {exc}\n  containerd log ends with:\n"
                                    + log_tail(component_log(state, spec.name, "containerd"))) from exc
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, specs))
    progress(f"imported {len(images)} images into {len(specs)} nodes' containerd in {time.monotonic() - t0:.1f}s")


def label_and_wait(state: StateDir, core, specs: list[NodeSpec], timeout: float, progress: Progress) -> None:
    """Wait for each kubelet to register, then add the labels a kubelet may not set itself."""
    from kubernetes.client.rest import ApiException
    pending = {s.name: s for s in specs}
    deadline = time.monotonic() + timeout
    while pending:
        for name in list(pending):
            try:
                core.read_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                continue
            extra = labels_patched_later(pending[name])
            if extra:
                core.patch_node(name, {"metadata": {"labels": extra}})
            del pending[name]
        if not pending:
            break
        for name in pending:
            if processes.read_pid(state.pid_file(pid_name(name))) is None:
                raise RealNodeError(f"node {name}: its supervisor exited; kubelet log ends with:\n"
                                    + log_tail(component_log(state, name, "kubelet")))
            exits = component_exits(state, name, "kubelet")
            if exits >= CRASH_LOOP_EXITS:
                raise RealNodeError(f"node {name}: the kubelet exited {exits} times without registering; its log "
                                    f"({component_log(state, name, 'kubelet')}) ends with:\n"
                                    + log_tail(component_log(state, name, "kubelet")))
        if time.monotonic() > deadline:
            name = sorted(pending)[0]
            raise RealNodeError(f"node {name}: the kubelet did not register within {timeout:g}s; its log "
                                f"({component_log(state, name, 'kubelet')}) ends with:\n"
                                + log_tail(component_log(state, name, "kubelet")))
        time.sleep(0.2)
    progress(f"{len(specs)} kubelets registered")


@dataclass
class NodeRecord:
    name: str
    netns: str
    cgroup: str
    host_veth: str


def records(state: StateDir) -> list[NodeRecord]:
    found = []
    for spec_file in sorted((state.root / "nodes").glob("*/node.json")):
        try:
            data = json.loads(spec_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        found.append(NodeRecord(name=data["name"], netns=data["netns"], cgroup=data["cgroup"],
                                host_veth=data.get("host_veth", "")))
    return found


def stop_all(state: StateDir, progress: Progress) -> bool:
    """Stop every real node of this sandbox and remove its namespaces and cgroups."""
    recs = records(state)
    anything = False

    def stop_one(rec: NodeRecord) -> bool:
        return processes.stop_daemon(state.pid_file(pid_name(rec.name)), grace_seconds=25)
    with ThreadPoolExecutor(max_workers=max(1, len(recs))) as pool:
        stopped = list(pool.map(stop_one, recs))
    for rec, was in zip(recs, stopped):
        for pid in cgroups.pids(rec.cgroup) | set(network.netns_pids(rec.netns)):
            processes.kill_group(pid, 9)
            was = True
        deadline = time.monotonic() + 10
        while cgroups.pids(rec.cgroup) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = cgroups.remove(rec.cgroup)
        if left:
            progress(f"node {rec.name}: could not remove cgroups {left}")
        network.delete_netns(rec.netns)
        paths = node_paths(state, rec.name)
        unlink_short_dir(paths.device_plugin_dir, PLUGIN_LINK)
        unlink_short_dir(paths.containerd_dir, CONTAINERD_LINK)
        if was:
            progress(f"stopped node {rec.name}")
        anything = anything or was
    for rec in recs[:1]:
        parent = rec.cgroup.rsplit("/", 1)[0]
        cgroups.remove(parent)
    return anything


def meminfo_kib(field: str) -> int:
    """One /proc/meminfo line (MemTotal, MemAvailable...), in KiB; 0 if absent."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def this_machine() -> Machine:
    return Machine(cpus=os.cpu_count() or 1, memory_bytes=meminfo_kib("MemTotal") * 1024)


def larger_than_the_machine(specs: list[NodeSpec], machine: Machine) -> list[str]:
    """Nodes whose declared cpu or memory the machine cannot give (they get the machine's)."""
    from kubernetes.utils.quantity import parse_quantity
    return [s.name for s in specs
            if parse_quantity(s.cpu) > machine.cpus or parse_quantity(s.memory) > machine.memory_bytes]


NODE_MEMORY_MIB = 300     # kubelet ~90 + containerd ~46 + kube-proxy ~30 + supervisor, measured, rounded up


def available_memory_mib() -> int:
    return meminfo_kib("MemAvailable") // 1024


def check_capacity(specs: list[NodeSpec], available_mib: int | None = None) -> None:
    """Refuse, before anything starts, more real nodes than half the free memory holds."""
    available = available_memory_mib() if available_mib is None else available_mib
    fits = available // 2 // NODE_MEMORY_MIB
    if len(specs) > fits:
        raise RealNodeError(f"nodes: {len(specs)} real nodes need about {len(specs) * NODE_MEMORY_MIB} MiB, but this "
                            f"machine has {available} MiB available (room for {fits} at {NODE_MEMORY_MIB} MiB each, "
                            "within half of it); fix: fewer nodes in the node file (--nodes FILE)")


def host_iptables() -> str:
    """The host's rules (counters dropped), to compare before up and after down."""
    out = []
    for cmd in (["iptables-save"], ["ip6tables-save"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        out += [line for line in proc.stdout.splitlines() if line and not line.startswith("#")]
    return "\n".join(sorted(re.sub(r"\[\d+:\d+\]", "", line) for line in out))


def leftovers(state_dir: Path, bridge: str, cidr: str, cgroup_prefix: str) -> list[str]:
    """Everything of a real-node sandbox that is still there after `down` (empty = clean):
    processes, mounts, network namespaces, host routes and iptables rules naming its range,
    cgroups, the bridge and node links, and containerd's state (sockets, roots)."""
    import ipaddress
    found = []
    marker = str(state_dir)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"process {proc.name}: {cmdline[:120]}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if marker in line:
            found.append(f"mount: {line[:160]}")
    found += [f"network namespace {ns}" for ns in network.list_netns(bridge)]
    if network.link_exists(bridge):
        found.append(f"bridge {bridge}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {m}" for m in re.findall(rf"^\d+: ({re.escape(bridge)}n\d+)[@:]", links, flags=re.M)]
    net = ipaddress.ip_network(cidr)
    prefix = ".".join(str(net.network_address).split(".")[: net.prefixlen // 8]) + "."
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    found += [f"route: {r}" for r in routes.splitlines() if r.startswith(prefix)]
    found += [f"iptables: {r}" for r in host_iptables().splitlines() if prefix in r]
    found += [f"cgroup {c}" for c in cgroups.leftovers(cgroup_prefix)]
    for spec_file in state_dir.glob("nodes/*/node.json"):
        paths = node_paths(StateDir(state_dir), spec_file.parent.name)
        for link in (short_dir(paths.device_plugin_dir, PLUGIN_LINK), short_dir(paths.containerd_dir, CONTAINERD_LINK)):
            if link.is_symlink():
                found.append(f"socket link {link}")
    if state_dir.exists():
        found.append(f"state directory {state_dir} (containerd roots, sockets, kubelet dirs)")
    return found
