"""The test operator's identity (llmops_sandbox.least_privilege): exactly the rules of
src/llmops/rbac.py, so a call the rules forgot is refused and found in the operator's log."""

import kubernetes
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmops_sandbox.least_privilege import operator_kubeconfig, refusals

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def restricted(api_client, kubeconfig, tmp_path_factory):
    path = operator_kubeconfig(api_client, str(kubeconfig), tmp_path_factory.mktemp("least") / "kubeconfig")
    api = kubernetes.config.new_client_from_config(config_file=str(path))
    yield api
    api.close()


def test_it_may_do_what_the_rules_allow(restricted, namespace):
    core = client.CoreV1Api(restricted)
    assert core.list_pod_for_all_namespaces(limit=1) is not None
    assert core.list_node(limit=1) is not None
    client.AppsV1Api(restricted).list_namespaced_deployment(namespace)


def test_anything_else_is_refused_and_the_refusal_is_recognised(restricted, namespace):
    core = client.CoreV1Api(restricted)
    for call in (lambda: core.list_namespaced_secret(namespace),
                 lambda: core.read_namespaced_pod("nothing", namespace),     # pods: list/watch, not get
                 lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "x"}})):
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403
        assert refusals(str(refused.value)), str(refused.value)
