from pathlib import Path

import pytest
import yaml

from llmops.sandbox.binaries import cache_dir, candidate_dirs, find_binary
from llmops.sandbox.controlplane import (
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
