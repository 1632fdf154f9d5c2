from pathlib import Path

import pytest
import yaml

from llmops_sandbox.binaries import cache_dir, candidate_dirs, find_binary
from llmops_sandbox.controlplane import (
    ControlPlaneFiles, Ports, apiserver_argv, controller_manager_argv, kubeconfig_yaml,
)
from llmops.waiting import wait_for

PORTS = Ports(2379, 2380, 6443, 10257, 10259, 9090)
FILES = ControlPlaneFiles(*(Path(f"/s/{n}") for n in "ca cakey crt key sa sapub tokens kubeconfig etcd certs".split()))


def flags(argv):
    return dict(a[2:].split("=", 1) for a in argv[1:])


def test_apiserver_flags_enable_rbac_tokens_and_webhooks_at_endpoint_ips():
    f = flags(apiserver_argv(Path("/bin/kube-apiserver"), PORTS, FILES, "10.244.0.1"))
    assert f["authorization-mode"] == "Node,RBAC"
    assert f["enable-aggregator-routing"] == "true"
    assert f["service-account-signing-key-file"] == "/s/sa" and f["service-account-key-file"] == "/s/sapub"
    assert f["service-account-issuer"] and f["advertise-address"] == "10.244.0.1"
    assert f["bind-address"] == "0.0.0.0" and f["secure-port"] == "6443"


def test_controller_manager_skips_nodeipam_and_signs_tokens():
    f = flags(controller_manager_argv(Path("/bin/kcm"), PORTS, FILES))
    assert f["controllers"] == "*,-nodeipam"
    assert f["service-account-private-key-file"] == "/s/sa" and f["root-ca-file"] == "/s/ca"


def test_kubeconfig_uses_token_and_ca():
    cfg = yaml.safe_load(kubeconfig_yaml("https://127.0.0.1:6443", Path("/s/ca.crt"), "tok"))
    assert cfg["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:6443", "certificate-authority": "/s/ca.crt"}
    assert cfg["users"][0]["user"] == {"token": "tok"}


def test_binary_search_order(tmp_path):
    env = {"KUBEBUILDER_ASSETS": "/kb", "PATH": "/usr/bin:/bin", "HOME": "/home/u"}
    assert candidate_dirs("/explicit", env) == [Path("/explicit"), Path("/kb"), Path("/usr/bin"), Path("/bin"),
                                                Path("/home/u/.cache/llmops/control-plane/v1.20.2")]
    assert cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/llmops/control-plane/v1.20.2")
    (tmp_path / "b").mkdir()
    exe = tmp_path / "b" / "etcd"
    exe.write_text("#!/bin/sh\n")
    assert find_binary("etcd", [tmp_path / "b"]) is None   # not executable
    exe.chmod(0o755)
    assert find_binary("etcd", [tmp_path / "a", tmp_path / "b"]) == exe


def test_wait_for_returns_the_value_or_times_out_with_the_message():
    calls = iter([0, None, "done"])
    assert wait_for(lambda: next(calls), 5, "never", interval=0) == "done"

    def broken():
        raise RuntimeError("still starting")
    with pytest.raises(TimeoutError, match=r"server up \(waited 0.05s; last error: RuntimeError\('still starting'\)\)"):
        wait_for(broken, 0.05, "server up", interval=0.01)


def test_a_directory_with_all_three_binaries_wins_over_a_partial_one(tmp_path):
    from llmops_sandbox.binaries import locate
    partial, full = tmp_path / "envtest", tmp_path / "full"
    for d, names in ((partial, ["kube-apiserver", "etcd"]),
                     (full, ["kube-apiserver", "kube-controller-manager", "kube-scheduler"])):
        d.mkdir()
        for n in names:
            (d / n).write_text("#!/bin/sh\n")
            (d / n).chmod(0o755)
    found = locate(None, env={"KUBEBUILDER_ASSETS": str(partial), "PATH": str(full), "HOME": str(tmp_path)},
                   build=False)
    assert found["kube-apiserver"] == full / "kube-apiserver"
    assert found["etcd"] == partial / "etcd"


def test_removed_insecure_port_flags_are_dropped_for_newer_releases():
    from llmops_sandbox.binaries import parse_minor
    from llmops_sandbox.controlplane import scheduler_argv
    assert parse_minor("Kubernetes v1.30.1\n") == 30 and parse_minor("garbage") == 20
    assert "--insecure-port=0" in apiserver_argv(Path("a"), PORTS, FILES, "10.244.0.1", 20)
    assert "--insecure-port=0" not in apiserver_argv(Path("a"), PORTS, FILES, "10.244.0.1", 30)
    assert "--port=0" in scheduler_argv(Path("s"), PORTS, FILES, 20)
    assert "--port=0" not in scheduler_argv(Path("s"), PORTS, FILES, 30)


def test_a_session_releases_the_sandbox_only_when_nobody_else_needs_it(tmp_path):
    import os
    import subprocess

    from llmops_sandbox.lifecycle import PINNED_FILE, register_user, release_user
    register_user(tmp_path, os.getpid())
    other = subprocess.Popen(["sleep", "30"])
    try:
        register_user(tmp_path, other.pid)
        assert not release_user(tmp_path, os.getpid())       # another live session uses it
    finally:
        other.kill()
        other.wait()
    register_user(tmp_path, os.getpid())
    assert release_user(tmp_path, os.getpid())              # the other session is gone
    (tmp_path / PINNED_FILE).touch()
    register_user(tmp_path, os.getpid())
    assert not release_user(tmp_path, os.getpid())           # pinned by `llmops sandbox up`
