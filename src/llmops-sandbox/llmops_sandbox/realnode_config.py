"""Configuration of one real sandbox node: containerd, CNI, kubelet and kube-proxy (pure).

A real node is a kubelet + containerd + kube-proxy in the node's own network namespace
(its IP on the sandbox bridge) and mount namespace (its own /var/lib/kubelet and disk),
like a kind node without the container around it. Everything here is text or argv built
from plain values; realnodes.py does the I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .netplan import NetPlan, NodeNet
from .nodes import NodeSpec, node_labels, node_taints
from .shortpaths import short_dir

PAUSE_IMAGE = "registry.k8s.io/pause:3.2"
CLUSTER_DOMAIN = "cluster.local"
# Directories a node owns: bind-mounted from the node's root over the same path inside its
# mount namespace, so hostPath volumes, the kubelet's plugin sockets (its device-plugin
# directory is fixed at /var/lib/kubelet/device-plugins, see
# staging/src/k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/constants.go) and pod logs belong
# to that node alone. The node root has the same layout as a simulated node's (state.node_root).
PRIVATE_DIRS = ("/var/lib/kubelet", "/var/lib/llmops", "/var/log/pods", "/var/log/containers")
# Labels the kubelet may not set on itself (kubelet --node-labels refuses unknown
# kubernetes.io labels): the host patches them in after registration, as kubeadm does roles.
_KUBELET_ALLOWED_PREFIXES = ("topology.kubernetes.io/", "kubernetes.io/arch", "kubernetes.io/os",
                             "kubernetes.io/hostname", "beta.kubernetes.io/", "failure-domain.beta.kubernetes.io/",
                             "node.kubernetes.io/instance-type")


CONTAINERD_LINK = "ctd"   # /run/llmops/ctd-<hash> -> <state>/nodes/<name>/containerd


@dataclass(frozen=True)
class NodePaths:
    """Where one node's files live on the host (all under the sandbox state dir)."""

    base: Path          # <state>/nodes/<name>

    @property
    def rootfs(self) -> Path:     # == StateDir.node_root(name)
        return self.base / "rootfs"

    @property
    def containerd_root(self) -> Path:
        return self.base / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.base / "containerd" / "state"

    @property
    def containerd_dir(self) -> Path:    # its sockets; dialled through containerd_sock's short link
        return self.base / "containerd"

    @property
    def containerd_sock(self) -> Path:
        return short_dir(self.containerd_dir, CONTAINERD_LINK) / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.base / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.base / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:   # the host side of the node's /var/lib/kubelet
        return self.rootfs / "var" / "lib" / "kubelet"

    @property
    def device_plugin_dir(self) -> Path:
        return self.kubelet_dir / "device-plugins"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.base / "kubelet.kubeconfig"

    @property
    def proxy_kubeconfig(self) -> Path:
        return self.base / "kube-proxy.kubeconfig"

    @property
    def kubelet_config(self) -> Path:
        return self.base / "kubelet-config.yaml"

    @property
    def cert_dir(self) -> Path:
        return self.base / "pki"

    @property
    def volume_plugin_dir(self) -> Path:
        return self.base / "volume-plugins"

    @property
    def resolv_conf(self) -> Path:
        """The node's /etc/resolv.conf (bind-mounted in its mount namespace): only the
        sandbox's dnsmasq, so nothing on a node ever asks the host's resolver."""
        return self.base / "resolv.conf"

    @property
    def spec_file(self) -> Path:
        return self.base / "node.json"


# "*": any other registry's pull asks the sandbox's registry first (and gets a clear 404).
MIRRORED_REGISTRIES = ("docker.io", "registry.k8s.io", "*")


def containerd_toml(paths: NodePaths, registry_url: str | None = None) -> str:
    """containerd 1.6 config: a private root, state and socket per node (two kubelets on
    one containerd would collect each other's pods); pulls go to the sandbox's registry."""
    mirrors = "".join(f"""    [plugins."io.containerd.grpc.v1.cri".registry.mirrors."{r}"]
      endpoint = ["{registry_url}"]
""" for r in MIRRORED_REGISTRIES) if registry_url else ""
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"
# Snapshotters a sandbox never uses; they would only probe the host.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{paths.containerd_sock}"

