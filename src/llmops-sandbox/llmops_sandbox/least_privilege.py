"""Run the test operator with exactly the chart's RBAC rules (llmops.rbac), not as admin.

A ServiceAccount bound to a ClusterRole made from llmops.rbac gets a bound token
(TokenRequest), written into a kubeconfig next to the admin's; the operator started with it
is refused anything the rules forgot, and `refusals` finds those refusals in its log, so the
suite that drives the operator fails on a missing rule instead of passing as admin."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmops import rbac

NAMESPACE = "llmops-system"
NAME = "llmops-operator"
TOKEN_SECONDS = 24 * 3600

# How an RBAC refusal shows in the operator's log: Kopf's warning for a watch it may not make,
# or the RBAC authorizer's message (in Kopf's APIForbiddenError and in the official client's
# ApiException body alike). Not every 403 is RBAC: writes into a terminating namespace are
# refused with 403 NamespaceTerminating, which says nothing about the rules.
_REFUSAL = re.compile(r"Not enough permissions|"
                      rf'User \\?"system:serviceaccount:{NAMESPACE}:{NAME}\\?" cannot')


def _create_or_replace(create, replace, name: str, body: dict, *namespace: str) -> None:
    try:
        create(*namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        replace(name, *namespace, body)


def operator_kubeconfig(api: client.ApiClient, admin_kubeconfig: str, dest: Path) -> Path:
    """A kubeconfig for the cluster of `admin_kubeconfig` whose user has only the operator's rules."""
    core, rbac_api = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    try:
        core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": NAME}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    # With the optional rules too, as a chart installed with them grants: e2e/test_activator.py
    # restarts this operator with --activator, and tests/integration/test_capability_change.py
    # installs LeaderWorkerSet while it runs (rbac.leaderWorkerSet: true).
    role = rbac.clusterwide_role(NAME, leader_worker_set=True, activator=True)
    _create_or_replace(rbac_api.create_cluster_role, rbac_api.replace_cluster_role, NAME, role)
    binding = {"metadata": {"name": NAME},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
               "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]}
    _create_or_replace(rbac_api.create_cluster_role_binding, rbac_api.replace_cluster_role_binding, NAME, binding)
    token = core.create_namespaced_service_account_token(
        NAME, NAMESPACE, {"spec": {"expirationSeconds": TOKEN_SECONDS}}).status.token

    config = yaml.safe_load(Path(admin_kubeconfig).read_text())
    for entry in config["users"]:
        entry["user"] = {"token": token}
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)
    return dest


def refusals(log: str) -> list[str]:
    """The log lines that show the operator was refused an API call."""
    return [line for line in log.splitlines() if _REFUSAL.search(line)]
