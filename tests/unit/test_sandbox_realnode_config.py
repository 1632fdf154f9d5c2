"""Real sandbox nodes, the pure parts: address plan, node-file checks, component configs,
OCI layouts, device-plugin answers and cluster DNS records."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from llmops_sandbox import clusterdns, deviceplugin, netplan, oci, realnodes, shortpaths
from llmops_sandbox.nodes import NodeFileError, parse_nodes
from llmops_sandbox.realnode_config import (
    Machine, NodePaths, cni_conflist, containerd_toml, kubelet_argv, kubelet_config_yaml,
    kubelet_self_labels, labels_patched_later, node_token_lines, system_reserved,
)

EDGE = {"name": "edge", "zone": "z", "cpu": "4", "memory": "8Gi", "edge": True,
        "gpu": {"product": "NVIDIA-L4", "count": 1, "memoryMiB": 23034}}


def nodes_text(*entries: dict) -> str:
    return yaml.safe_dump({"nodes": list(entries)})


# --- address plan
def test_plan_cuts_the_range_into_node_network_pod_ranges_and_services():
    plan = netplan.plan("llmops3", "10.243.0.0/16", ["a", "b"])
    assert plan.gateway == "10.243.0.1" and plan.service_cidr == "10.243.240.0/20"
    assert plan.kubernetes_service_ip == "10.243.240.1" and plan.dns_ip == "10.243.240.10"
    assert [(n.ip, n.pod_cidr, n.pod_gateway, n.netns, n.host_veth) for n in plan.nodes] == [
        ("10.243.0.10", "10.243.1.0/24", "10.243.1.1", "llmops3-node-0", "llmops3n0"),
        ("10.243.0.11", "10.243.2.0/24", "10.243.2.1", "llmops3-node-1", "llmops3n1"),
    ]


def test_two_sandboxes_with_different_ranges_share_no_address():
    a = netplan.plan("llmops3", "10.243.0.0/16", ["n"] * 1)
    b = netplan.plan("llmops4", "10.245.0.0/16", ["n"] * 1)
    assert {a.gateway, a.nodes[0].ip, a.dns_ip}.isdisjoint({b.gateway, b.nodes[0].ip, b.dns_ip})


def test_explicit_pod_ranges_are_kept_and_skipped_by_derived_ones():
    plan = netplan.plan("br", "10.243.0.0/16", ["a", "b"], {"a": "10.243.1.0/24"})
    assert plan.node("a").pod_cidr == "10.243.1.0/24" and plan.node("b").pod_cidr == "10.243.2.0/24"


@pytest.mark.parametrize("cidr, names, ranges, match", [
    ("10.243.0.0/24", ["a"], None, r"/16 or larger"),
    ("not-a-range", ["a"], None, r"pod range 'not-a-range'"),
    ("10.243.0.0/16", ["n"] * 240, None, r"240 nodes do not fit .*at most 239"),
    ("10.243.0.0/16", ["a"], {"a": "10.243.240.0/24"}, r"a.podCIDR .* outside .* Service range"),
    ("10.243.0.0/16", ["a"], {"a": "10.99.1.0/24"}, r"must lie inside 10.243.0.0/16"),
])
def test_plan_refuses_bad_ranges_with_the_fix(cidr, names, ranges, match):
    with pytest.raises(netplan.NetPlanError, match=match):
        netplan.plan("br", cidr, names, ranges)


# --- node file checks (before anything starts)
@pytest.mark.parametrize("entries, match", [
    ([{**EDGE, "gpu": {**EDGE["gpu"], "product": "NVIDIA-Z9000"}}], r"nodes\[0\]\.gpu\.product: unknown GPU product 'NVIDIA-Z9000'; fix:"),
    ([EDGE, EDGE], r"duplicate node name 'edge'; fix: rename one"),
    ([{**EDGE, "name": "a", "podCIDR": "10.243.5.0/24"}, {**EDGE, "name": "b", "podCIDR": "10.243.5.128/25"}],
     r"pod ranges overlap: a 10.243.5.0/24 and b 10.243.5.128/25; fix:"),
    ([{**EDGE, "podCIDR": "10.243.5.0/24", "count": 2}], r"nodes\[0\]\.podCIDR: names one node's range"),
    ([{**EDGE, "podCIDR": "10.243.5.0/33"}], r"nodes\[0\]\.podCIDR: .*fix:"),
    ([{**EDGE, "count": 0}], r"nodes\[0\]\.count: must be a positive integer"),
])
def test_node_file_errors_name_the_field_and_the_fix(entries, match):
    with pytest.raises(NodeFileError, match=match):
        parse_nodes(nodes_text(*entries))


def test_more_real_nodes_than_memory_holds_is_refused_with_the_fix():
    specs = parse_nodes(nodes_text({**EDGE, "count": 8}))
    with pytest.raises(realnodes.RealNodeError, match=r"8 real nodes need about 2400 MiB.*room for 3.*fix: fewer nodes"):
        realnodes.check_capacity(specs, available_mib=2000)
    realnodes.check_capacity(specs, available_mib=24000)


def test_the_shipped_node_file_fits_this_machine_class():
    from llmops_sandbox.nodes import default_nodes_text
    realnodes.check_capacity(parse_nodes(default_nodes_text()), available_mib=22000)


# --- component configs
def paths() -> NodePaths:
    return NodePaths(Path("/s/nodes/edge"))


def test_containerd_config_is_private_to_the_node_and_restricts_oom_score_adj():
    text = containerd_toml(paths())
    sock = shortpaths.short_dir(Path("/s/nodes/edge/containerd"), "ctd") / "containerd.sock"
    assert 'root = "/s/nodes/edge/containerd/root"' in text and f'address = "{sock}"' in text
    assert f'address = "{sock}.ttrpc"' in text
    assert "restrict_oom_score_adj = true" in text and "netns_mounts_under_state_dir = true" in text
    assert 'conf_dir = "/s/nodes/edge/cni/net.d"' in text and 'sandbox_image = "registry.k8s.io/pause:3.2"' in text


def test_cni_bridge_uses_the_nodes_range_gateway_hairpin_and_private_ipam_state():
    node = netplan.plan("br", "10.243.0.0/16", ["edge"]).node("edge")
    bridge = json.loads(cni_conflist(node, paths()))["plugins"][0]
    assert bridge["isDefaultGateway"] and bridge["hairpinMode"] and not bridge["ipMasq"]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.243.1.0/24", "gateway": "10.243.1.1"}]]
    assert bridge["ipam"]["dataDir"] == "/s/nodes/edge/cni/ipam"


def test_kubelet_registers_with_its_ip_taints_and_only_labels_it_may_set():
    spec = parse_nodes(nodes_text(EDGE))[0]
    plan = netplan.plan("br", "10.243.0.0/16", ["edge"])
    argv = kubelet_argv(Path("/bin/kubelet"), plan, spec, paths(), "/x/llmops-br/edge")
    assert "--node-ip=10.243.0.10" in argv and "--hostname-override=edge" in argv
    assert "--register-with-taints=llmops.io/edge=true:NoSchedule" in argv
    assert "--cgroup-root=/x/llmops-br/edge" in argv and "--root-dir=/var/lib/kubelet" in argv
    labels = next(a for a in argv if a.startswith("--node-labels=")).split("=", 1)[1]
    assert "nvidia.com/gpu.product=NVIDIA-L4" in labels and "node-role.kubernetes.io" not in labels
    assert labels_patched_later(spec) == {"node-role.kubernetes.io/edge": ""}
    assert "topology.kubernetes.io/zone" in kubelet_self_labels(spec)
    config = yaml.safe_load(kubelet_config_yaml(plan, spec))
    assert config["clusterDNS"] == ["10.243.240.10"] and config["cgroupDriver"] == "cgroupfs"


MACHINE = Machine(cpus=2, memory_bytes=24 * 2**30)


def test_a_node_smaller_than_the_machine_reserves_the_rest_so_allocatable_is_the_node_files():
    plan = netplan.plan("br", "10.243.0.0/16", ["edge"])
    spec = parse_nodes(nodes_text({**EDGE, "cpu": "500m", "memory": "8Gi"}))[0]
    reserved = yaml.safe_load(kubelet_config_yaml(plan, spec, machine=MACHINE))["systemReserved"]
    assert reserved["cpu"] == "1500m"
    # allocatable = capacity - reserved (no hard eviction threshold on sandbox kubelets) = exactly 8Gi
    assert 24 * 2**30 - int(reserved["memory"].removesuffix("Ki")) * 1024 == 8 * 2**30
    assert realnodes.larger_than_the_machine([spec], MACHINE) == []


def test_a_node_larger_than_the_machine_gets_the_machine_and_is_named():
    plan = netplan.plan("br", "10.243.0.0/16", ["edge"])
    spec = parse_nodes(nodes_text({**EDGE, "cpu": "96", "memory": "1024Gi"}))[0]
    assert "systemReserved" not in yaml.safe_load(kubelet_config_yaml(plan, spec, machine=MACHINE))
    same_cpu_more_memory = parse_nodes(nodes_text({**EDGE, "cpu": "2", "memory": "100Gi"}))[0]
    assert system_reserved(same_cpu_more_memory, MACHINE) == {}
    assert realnodes.larger_than_the_machine([spec, same_cpu_more_memory], MACHINE) == ["edge", "edge"]
    assert realnodes.larger_than_the_machine(parse_nodes(nodes_text({**EDGE, "cpu": "1", "memory": "1Gi"})),
                                             MACHINE) == []


def test_node_tokens_give_kubelets_node_identities_and_kube_proxy_its_user():
    lines = node_token_lines({"edge": "t1", "kube-proxy": "t2"}).splitlines()
    assert lines == ['t1,system:node:edge,system:node:edge,"system:nodes"',
                     't2,system:kube-proxy,system:kube-proxy,"system:node-proxiers"']


# --- OCI layouts
def layer_bytes(layer: oci.Layer) -> bytes:
    out = io.BytesIO()
    oci.write_layer(layer, out)
    return out.getvalue()


def test_layers_are_deterministic_and_contain_parents(tmp_path):
    src = tmp_path / "f"
    src.write_text("hi")
    make = lambda: oci.Layer().copy("usr/bin/tool", src, 0o755).symlink("bin/t", "/usr/bin/tool")  # noqa: E731
    assert layer_bytes(make()) == layer_bytes(make())
    with tarfile.open(fileobj=io.BytesIO(layer_bytes(make()))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"usr", "usr/bin", "bin"} <= set(members) and members["usr/bin/tool"].mode == 0o755
    assert members["bin/t"].issym() and members["usr/bin/tool"].mtime == 0


def test_image_archive_has_one_manifest_per_tag_with_cri_names(tmp_path):
    layer = oci.build_layer_file(oci.Layer().file("hello", b"x"), tmp_path / "l.tar")
    archive = tmp_path / "img.tar"
    digests = oci.write_image_archive([layer], [oci.Tag("vllm/vllm-openai:v0.33.0", env=("A=1",)),
                                                oci.Tag("registry.k8s.io/pause:3.2")], archive)
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())
        names = {m.name for m in tar.getmembers()}
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == [
        "docker.io/vllm/vllm-openai:v0.33.0", "registry.k8s.io/pause:3.2"]
    assert len(set(digests)) == 2 and all(f"blobs/sha256/{d[7:]}" in names for d in digests)


@pytest.mark.parametrize("name, full", [
    ("busybox", "docker.io/library/busybox:latest"), ("llmops/busybox:1", "docker.io/llmops/busybox:1"),
    ("registry.k8s.io/pause:3.2", "registry.k8s.io/pause:3.2"), ("localhost/x", "localhost/x:latest"),
])
def test_full_names_follow_the_cri_normalisation(name, full):
    assert oci.full_name(name) == full


# --- device plugin
def test_fake_gpus_look_like_nvidia_uuids_stable_per_node():
    ids = deviceplugin.gpu_uuids("dc-0", 4)
    assert len(set(ids)) == 4 and ids == deviceplugin.gpu_uuids("dc-0", 4) and ids != deviceplugin.gpu_uuids("dc-1", 4)
    assert all(len(i) == 40 and i.startswith("GPU-") for i in ids)


def test_allocate_answers_nvidia_visible_devices_and_what_the_simulator_reads():
    envs = deviceplugin.allocate_envs(["GPU-a", "GPU-b"], "NVIDIA-L4")
    assert envs == {"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b", "LLMOPS_SIM_GPU_COUNT": "2", "LLMOPS_SIM_GPU": "NVIDIA-L4"}


def test_plain_proto_drops_gogoproto_only():
    text = ('syntax = "proto3";\nimport "github.com/gogo/protobuf/gogoproto/gogo.proto";\n'
            "option (gogoproto.sizer_all) = true;\nmessage M {\n  int64 ID = 1 [(gogoproto.customname) = \"X\"];\n}\n")
    out = deviceplugin.plain_proto(text)
    assert "gogo" not in out and "int64 ID = 1;" in out and 'syntax = "proto3";' in out


def test_short_socket_dirs_stay_under_the_unix_path_limit_and_differ_by_directory_and_kind():
    long = Path("/tmp/" + "x" * 120 + "/var/lib/kubelet/device-plugins")
    assert len(str(shortpaths.short_dir(long, deviceplugin.PLUGIN_LINK) / deviceplugin.SOCKET_NAME)) < 60
    node = NodePaths(Path("/tmp/" + "y" * 120 + "/nodes/edge"))
    assert len(str(node.containerd_sock) + ".ttrpc") < 60        # containerd refuses more than 104
    other = NodePaths(Path("/tmp/" + "y" * 120 + "/nodes/edge-1"))
    assert node.containerd_sock != other.containerd_sock
    assert shortpaths.short_dir(long, "a") != shortpaths.short_dir(long, "b")


def test_a_short_dir_link_is_made_once_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(shortpaths, "SHORT_DIR_ROOT", tmp_path / "run")
    real = tmp_path / "state" / "containerd"
    real.mkdir(parents=True)
    link = shortpaths.link_short_dir(real, "ctd")
    assert link.resolve() == real and shortpaths.link_short_dir(real, "ctd") == link
    shortpaths.unlink_short_dir(real, "ctd")
    assert not link.is_symlink()


# --- cluster DNS
def test_dns_records_cover_cluster_ips_headless_endpoints_and_pod_hostnames():
    services = [
        {"metadata": {"name": "llm", "namespace": "ml"}, "spec": {"clusterIP": "10.243.240.50"}},
        {"metadata": {"name": "grp", "namespace": "ml"}, "spec": {"clusterIP": "None"}},
    ]
    endpoints = [{"metadata": {"name": "grp", "namespace": "ml"},
                  "subsets": [{"addresses": [{"ip": "10.243.3.4", "hostname": "leader"}]}]}]
    pods = [{"metadata": {"name": "w", "namespace": "ml"}, "spec": {"hostname": "w-1", "subdomain": "grp"},
             "status": {"podIP": "10.243.4.2"}}]
    assert clusterdns.service_records(services, endpoints, pods) == [
        ("10.243.3.4", "grp.ml.svc.cluster.local"),
        ("10.243.3.4", "leader.grp.ml.svc.cluster.local"),
        ("10.243.240.50", "llm.ml.svc.cluster.local"),
        ("10.243.4.2", "w-1.grp.ml.svc.cluster.local"),
    ]
    assert clusterdns.hosts_text([("1.2.3.4", "a.b")]) == "1.2.3.4 a.b\n"


def test_dnsmasq_listens_only_on_the_bridge_and_answers_for_cluster_local():
    argv = clusterdns.dnsmasq_argv("10.243.0.1", Path("/s/dns"))
    assert "--listen-address=10.243.0.1" in argv and "--bind-interfaces" in argv
    assert "--local=/cluster.local/" in argv and "--no-resolv" in argv and "--hostsdir=/s/dns" in argv
