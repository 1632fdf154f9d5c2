"""pytest fixtures shared by tests/integration and e2e: ONE operator per test session.

On the sandbox the operator runs as a local process with the sandbox's Prometheus, as a
ServiceAccount holding only the chart's RBAC rules (llmops.rbac): any API call the rules do
not allow fails the session at teardown, naming the refused calls. On a cluster named by
LLMOPS_TEST_KUBECONFIG (kind) it is the operator the Helm chart installed, and Prometheus is
at LLMOPS_TEST_PROMETHEUS_URL.
"""

from __future__ import annotations

import os

import pytest
from kubernetes import client

from llmops_sandbox.least_privilege import operator_kubeconfig, refusals
from llmops_sandbox.operator_process import install_crd, start_operator

FOREIGN_CLUSTER = bool(os.environ.get("LLMOPS_TEST_KUBECONFIG"))


@pytest.fixture(scope="session")
def prometheus_url(sandbox):
    if FOREIGN_CLUSTER:
        url = os.environ.get("LLMOPS_TEST_PROMETHEUS_URL")
        if not url:
            pytest.fail("LLMOPS_TEST_KUBECONFIG is set but LLMOPS_TEST_PROMETHEUS_URL is not; "
                        "set it to the cluster's Prometheus (e2e/kind/run-e2e.sh does)")
        return url
    return sandbox.prometheus_url or sandbox.start_prometheus()


def _chart_operator_available(api_client) -> bool:
    selector = "app.kubernetes.io/part-of=llmops,app.kubernetes.io/component=operator"
    deployments = client.AppsV1Api(api_client).list_deployment_for_all_namespaces(label_selector=selector).items
    return any((d.status.available_replicas or 0) > 0 for d in deployments)


@pytest.fixture(scope="session")
def crd_installed(api_client):
    """The LLMDeployment CRD, created or updated from the models (the chart's job on kind)."""
    if not FOREIGN_CLUSTER:
        install_crd(api_client)
    return True


@pytest.fixture(scope="session")
def operator(kubeconfig, api_client, crd_installed, prometheus_url, tmp_path_factory):
    """The operator under test: a local process here, the chart's pod on a foreign cluster (None)."""
    if FOREIGN_CLUSTER:
        if not _chart_operator_available(api_client):
            pytest.fail("no available llmops operator Deployment on the cluster; install the chart "
                        "(e2e/kind/run-e2e.sh does)")
        yield None
        return
    workdir = tmp_path_factory.mktemp("operator")
    least = operator_kubeconfig(api_client, str(kubeconfig), workdir / "kubeconfig")
    op = start_operator(str(least), workdir / "operator.log", prometheus_url=prometheus_url)
    yield op
    op.stop()
    refused = refusals(op.log_path.read_text(errors="replace"))
    if refused:
        pytest.fail("the operator was refused API calls its RBAC rules (src/llmops/rbac.py) do not allow; "
                    "add the verbs there and regenerate the chart's rules (`llmops rbac --helm`):\n"
                    + "\n".join(refused[:20]))


@pytest.fixture(scope="session")
def e2e_operator(operator):
    return operator


@pytest.fixture
def apps_api(api_client):
    return client.AppsV1Api(api_client)


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def crs(api_client):
    return client.CustomObjectsApi(api_client)
