"""The operator's RBAC rules (src/llmops/rbac.py): least privilege, and each says why."""

from llmops import rbac
from llmops_sandbox.least_privilege import refusals


def test_no_wildcards_and_every_rule_says_why():
    for rule in rbac.NAMESPACED + rbac.CLUSTER:
        assert "*" not in rule.group and "*" not in rule.resources and "*" not in rule.verbs
        assert len(rule.why) > 10


def test_optional_rules_appear_only_when_asked():
    groups = lambda rules: {r["apiGroups"][0] for r in rules}  # noqa: E731
    assert "leaderworkerset.x-k8s.io" not in groups(rbac.namespaced_rules())
    assert "leaderworkerset.x-k8s.io" in groups(rbac.namespaced_rules(leader_worker_set=True))
    resources = lambda rules: [r["resources"] for r in rules]  # noqa: E731
    assert ["endpoints"] not in resources(rbac.namespaced_rules())
    assert ["endpoints"] in resources(rbac.namespaced_rules(activator=True))
    assert ["endpoints"] not in resources(rbac.namespaced_rules(leader_worker_set=True))
    assert ["namespaces"] not in [r["resources"] for r in rbac.cluster_rules()]
    assert ["namespaces"] in [r["resources"] for r in rbac.cluster_rules(named_namespaces=True)]


def test_the_clusterwide_role_holds_cluster_and_namespaced_rules():
    role = rbac.clusterwide_role("x")
    assert role["kind"] == "ClusterRole" and role["metadata"] == {"name": "x"}
    assert role["rules"] == rbac.cluster_rules() + rbac.namespaced_rules()


def test_refusals_are_found_in_an_operator_log():
    log = "\n".join([
        "2026-12-01 INFO kopf.objects: Handler 'on_spec' succeeded.",
        "2026-12-01 WARNING kopf._core.reactor.observation: Not enough permissions to watch for resources: ...",
        'pods "p" is forbidden: User "system:serviceaccount:llmops-system:llmops-operator" cannot get resource "pods"',
        'HTTP response body: {"message":"pods \\"p\\" is forbidden: User \\"system:serviceaccount:llmops-system:'
        'llmops-operator\\" cannot get resource \\"pods\\""}',
        # 403s that say nothing about the rules
        "the pod's status says: forbidden: exceeded quota",
        "kubernetes.client.exceptions.ForbiddenException: (403)",
        'HTTP response body: {"message":"services \\"chat\\" is forbidden: unable to create new content in '
        'namespace t-x because it is being terminated","reason":"Forbidden","code":403}',
    ])
    assert len(refusals(log)) == 3
    assert refusals("all fine\nReady") == []
