"""End-to-end scenarios. They run against whatever cluster the session fixture gives:
the local sandbox by default (the operator runs as a local process with the sandbox's
Prometheus), or the cluster named by LLMOPS_TEST_KUBECONFIG (kind: the operator installed
by the Helm chart, Prometheus in the cluster). Scenarios that must stop Prometheus or
restart the operator process run on the sandbox only."""

from __future__ import annotations

import os

import pytest

from llmops.testing.operator import install_crd, start_operator

FOREIGN_CLUSTER = bool(os.environ.get("LLMOPS_TEST_KUBECONFIG"))


@pytest.fixture(scope="session")
def prometheus_url(sandbox):
    if FOREIGN_CLUSTER:
        return os.environ.get("LLMOPS_TEST_PROMETHEUS_URL")
    return sandbox.prometheus_url or sandbox.start_prometheus()


@pytest.fixture(scope="session")
def e2e_operator(kubeconfig, api_client, prometheus_url, tmp_path_factory):
    """The operator process for the scenarios (on a foreign cluster: the installed one)."""
    if FOREIGN_CLUSTER:
        yield None
        return
    install_crd(api_client)
    log = tmp_path_factory.mktemp("e2e-operator") / "operator.log"
    op = start_operator(str(kubeconfig), log, prometheus_url=prometheus_url)
    yield op
    op.stop()


@pytest.fixture
def apps_api(api_client):
    from kubernetes import client

    return client.AppsV1Api(api_client)
