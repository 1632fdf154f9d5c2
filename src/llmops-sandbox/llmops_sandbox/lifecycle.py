"""Bringing a sandbox up and down: the control plane, the real nodes (realnodes.py), their
add-ons, Prometheus, files and the bridge. Used by the CLI and the pytest plugin."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmops import waiting
from . import binaries, cgroups, clusterdns, netplan, network, nodeimages, processes, realnodes
from .certs import create_pki
from .controlplane import (
    ControlPlaneFiles, Ports, apiserver_argv, controller_manager_argv, etcd_argv, kubeconfig_yaml,
    scheduler_argv,
)
from .nodes import default_nodes_text, parse_nodes
from .prometheus import TARGETS_FILE, prometheus_argv, prometheus_yaml
from .state import SandboxInfo, StateDir

Progress = Callable[[str], None]

DEFAULT_BRIDGE = "llmops0"
DEFAULT_POD_CIDR = "10.244.0.0/16"
PINNED_FILE = "pinned"     # present: someone asked for this sandbox explicitly; sessions leave it up
USERS_DIR = "users"        # one file per pytest session using the sandbox, named by its pid


def default_bridge() -> str:
    return os.environ.get("LLMOPS_SANDBOX_BRIDGE") or DEFAULT_BRIDGE


def default_pod_cidr() -> str:
    return os.environ.get("LLMOPS_SANDBOX_POD_CIDR") or DEFAULT_POD_CIDR


# Stopped in this order, etcd last; the nodes (node-<name>, realnodes.py) stop before all of these.
DAEMONS = ("nodeservices", "dnsmasq", "prometheus", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
NODE_READY_TIMEOUT = 60.0


class SandboxError(Exception):
    """Something the user can act on; the CLI turns it into a UserError."""


@dataclass
class UpOptions:
    dir: Path
    bin_dir: str | None = None
    nodes_file: str | None = None
    bridge: str = field(default_factory=default_bridge)
    pod_cidr: str = field(default_factory=default_pod_cidr)
    prometheus: bool = True
    build: bool = True
    pin: bool = False      # `llmops sandbox up` pins; the pytest plugin does not


def _no_proxy_opener(ca_file: str | None = None) -> urllib.request.OpenerDirector:
    handlers: list = [urllib.request.ProxyHandler({})]
    if ca_file:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    return urllib.request.build_opener(*handlers)


def http_ok(url: str, ca_file: str | None = None, token: str | None = None, timeout: float = 2.0) -> bool:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with _no_proxy_opener(ca_file).open(req, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def free_ports(count: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("0.0.0.0", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def running_daemons(state: StateDir) -> dict[str, int]:
    found = {}
    for name in DAEMONS:
        pid = processes.read_pid(state.pid_file(name))
        if pid is not None:
            found[name] = pid
    return found


def is_up(state: StateDir) -> bool:
    info = state.read_info()
    return info is not None and "kube-apiserver" in running_daemons(state)


def _log_tail(state: StateDir, name: str, lines: int = 15) -> str:
    try:
        text = state.log_file(name).read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text)


def _start(state: StateDir, name: str, argv: list[str], env: dict | None = None) -> None:
    processes.start_daemon(argv, state.pid_file(name), state.log_file(name), env=env, cwd=state.root)


def _wait_component(state: StateDir, name: str, predicate: Callable[[], bool], timeout: float) -> None:
    def check() -> bool:
        if processes.read_pid(state.pid_file(name)) is None:
            raise SandboxError(f"{name} exited during start-up; its log ({state.log_file(name)}) ends with:\n"
                               + _log_tail(state, name))
        return predicate()
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"{name} not ready after {timeout:g}s; log {state.log_file(name)} ends with:\n"
                               + _log_tail(state, name))
        time.sleep(0.1)


def up(opts: UpOptions, progress: Progress = print) -> tuple[SandboxInfo, bool]:
    """Start the sandbox (or find it running). Returns (info, started_now)."""
    state = StateDir(opts.dir)
    t0 = time.monotonic()

    def step(msg: str) -> None:
        progress(f"[{time.monotonic() - t0:5.1f}s] {msg}")

    if is_up(state):
        info = state.read_info()
        if opts.pin:
            (state.root / PINNED_FILE).touch()
        step(f"sandbox already up in {state.root} (kubeconfig {info.kubeconfig}); nothing to do")
        return info, False
    if state.root.exists():
        step(f"cleaning up a stale sandbox in {state.root}")
        down(state.root, progress=lambda m: None)

    # Validate the inputs before starting anything.
    nodes_text = Path(opts.nodes_file).read_text() if opts.nodes_file else default_nodes_text()
    try:
        nodes = parse_nodes(nodes_text)
    except ValueError as exc:
        raise SandboxError(f"nodes file {opts.nodes_file or '(default)'}: {exc}") from exc
    try:
        plan = netplan.plan(opts.bridge, opts.pod_cidr, [n.name for n in nodes],
                            {n.name: n.pod_cidr for n in nodes if n.pod_cidr})
        realnodes.check_capacity(nodes)
    except (netplan.NetPlanError, realnodes.RealNodeError) as exc:
        raise SandboxError(str(exc)) from exc

    step("locating control-plane binaries")
    try:
        bins = binaries.locate(opts.bin_dir, build=opts.build, progress=step)
    except binaries.MissingBinary as exc:
        raise SandboxError(str(exc)) from exc
    minor = binaries.server_minor_version(bins["kube-apiserver"])
    step(f"using Kubernetes 1.{minor} from {bins['kube-apiserver'].parent} and {bins['etcd']}")
    prom_bin = binaries.find_prometheus(opts.bin_dir) if opts.prometheus else None
    try:
        bins.update(binaries.locate_node_binaries(opts.bin_dir, build=opts.build, progress=step))
        images = nodeimages.node_images(progress=step)
    except (binaries.MissingBinary, nodeimages.ImageError) as exc:
        raise SandboxError(str(exc)) from exc

    state.create()
    if opts.pin:
        (state.root / PINNED_FILE).touch()
    (state.root / "nodes.yaml").write_text(nodes_text)
    gateway, prefixlen = plan.gateway, plan.node_prefixlen   # the bridge is the node network
    step(f"creating bridge {opts.bridge} ({gateway}/{prefixlen})")
    try:
        network.ensure_bridge(opts.bridge, gateway, prefixlen)
    except network.NetworkError as exc:
        raise SandboxError(f"{exc}; the sandbox needs root (CAP_NET_ADMIN) and iproute2") from exc

    ports = Ports(*free_ports(6))
    pki = create_pki(state.pki, ["127.0.0.1", gateway, plan.kubernetes_service_ip])
    tokens = realnodes.make_tokens(nodes)
    realnodes.append_tokens(pki.token_file, tokens)
    files = ControlPlaneFiles(
        ca_cert=pki.ca_cert, ca_key=pki.ca_key, serving_cert=pki.serving_cert, serving_key=pki.serving_key,
        sa_key=pki.sa_key, sa_pub=pki.sa_pub, token_file=pki.token_file, kubeconfig=state.kubeconfig,
        etcd_data=state.etcd_data, cert_dir=state.pki / "generated",
    )
    apiserver_url = f"https://127.0.0.1:{ports.apiserver}"
    state.kubeconfig.write_text(kubeconfig_yaml(apiserver_url, pki.ca_cert, pki.admin_token))
    state.kubeconfig.chmod(0o600)
    info = SandboxInfo(
        dir=str(state.root), kubeconfig=str(state.kubeconfig), apiserver_url=apiserver_url,
        apiserver_pod_host=gateway, apiserver_port=ports.apiserver, ca_file=str(pki.ca_cert),
        token_file=str(state.pki / "admin.token"), prometheus_url=None, bridge=opts.bridge,
        pod_cidr=opts.pod_cidr, gateway_ip=gateway, ports=ports.as_dict(),
        nodes_file=str(state.root / "nodes.yaml"), bin_dir=str(bins["kube-apiserver"].parent),
        service_cidr=plan.service_cidr, dns_ip=plan.dns_ip,
    )
    state.write_info(info)

    try:
        step(f"starting etcd on 127.0.0.1:{ports.etcd_client}")
        _start(state, "etcd", etcd_argv(bins["etcd"], ports, files))
        _wait_component(state, "etcd", lambda: http_ok(f"http://127.0.0.1:{ports.etcd_client}/health"), 30)
        step(f"starting kube-apiserver on {apiserver_url} (and {gateway}:{ports.apiserver} for pods)")
        _start(state, "kube-apiserver", apiserver_argv(bins["kube-apiserver"], ports, files, gateway, minor,
                                                       plan.service_cidr))
        _wait_component(state, "kube-apiserver",
                        lambda: http_ok(f"{apiserver_url}/readyz", str(pki.ca_cert), pki.admin_token), 60)
        step("starting kube-controller-manager and kube-scheduler")
        _start(state, "kube-controller-manager",
               controller_manager_argv(bins["kube-controller-manager"], ports, files, minor, plan.service_cidr))
        _start(state, "kube-scheduler", scheduler_argv(bins["kube-scheduler"], ports, files, minor))
        _start_real_nodes(state, info, plan, nodes, bins, tokens, images, step)
        if prom_bin is not None:
            info = start_prometheus(state, prom_bin, step)
        elif opts.prometheus:
            step("prometheus not found (apt-get install prometheus); continuing without it")
        step("waiting for nodes to be Ready")
        _wait_component(state, "nodeservices",
                        lambda: _nodes_ready(info, [n.name for n in nodes], [n.name for n in nodes if n.gpu]),
                        NODE_READY_TIMEOUT)
        # A kubelet's Lease lags its registration a little; callers may read it at once.
        _wait_component(state, "nodeservices", lambda: _leases_exist(info, [n.name for n in nodes]), 30)
        for name in ("kube-controller-manager", "kube-scheduler"):
            if processes.read_pid(state.pid_file(name)) is None:
                raise SandboxError(f"{name} exited; log ends with:\n" + _log_tail(state, name))
    except BaseException:
        # A failed start cleans up what it started (the caller shows the component's log).
        realnodes.stop_all(state, progress=lambda m: None)
        for name in DAEMONS:
            processes.stop_daemon(state.pid_file(name), grace_seconds=5)
        network.delete_bridge(opts.bridge)
        raise
    step(f"sandbox up: {len(nodes)} nodes Ready; kubeconfig {state.kubeconfig}")
    return info, True


def _start_real_nodes(state: StateDir, info: SandboxInfo, plan, nodes, bins, tokens, images, step: Progress) -> None:
    step(f"creating {len(nodes)} node network namespaces on {plan.bridge} (pod ranges {plan.nodes[0].pod_cidr}...; "
         f"services {plan.service_cidr})")
    try:
        realnodes.create_node_network(plan)
    except realnodes.RealNodeError as exc:
        raise SandboxError(str(exc)) from exc
    server = f"https://{plan.gateway}:{info.apiserver_port}"
    info.ports["registry"] = free_ports(1)[0]
    state.write_info(info)
    (state.root / "images.json").write_text(json.dumps([str(i.archive) for i in images]))
    try:
        template = nodeimages.containerd_template(images, step)
    except nodeimages.ImageError as exc:
        raise SandboxError(str(exc)) from exc
    machine = realnodes.this_machine()
    for spec in nodes:
        cgroup = cgroups.node_cgroup(plan.bridge, spec.name)
        cgroups.create(cgroup)
        paths = realnodes.write_node_files(state, plan, spec, bins, server, Path(info.ca_file), tokens, cgroup,
                                           machine, template, info.ports["registry"])
        realnodes.start_node(state, plan.node(spec.name).netns, paths, spec.name)
    step(f"started {len(nodes)} real nodes (containerd, kubelet, kube-proxy), images seeded from the template")
    capped = realnodes.larger_than_the_machine(nodes, machine)
    if capped:
        step(f"nodes {', '.join(capped)} declare more cpu or memory than this machine has ({machine.cpus} CPUs, "
             f"{machine.memory_bytes / 2**30:.1f} GiB): their allocatable is the machine's; the others' is what "
             "the node file says")
    # Device plugins, scrape targets, DNS records; Prometheus' port is already allocated.
    _start(state, "nodeservices", [sys.executable, "-m", "llmops_sandbox.nodeservices", "--dir", str(state.root)])
    import kubernetes
    try:
        core = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=info.kubeconfig))
        _start_cluster_dns(state, core, plan, step)
        realnodes.import_images(state, nodes, images, step)
        realnodes.label_and_wait(state, core, nodes, realnodes.REGISTER_TIMEOUT, step)
    except realnodes.RealNodeError as exc:
        raise SandboxError(str(exc)) from exc


def _start_cluster_dns(state: StateDir, core, plan, step: Progress) -> None:
    from .nodeservices import dns_hosts_dir
    hosts = dns_hosts_dir(state)
    clusterdns.write_hosts(hosts, "")
    _start(state, "dnsmasq", clusterdns.dnsmasq_argv(plan.gateway, hosts))
    from kubernetes.client.rest import ApiException

    def create() -> bool:
        try:   # kube-system appears a moment after the API server is ready
            core.create_namespaced_service("kube-system", clusterdns.dns_service(plan.dns_ip))
            core.create_namespaced_endpoints("kube-system", clusterdns.dns_endpoints(plan.gateway))
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
    waiting.wait_for(create, 30, "namespace kube-system did not appear; cannot create the kube-dns Service")
    step(f"cluster DNS: dnsmasq on {plan.gateway}:53 behind Service kube-system/kube-dns ({plan.dns_ip})")


def _leases_exist(info: SandboxInfo, names: list[str]) -> bool:
    token = Path(info.token_file).read_text().strip()
    req = urllib.request.Request(f"{info.apiserver_url}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with _no_proxy_opener(info.ca_file).open(req, timeout=3) as resp:
            items = json.loads(resp.read())["items"]
    except (urllib.error.URLError, OSError):
        return False
    return set(names) <= {i["metadata"]["name"] for i in items}


def _nodes_ready(info: SandboxInfo, names: list[str], gpu_nodes: list[str] | None = None) -> bool:
    """Every node Ready and free of the not-ready taint (so the scheduler uses it), and every
    GPU node's device plugin registered (nvidia.com/gpu allocatable)."""
    token = Path(info.token_file).read_text().strip()
    req = urllib.request.Request(f"{info.apiserver_url}/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
    try:
        with _no_proxy_opener(info.ca_file).open(req, timeout=3) as resp:
            items = json.loads(resp.read())["items"]
    except (urllib.error.URLError, OSError):
        return False
    ready = set()
    for node in items:
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions") or ()}
        taints = {t["key"] for t in node.get("spec", {}).get("taints") or ()}
        gpus = (node.get("status", {}).get("allocatable") or {}).get("nvidia.com/gpu", "0")
        if node["metadata"]["name"] in (gpu_nodes or ()) and gpus in ("0", ""):
            continue
        if conds.get("Ready") == "True" and not any(t.startswith("node.kubernetes.io/") for t in taints):
            ready.add(node["metadata"]["name"])
    return set(names) <= ready


def start_prometheus(state: StateDir, binary: Path | None = None, progress: Progress = print) -> SandboxInfo:
    info = state.read_info()
    if info is None:
        raise SandboxError(f"no sandbox in {state.root}; run `llmops sandbox up` first")
    binary = binary or binaries.find_prometheus()
    if binary is None:
        raise SandboxError("prometheus not found; fix: apt-get install prometheus")
    if processes.read_pid(state.pid_file("prometheus")) is not None:
        progress(f"prometheus already running at {info.prometheus_url}")
        return info
    port = info.ports.get("prometheus") or free_ports(1)[0]
    config = state.prometheus / "prometheus.yml"
    state.prometheus.mkdir(parents=True, exist_ok=True)
    targets = state.prometheus / TARGETS_FILE
    if not targets.exists():
        targets.write_text("[]")
    config.write_text(prometheus_yaml(str(targets)))
    url = f"http://127.0.0.1:{port}"
    progress(f"starting prometheus on {url}")
    _start(state, "prometheus", prometheus_argv(binary, config, state.prometheus / "data", port))
    _wait_component(state, "prometheus", lambda: http_ok(f"{url}/-/ready"), 30)
    info.prometheus_url = url
    info.prometheus_pod_url = f"http://{info.gateway_ip}:{port}"
    info.ports["prometheus"] = port
    state.write_info(info)
    return info


def stop_prometheus(state: StateDir, progress: Progress = print) -> bool:
    stopped = processes.stop_daemon(state.pid_file("prometheus"), grace_seconds=10)
    progress("prometheus stopped" if stopped else "prometheus was not running")
    return stopped


def down(root: Path, progress: Progress = print) -> bool:
    """Stop everything of the sandbox in root and remove its files. True if anything was up."""
    state = StateDir(root)
    if not state.root.exists():
        progress(f"no sandbox in {state.root}; nothing to stop")
        return False
    info = state.read_info()
    bridge = info.bridge if info else DEFAULT_BRIDGE
    anything = realnodes.stop_all(state, progress)
    for name in DAEMONS:
        if processes.stop_daemon(state.pid_file(name), grace_seconds=10.0):
            progress(f"stopped {name}")
            anything = True
    # Belt and braces: namespaces of nodes whose records are gone, then the bridge.
    for ns in network.list_netns(bridge):
        for pid in network.netns_pids(ns):
            processes.kill_group(pid, signal.SIGKILL)
        network.delete_netns(ns)
        progress(f"removed network namespace {ns}")
    if network.delete_bridge(bridge):
        progress(f"removed bridge {bridge}")
    shutil.rmtree(state.root, ignore_errors=True)
    progress(f"removed {state.root}")
    return anything


@dataclass
class Status:
    dir: str
    up: bool
    daemons: dict[str, int | None]
    info: SandboxInfo | None
    nodes_ready: int = 0
    nodes_total: int = 0
    apiserver_ready: bool = False
    prometheus_ready: bool = False


def status(root: Path) -> Status:
    state = StateDir(root)
    info = state.read_info()
    running = running_daemons(state)
    st = Status(dir=str(state.root), up=info is not None and "kube-apiserver" in running,
                daemons={name: running.get(name) for name in DAEMONS}, info=info)
    if st.up and info is not None:
        token = Path(info.token_file).read_text().strip()
        st.apiserver_ready = http_ok(f"{info.apiserver_url}/readyz", info.ca_file, token)
        req = urllib.request.Request(f"{info.apiserver_url}/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
        try:
            with _no_proxy_opener(info.ca_file).open(req, timeout=3) as resp:
                items = json.loads(resp.read())["items"]
            st.nodes_total = len(items)
            st.nodes_ready = sum(1 for n in items for c in n["status"].get("conditions") or ()
                                 if c["type"] == "Ready" and c["status"] == "True")
        except (urllib.error.URLError, OSError):
            pass
        if info.prometheus_url and running.get("prometheus"):
            st.prometheus_ready = http_ok(f"{info.prometheus_url}/-/ready")
    return st


def register_user(root: Path, pid: int) -> None:
    users = Path(root) / USERS_DIR
    users.mkdir(parents=True, exist_ok=True)
    (users / str(pid)).touch()


def release_user(root: Path, pid: int) -> bool:
    """Forget session pid; True if nobody else needs the sandbox (not pinned, no live user)."""
    root = Path(root)
    (root / USERS_DIR / str(pid)).unlink(missing_ok=True)
    if (root / PINNED_FILE).exists():
        return False
    others = [p for p in (root / USERS_DIR).glob("*") if p.name.isdigit() and processes.alive(int(p.name))]
    return not others
