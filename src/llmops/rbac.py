"""The operator's RBAC rules: the one source for the chart's (Cluster)Roles
(`charts/llmops/templates/_rbac_rules.tpl` is generated from here: `llmops rbac --helm`), for
the chart tests and for the sandbox, whose test operator runs with exactly these rules and
fails the suite on any 403 (llmops_sandbox.fixtures).

Least privilege: exactly the calls the operator makes, no wildcards. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import yaml


@dataclass(frozen=True)
class Rule:
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str                           # which calls need it
    only_if: Optional[str] = None      # a chart condition: "leaderWorkerSet", "activator" or "namedNamespaces"

    def to_dict(self) -> dict:
        return {"apiGroups": [self.group], "resources": list(self.resources), "verbs": list(self.verbs)}


# In every namespace the operator watches (cluster-wide: in the ClusterRole).
NAMESPACED = (
    Rule("llmops.io", ("llmdeployments",), ("get", "list", "watch", "patch"),
         "Kopf lists/watches them and patches finalizers and its progress annotations; kube.py gets them"),
    Rule("llmops.io", ("llmdeployments/status",), ("patch",), "kube.py patches status"),
    Rule("llmops.io", ("llmdeployments/scale",), ("patch",), "the autoscaler writes replicas through /scale"),
    Rule("apps", ("deployments", "statefulsets", "daemonsets"), ("get", "list", "watch", "create", "patch", "delete"),
         "children: Kopf watches them; kube.py gets and server-side applies them (a PATCH; the API server "
         "also checks create when it creates the object) and deletes what the spec no longer needs "
         "(single-node <-> multi-node, fewer groups, pre-staging turned off)"),
    Rule("", ("services",), ("get", "list", "watch", "create", "patch", "delete"), "children, as above"),
    Rule("policy", ("poddisruptionbudgets",), ("get", "list", "watch", "create", "patch"),
         "kube.py gets and applies the PDB; Kopf watches PDBs like every child (the operator's caches are Kopf indices)"),
    Rule("", ("pods",), ("list", "watch", "patch", "delete"),
         "Kopf watches pods; kube.py lists them, patches the pod-deletion-cost before a scale-down and a "
         "group's member fingerprint, and deletes the pods of a broken group (restart)"),
    Rule("", ("pods/status",), ("patch",), "the leader's readiness gate (llmops.io/group-ready)"),
    Rule("", ("endpoints",), ("get", "list", "watch", "create", "patch"),
         "spec.activator: while nothing is Ready a deployment's Service points at the activator; the "
         "operator gets the activator's Endpoints, writes the Service's own, and watches them to "
         "re-write them if overwritten", only_if="activator"),
    Rule("", ("events",), ("create",), "core v1 Events (Kopf's and ours; Kopf never posts events.k8s.io Events)"),
    Rule("leaderworkerset.x-k8s.io", ("leaderworkersets",), ("get", "list", "watch", "create", "patch", "delete"),
         "multi-node groups as LeaderWorkerSets, where that CRD is installed", only_if="leaderWorkerSet"),
)

# Cluster-scoped, always in the ClusterRole.
CLUSTER = (
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"), "Kopf's resource scanning; "
         "they also tell the operator when LeaderWorkerSet or PodMonitor appear or go while it runs"),
    Rule("", ("nodes",), ("list", "watch"), "the planner's GPU inventory (a Kopf index)"),
    Rule("", ("namespaces",), ("list", "watch"), "Kopf, when it watches named namespaces only",
         only_if="namedNamespaces"),
)

_HELM_CONDITIONS = {"leaderWorkerSet": ".Values.rbac.leaderWorkerSet",
                    "activator": ".Values.activator.enabled",
                    "namedNamespaces": 'not (include "llmops.clusterwide" .)'}


def namespaced_rules(leader_worker_set: bool = False, activator: bool = False) -> list[dict]:
    wanted = {None, "leaderWorkerSet" if leader_worker_set else None, "activator" if activator else None}
    return [r.to_dict() for r in NAMESPACED if r.only_if in wanted]


def cluster_rules(named_namespaces: bool = False) -> list[dict]:
    return [r.to_dict() for r in CLUSTER if r.only_if is None or (r.only_if == "namedNamespaces" and named_namespaces)]


def clusterwide_role(name: str = "llmops", leader_worker_set: bool = False, activator: bool = False) -> dict:
    """A ClusterRole for an operator watching every namespace (what the chart installs by default)."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": cluster_rules() + namespaced_rules(leader_worker_set, activator)}


def _helm_rules(name: str, rules: tuple[Rule, ...]) -> list[str]:
    lines = [f'{{{{- define "{name}" -}}}}']
    for rule in rules:
        if rule.only_if:
            lines.append(f"{{{{- if {_HELM_CONDITIONS[rule.only_if]} }}}}")
        group = rule.group or '""'    # the core group, as YAML spells an empty string
        lines += [f"- apiGroups: [{group}]",
                  f"  resources: [{', '.join(rule.resources)}]",
                  f"  verbs: [{', '.join(rule.verbs)}]"]
        if rule.only_if:
            lines.append("{{- end }}")
    return lines + ["{{- end }}"]


def helm_template() -> str:
    """charts/llmops/templates/_rbac_rules.tpl: the rules as the named templates rbac.yaml uses."""
    header = ["{{- /*",
              "Generated from src/llmops/rbac.py (`llmops rbac --helm > charts/llmops/templates/_rbac_rules.tpl`);",
              "edit the rules there. Why each rule exists:"]
    header += [f"  {r.group or 'core'}/{','.join(r.resources)}: {r.why}" for r in NAMESPACED + CLUSTER]
    header.append("*/ -}}")
    return "\n".join(header + _helm_rules("llmops.namespacedRules", NAMESPACED)
                     + _helm_rules("llmops.clusterRules", CLUSTER)) + "\n"


def role_yaml(leader_worker_set: bool = False, activator: bool = False) -> str:
    return yaml.safe_dump(clusterwide_role(leader_worker_set=leader_worker_set, activator=activator), sort_keys=False)
