"""The chart's activator: off by default; when on, least-privilege RBAC, the restricted Pod
Security profile, the operator's image with another subcommand, and the operator told where it is."""

from __future__ import annotations

from llmops_sandbox.tools.chart import render

ACTIVATOR = {"app.kubernetes.io/component": "activator"}


def activator_docs(docs):
    return [d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "activator"]


def operator_args(docs):
    deployment = next(d for d in docs if d["kind"] == "Deployment"
                      and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_off_by_default_and_the_operator_is_not_told_of_one():
    docs = render({})
    assert activator_docs(docs) == []
    assert not any(a.startswith("--activator") for a in operator_args(docs))


def test_on_it_runs_the_operator_image_as_llmops_activator_and_the_operator_points_at_its_service():
    docs = render({"activator": {"enabled": True}})
    mine = {d["kind"]: d for d in activator_docs(docs)}
    assert set(mine) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"}
    pod = mine["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    operator_image = next(d for d in docs if d["kind"] == "Deployment" and d is not mine["Deployment"])[
        "spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == operator_image
    assert container["command"] == ["llmops", "activator"]
    assert pod["serviceAccountName"] == mine["ServiceAccount"]["metadata"]["name"]
    service = mine["Service"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "metrics"}
    assert f"--activator=llmops/{service['metadata']['name']}" in operator_args(docs)


def test_activator_rbac_is_exactly_list_and_wake_llmdeployments_and_list_pods():
    mine = {d["kind"]: d for d in activator_docs(render({"activator": {"enabled": True}}))}
    rules = {(g, r): set(rule["verbs"]) for rule in mine["ClusterRole"]["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {("llmops.io", "llmdeployments"): {"list", "patch"}, ("", "pods"): {"list"}}
    binding = mine["ClusterRoleBinding"]
    assert binding["subjects"][0]["name"] == mine["ServiceAccount"]["metadata"]["name"]


def test_activator_pod_meets_the_restricted_pod_security_profile():
    mine = {d["kind"]: d for d in activator_docs(render({"activator": {"enabled": True}}))}
    pod = mine["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("volumes")
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False


def test_namespaced_operator_may_read_only_the_activators_endpoints():
    docs = render({"activator": {"enabled": True}, "operator": {"watchNamespaces": ["team-a"]}})
    [role] = [d for d in activator_docs(docs) if d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "llmops"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["endpoints"],
                              "resourceNames": [role["metadata"]["name"].removesuffix("-endpoints")],
                              "verbs": ["get"]}]


def test_the_operator_may_manage_endpoints_only_with_the_activator_on():
    def operator_grants(docs):
        role = next(d for d in docs if d["kind"] == "ClusterRole"
                    and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        return {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}

    assert ("", "endpoints") not in operator_grants(render({}))
    assert operator_grants(render({"activator": {"enabled": True}}))[("", "endpoints")] == \
        {"get", "list", "watch", "create", "patch"}