[ttrpc]
  address = "{paths.containerd_sock}.ttrpc"

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.base / 'containerd' / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # CAP_SYS_RESOURCE is not in this machine's bounding set: runc cannot set a negative
  # oom_score_adj, and without this every pod sandbox fails ("can't get final child's PID").
  restrict_oom_score_adj = true
  # Pod network namespaces under the node's own state dir, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{paths.cni_conf_dir}"
  [plugins."io.containerd.grpc.v1.cri".registry]
{mirrors}"""


def cni_conflist(node: NodeNet, paths: NodePaths) -> str:
    """The node's CNI bridge: its own pod range; the default gateway so pods reach ClusterIPs
    through kube-proxy's rules; hairpin so a pod reaches its own Service."""
    conf = {
        "cniVersion": "0.4.0",
        "name": "llmops-sandbox",
        "plugins": [
            {
                "type": "bridge", "bridge": "cni0", "isGateway": True, "isDefaultGateway": True,
                "hairpinMode": True, "ipMasq": False,   # nodes route pod ranges: pods keep their IPs
                "ipam": {"type": "host-local", "dataDir": str(paths.cni_ipam_dir),
                         "ranges": [[{"subnet": node.pod_cidr, "gateway": node.pod_gateway}]]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_self_labels(spec: NodeSpec) -> dict[str, str]:
    return {k: v for k, v in node_labels(spec).items()
            if "kubernetes.io/" not in k or k.startswith(_KUBELET_ALLOWED_PREFIXES)}


def labels_patched_later(spec: NodeSpec) -> dict[str, str]:
    """Labels only an admin may set (e.g. node-role.kubernetes.io/edge)."""
    own = kubelet_self_labels(spec)
    return {k: v for k, v in node_labels(spec).items() if k not in own}


def resolv_conf_text(plan: NetPlan) -> str:
    return f"nameserver {plan.gateway}\noptions timeout:1 attempts:1\n"


@dataclass(frozen=True)
class Machine:
    """What every kubelet on this host reports as its capacity (cadvisor reads the host)."""

    cpus: int
    memory_bytes: int


def system_reserved(spec: NodeSpec, machine: Machine) -> dict[str, str]:
    """What the kubelet holds back so that the Node's allocatable is the node file's cpu and
    memory (allocatable = capacity - systemReserved, as kubelet_argv turns hard eviction off).
    The scheduler packs by it; nothing is enforced (--enforce-node-allocatable= is empty, as
    this machine's cgroup v1 layout needs). A node declared larger than the machine gets what
    the machine has."""
    from kubernetes.utils.quantity import parse_quantity
    reserved = {}
    cpu_millis = int(parse_quantity(spec.cpu) * 1000)
    if cpu_millis < machine.cpus * 1000:
        reserved["cpu"] = f"{machine.cpus * 1000 - cpu_millis}m"
    memory = int(parse_quantity(spec.memory))
    spare = machine.memory_bytes - memory
    if spare > 0:
        reserved["memory"] = f"{spare // 1024}Ki"
    return reserved


def kubelet_config_yaml(plan: NetPlan, spec: NodeSpec, resolv_base: str = "", machine: Machine | None = None) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The API server reaches logs/exec on the node IP, on the sandbox bridge only.
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "clusterDNS": [plan.dns_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(NodePaths(Path(resolv_base)).resolv_conf) if resolv_base else "/etc/resolv.conf",
        "maxPods": spec.pods,
        "readOnlyPort": 0,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,    # imported images cannot be pulled again
        "imageGCLowThresholdPercent": 99,
        # A registered device plugin's GPUs show in the Node's status at the next update:
        # every 4 s rather than 10 s, so `up` need not wait as long for them.
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "4s",
    }
    reserved = system_reserved(spec, machine) if machine else {}
    if reserved:
        config["systemReserved"] = reserved
    return yaml.safe_dump(config, sort_keys=False)


def _taint_arg(taints: list[dict[str, str]]) -> str:
    return ",".join(f"{t['key']}={t.get('value', '')}:{t['effect']}" for t in taints)


def kubelet_argv(kubelet: Path, plan: NetPlan, spec: NodeSpec, paths: NodePaths, cgroup_root: str) -> list[str]:
    node = plan.node(spec.name)
    argv = [
        str(kubelet),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubelet_kubeconfig}",
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{paths.containerd_sock}",
        "--runtime-request-timeout=5m",
        f"--pod-infra-container-image={PAUSE_IMAGE}",
        f"--hostname-override={spec.name}",
        f"--node-ip={node.ip}",
        "--root-dir=/var/lib/kubelet",          # the node's own (bind-mounted) directory
        f"--cert-dir={paths.cert_dir}",
        f"--volume-plugin-dir={paths.volume_plugin_dir}",
        f"--cgroup-root={cgroup_root}",
        # What this machine's kernel and cgroup v1 layout allow (ENVIRONMENT.md, "Real nodes").
        "--cgroups-per-qos=false",
        "--enforce-node-allocatable=",
        "--fail-swap-on=false",
        "--eviction-hard=",
        f"--node-labels={','.join(f'{k}={v}' for k, v in sorted(kubelet_self_labels(spec).items()))}",
        "--v=1",
    ]
    taints = node_taints(spec)
    if taints:
        argv.append(f"--register-with-taints={_taint_arg(taints)}")
    return argv


def kube_proxy_argv(kube_proxy: Path, plan: NetPlan, spec: NodeSpec, paths: NodePaths) -> list[str]:
    node = plan.node(spec.name)
    return [
        str(kube_proxy),
        f"--kubeconfig={paths.proxy_kubeconfig}",
        f"--hostname-override={spec.name}",
        f"--bind-address={node.ip}",
        f"--cluster-cidr={plan.cidr}",
        "--proxy-mode=iptables",
        # Service traffic is SNATed, so a reply never bypasses conntrack on the CNI bridge
        # (no br_netfilter needed in the node's namespace).
        "--masquerade-all=true",
        "--conntrack-max-per-core=0",      # leave the (host-wide) conntrack table size alone
        "--metrics-bind-address=127.0.0.1:10249",
        "--healthz-bind-address=127.0.0.1:10256",
        "--v=1",
    ]


def node_kubeconfig(server: str, ca_cert: Path, token: str, user: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": user}}],
        "current-context": "sandbox",
    }, sort_keys=False)


def node_token_lines(tokens: dict[str, str]) -> str:
    """Static-token lines giving each kubelet the identity the Node authorizer expects
    (system:node:<name> in system:nodes) and kube-proxy its bootstrap role's user."""
    lines = []
    for name, token in tokens.items():
        if name == "kube-proxy":
            lines.append(f'{token},system:kube-proxy,system:kube-proxy,"system:node-proxiers"')
        else:
            lines.append(f'{token},system:node:{name},system:node:{name},"system:nodes"')
    return "".join(line + "\n" for line in lines)

