"""High availability against the real API server: two operator processes with --leader-elect;
one holds the Lease and acts, the other stands by (healthy, idle); SIGKILL the leader and the
standby takes over within 15 s."""

from __future__ import annotations

import socket
import time

import pytest
from kubernetes import client

from llmops_sandbox.operator_process import start_operator
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

LEASE = "llmops-operator-ha-test"


def holder(api_client, namespace):
    try:
        return client.CoordinationV1Api(api_client).read_namespaced_lease(LEASE, namespace).spec.holder_identity
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_the_standby_takes_over_within_15s_of_the_leader_being_killed(sandbox, kubeconfig, api_client, crd_installed,
                                                                      namespace, tmp_path):
    sandbox.require_sandbox("runs two operator processes")
    args = ("--leader-elect", "--leader-election-namespace", namespace, "--leader-election-id", LEASE,
            "-n", namespace)
    first = start_operator(str(kubeconfig), tmp_path / "first.log", extra_args=args)
    identity = {f"{socket.gethostname()}-{first.process.pid}": first}
    wait_for(lambda: holder(api_client, namespace) in identity, 30, "the first operator never took the lease")
    second = start_operator(str(kubeconfig), tmp_path / "second.log", extra_args=args)  # healthy as a standby
    identity[f"{socket.gethostname()}-{second.process.pid}"] = second
    try:
        leader_id = holder(api_client, namespace)
        leader = identity[leader_id]
        standby = second if leader is first else first
        time.sleep(5)  # several renewals: the standby must stay a standby
        assert holder(api_client, namespace) == leader_id
        assert "acquired the leader lease" not in standby.log_path.read_text()
        assert "standing by" in standby.log_path.read_text()

        leader.process.kill()  # SIGKILL: no release, the lease must run out
        killed = time.monotonic()
        new = wait_for(lambda: (h := holder(api_client, namespace)) not in (None, leader_id) and h, 20,
                       "the standby did not take the lease over")
        took = time.monotonic() - killed
        assert identity[new] is standby
        assert took < 15, f"takeover took {took:.1f}s"
        wait_for(lambda: "acquired the leader lease" in standby.log_path.read_text(), 10, "standby did not log it")
        print(f"standby took over {took:.1f}s after the leader was killed")
    finally:
        first.stop()
        second.stop()


def test_a_clean_stop_hands_over_at_once(sandbox, kubeconfig, api_client, crd_installed, namespace, tmp_path):
    sandbox.require_sandbox("runs two operator processes")
    args = ("--leader-elect", "--leader-election-namespace", namespace, "--leader-election-id", LEASE,
            "-n", namespace)
    first = start_operator(str(kubeconfig), tmp_path / "first.log", extra_args=args)
    wait_for(lambda: holder(api_client, namespace), 30, "the first operator never took the lease")
    second = start_operator(str(kubeconfig), tmp_path / "second.log", extra_args=args)
    try:
        first.stop()  # SIGTERM: releases the lease
        stopped = time.monotonic()
        wait_for(lambda: "acquired the leader lease" in second.log_path.read_text(), 10,
                 "the standby did not take over promptly after a clean stop")
        assert time.monotonic() - stopped < 6
    finally:
        second.stop()
