"""A sandbox start that fails (a kubelet that never registers) stops with that component's
last log lines and cleans up what it started; on a sandbox of its own (own --dir, bridge and
pod range), so the session's sandbox is untouched."""

from __future__ import annotations

import os
import re
import time

import pytest

from llmops_sandbox import binaries, cgroups, lifecycle, realnodes

pytestmark = pytest.mark.cluster

BRIDGE = "llmopsf0"
POD_CIDR = "10.242.0.0/16"
NODES = 'nodes:\n  - {name: lonely, cpu: "2", memory: 4Gi}\n'
BROKEN_KUBELET = """#!/bin/sh
echo "E1201 run.go:74] planted failure: this kubelet cannot start" >&2
exit 1
"""


@pytest.fixture
def broken_bin_dir(tmp_path):
    if os.environ.get("LLMOPS_TEST_KUBECONFIG") or os.geteuid() != 0:
        pytest.skip("starts a sandbox of its own: needs root and no LLMOPS_TEST_KUBECONFIG")
    real = binaries.locate_node_binaries(None, build=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubelet").write_text(BROKEN_KUBELET)
    (bin_dir / "kubelet").chmod(0o755)
    (bin_dir / "kube-proxy").symlink_to(real["kube-proxy"])
    return bin_dir


def test_a_kubelet_that_never_registers_stops_the_start_with_its_log_and_cleans_up(tmp_path, broken_bin_dir):
    root = tmp_path / "sandbox"
    nodes_file = tmp_path / "nodes.yaml"
    nodes_file.write_text(NODES)
    iptables_before = realnodes.host_iptables()
    started = time.monotonic()
    try:
        with pytest.raises(lifecycle.SandboxError) as failed:
            lifecycle.up(lifecycle.UpOptions(dir=root, bin_dir=str(broken_bin_dir), nodes_file=str(nodes_file),
                                             bridge=BRIDGE, pod_cidr=POD_CIDR, prometheus=False, build=False),
                         progress=lambda m: print(f"[{time.monotonic() - started:5.1f}s] {m}"))
        message = str(failed.value)
        assert re.search(r"node lonely: the kubelet exited [3-9] times without registering", message), message
        assert "planted failure: this kubelet cannot start" in message, message
        # Everything it started is gone; only the state directory (its logs) stays for the user.
        cgroup_prefix = cgroups.node_cgroup(BRIDGE, "lonely").rsplit("/", 1)[0]
        left = [item for item in realnodes.leftovers(root, BRIDGE, POD_CIDR, cgroup_prefix)
                if not item.startswith("state directory")]
        assert left == [], "left behind by a failed start:\n" + "\n".join(left)
        assert realnodes.host_iptables() == iptables_before
        assert (root / "logs" / "lonely.kubelet.log").exists()
    finally:
        lifecycle.down(root, progress=lambda m: None)
