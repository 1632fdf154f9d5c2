"""The Helm chart renders, lints and carries the objects, security and RBAC the operator needs.

Needs the helm binary (`python -m llmops_sandbox.tools.helm` fetches it once; these tests do too)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from llmops import rbac, webhook
from llmops.crd import build_crd
from llmops_sandbox.tools.chart import CHART_DIR, HelmError, lint, render
from llmops_sandbox.tools.chart import VALUE_COMBINATIONS as COMBINATIONS

REPO = Path(__file__).resolve().parents[2]
MONITORING_API = "monitoring.coreos.com/v1"
RULES_TEMPLATE = CHART_DIR / "templates" / "_rbac_rules.tpl"



def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def default_docs():
    return render()


@pytest.mark.parametrize("name", sorted(COMBINATIONS))
def test_lint_and_template_pass(name):
    values = COMBINATIONS[name]
    result = lint(values)
    assert result.returncode == 0, result.stdout + result.stderr
    docs = render(values, api_versions=[MONITORING_API])
    assert docs and all(d.get("apiVersion") and d.get("kind") and d["metadata"].get("name") for d in docs)


def test_chart_crd_is_the_generated_crd():
    chart_crd = (CHART_DIR / "crds" / "llmdeployments.llmops.io.yaml").read_text()
    assert chart_crd == (REPO / "crds" / "llmdeployments.llmops.io.yaml").read_text(), \
        "charts/llmops/crds/ differs from crds/; fix: cp crds/llmdeployments.llmops.io.yaml charts/llmops/crds/"
    assert yaml.safe_load(chart_crd) == build_crd()


def test_operator_deployment_is_hardened_and_probed(default_docs):
    deployment = one(default_docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "webhook": 9443}
    assert container["args"][:3] == ["run", "--metrics-port=8080", "--health-port=8081"]
    assert "--webhook-port=9443" in container["args"]
    cert_dir = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--webhook-cert-dir="))
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["webhook-tls"] == cert_dir
    assert mounts["tmp"] == "/tmp"  # read-only root filesystem needs a writable /tmp


def test_args_follow_values():
    docs = render(COMBINATIONS["lws-and-prometheus"] | {"operator": {
        "prometheusUrl": "http://p:9090", "watchNamespaces": ["a", "b"], "verbose": True}})
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--prometheus-url=http://p:9090" in args and "--verbose" in args
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=a", "--namespace=b"]


def test_without_webhook_no_server_flags_certificate_or_configuration():
    docs = render(COMBINATIONS["no-webhook"])
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not any(a.startswith("--webhook") for a in container["args"])
    assert not by_kind(docs, "ValidatingWebhookConfiguration") and not by_kind(docs, "Secret")
    assert "webhook" not in {p["name"] for p in one(docs, "Service")["spec"]["ports"]}


# -- RBAC ------------------------------------------------------------------------------

def grants(role) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


# (apiGroup, resource) -> verbs: every call the operator makes, from the one source
# (src/llmops/rbac.py says which call needs which rule).
EXPECTED_NAMESPACED = grants({"rules": rbac.namespaced_rules()})
EXPECTED_CLUSTER = grants({"rules": rbac.cluster_rules()})


def test_the_charts_rules_are_generated_from_the_one_source():
    assert RULES_TEMPLATE.read_text() == rbac.helm_template(), \
        "charts/llmops/templates/_rbac_rules.tpl drifted from src/llmops/rbac.py; fix: " \
        "llmops rbac --helm > charts/llmops/templates/_rbac_rules.tpl"
    # what the chart tests below expect, spelled out once: a rule lost in the source shows here
    assert EXPECTED_NAMESPACED[("llmops.io", "llmdeployments/scale")] == {"patch"}
    assert EXPECTED_NAMESPACED[("", "pods")] == {"list", "watch", "patch", "delete"}
    assert ("", "namespaces") not in EXPECTED_CLUSTER and len(EXPECTED_NAMESPACED) == 11


def assert_no_wildcards(role):
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {role['kind']} {role['metadata']['name']}: {rule}"
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule


def test_clusterwide_role_grants_exactly_what_the_operator_uses(default_docs):
    role = one(default_docs, "ClusterRole")
    assert_no_wildcards(role)
    assert grants(role) == EXPECTED_CLUSTER | EXPECTED_NAMESPACED
    binding = one(default_docs, "ClusterRoleBinding")
    sa = one(default_docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "llmops"}]
    assert one(default_docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert not by_kind(default_docs, "Role")


def test_namespaced_mode_grants_namespaced_access_only_in_watched_namespaces():
    docs = render(COMBINATIONS["namespaced"])
    cluster_role = one(docs, "ClusterRole")
    # Kopf lists namespaces when it watches named ones; nothing namespaced is granted cluster-wide.
    assert grants(cluster_role) == EXPECTED_CLUSTER | {("", "namespaces"): {"list", "watch"}}
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert_no_wildcards(role)
        assert grants(role) == EXPECTED_NAMESPACED
    bindings = by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "llmops" for b in bindings)


def test_leaderworkerset_access_only_when_enabled(default_docs):
    assert ("leaderworkerset.x-k8s.io", "leaderworkersets") not in grants(one(default_docs, "ClusterRole"))
    docs = render(COMBINATIONS["lws-and-prometheus"])
    assert grants(one(docs, "ClusterRole"))[("leaderworkerset.x-k8s.io", "leaderworkersets")] == \
        {"get", "list", "watch", "create", "patch", "delete"}


def test_rbac_create_false_renders_no_roles():
    docs = render(COMBINATIONS["everything-off"])
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                                  "ServiceAccount")]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"


# -- webhook ----------------------------------------------------------------------------

def test_webhook_configuration_only_judges_create_and_update_of_the_main_resource(default_docs):
    config = one(default_docs, "ValidatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Fail" and 1 <= hook["timeoutSeconds"] <= 10
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    (rule,) = hook["rules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["resources"] == ["llmdeployments"]  # not llmdeployments/status, /scale or /*
    assert rule["apiGroups"] == ["llmops.io"] and rule["apiVersions"] == ["v1alpha1"]
    service = one(default_docs, "Service")
    assert hook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"], "namespace": "llmops", "port": 443,
        "path": f"/{webhook.HANDLER_ID}"}
    port = next(p for p in service["spec"]["ports"] if p["name"] == "webhook")
    assert port["port"] == 443 and port["targetPort"] == "webhook"


def test_generated_certificate_is_signed_by_the_ca_bundle_and_names_the_service(default_docs):
    secret = one(default_docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    hook = one(default_docs, "ValidatingWebhookConfiguration")["webhooks"][0]
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    assert secret["data"]["ca.crt"] == hook["clientConfig"]["caBundle"]
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    service = one(default_docs, "Service")["metadata"]["name"]
    assert f"{service}.llmops.svc" in sans and f"{service}.llmops.svc.cluster.local" in sans
    assert cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=3000)
    volume = next(v for v in one(default_docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]


def test_cert_manager_mode_uses_a_certificate_and_ca_injection():
    docs = render(COMBINATIONS["cert-manager"])
    certificate = one(docs, "Certificate")
    issuer = one(docs, "Issuer")
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    assert not by_kind(docs, "Secret")  # cert-manager writes it
    config = one(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"llmops/{certificate['metadata']['name']}"
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    volume = next(v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    docs = render(COMBINATIONS["cert-manager-issuer"])
    assert not by_kind(docs, "Issuer")
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "corp-ca"}


def test_existing_certificate_mode_uses_the_given_secret_and_ca():
    docs = render(COMBINATIONS["existing-cert"])
    hook = one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == base64.b64encode(b"PEM").decode()
    assert hook["failurePolicy"] == "Ignore"
    volume = next(v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == "my-tls"
    assert not by_kind(docs, "Secret")


# -- monitoring -------------------------------------------------------------------------

def test_prometheus_operator_objects_only_when_the_api_exists(default_docs):
    kinds = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [d for d in default_docs if d["kind"] in kinds]
    present = render(api_versions=[MONITORING_API])
    assert {d["kind"] for d in present} >= kinds
    forced = render(COMBINATIONS["monitoring-forced"])
    assert all(one(forced, k)["metadata"]["labels"]["release"] == "kps" for k in kinds)


def test_service_monitor_keeps_the_operators_namespace_label():
    docs = render(api_versions=[MONITORING_API])
    monitor = one(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    service = one(docs, "Service")
    assert all(service["metadata"]["labels"][k] == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())


def test_pod_monitor_selects_vllm_pods_and_labels_them_as_the_autoscaler_queries():
    from llmops.autoscale.queries import DEPLOYMENT_LABEL
    from llmops.render.meta import APP_NAME, MANAGED_BY

    monitor = one(render(api_versions=[MONITORING_API]), "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": APP_NAME,
                                                         "app.kubernetes.io/managed-by": MANAGED_BY}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "http"  # the vLLM container port name (llmops.render.pod)
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets[DEPLOYMENT_LABEL] == ["__meta_kubernetes_pod_label_llmops_io_deployment"]
    namespaced = one(render(COMBINATIONS["namespaced"], api_versions=[MONITORING_API]), "PodMonitor")
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def test_dashboards_are_configmaps_for_the_grafana_sidecar(default_docs):
    maps = by_kind(default_docs, "ConfigMap")
    files = sorted(p.name for p in (CHART_DIR / "dashboards").glob("*.json"))
    assert sorted(k for m in maps for k in m["data"]) == files and len(files) == 2
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name, text), = config_map["data"].items()
        assert text.strip() == (CHART_DIR / "dashboards" / name).read_text().strip()


# -- values schema ----------------------------------------------------------------------

@pytest.mark.parametrize("values, message", [
    ({"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
    ({"webhook": {"timeoutSeconds": 60}}, "/webhook/timeoutSeconds"),
    ({"webhook": {"certificates": {"mode": "existing"}}}, "/webhook/certificates/existingSecret"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "/operator/watchNamespaces/0"),
    ({"operator": {"metricsPort": 0}}, "/operator/metricsPort"),
    ({"operator": {"prometheusUrl": "prometheus:9090"}}, "/operator/prometheusUrl"),
    ({"operator": {"resources": {"limits": {"memory": "lots"}}}}, "/operator/resources/limits/memory"),
    ({"monitoring": {"prometheusRule": {"notReadyFor": "15 minutes"}}}, "/monitoring/prometheusRule/notReadyFor"),
    ({"webhok": {"enabled": False}}, "additional properties 'webhok'"),
])
def test_bad_values_fail_with_a_message_naming_the_value(values, message):
    with pytest.raises(HelmError) as caught:
        render(values)
    assert "values don't meet the specifications of the schema" in caught.value.stderr
    assert message in caught.value.stderr


def undocumented_keys(text: str) -> list[str]:
    """Keys with no comment: a comment documents the key right below it, the keys that directly
    follow that key at the same indent (a group), and everything nested under a documented key."""
    documented_at: dict[int, bool] = {}  # indent -> is the current key at that indent documented
    previous_is_comment_at = None
    missing = []
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            previous_is_comment_at = None
            documented_at = {i: d for i, d in documented_at.items() if i < indent}
            continue
        if stripped.startswith("#"):
            previous_is_comment_at = indent
            continue
        if stripped.startswith("-") or ":" not in stripped:
            previous_is_comment_at = None
            continue
        documented_at = {i: d for i, d in documented_at.items() if i <= indent}
        documented = (previous_is_comment_at == indent or documented_at.get(indent, False)
                      or any(d for i, d in documented_at.items() if i < indent))
        documented_at[indent] = documented
        if not documented:
            missing.append(stripped)
        previous_is_comment_at = None
    return missing


def test_undocumented_keys_are_found():
    assert undocumented_keys("# doc\na: 1\nb: 2\n\nc: 3\nd:\n  # doc\n  e: 1\n  f: {}\n") == ["c: 3", "d:"]


def test_every_value_is_documented():
    assert not undocumented_keys((CHART_DIR / "values.yaml").read_text()), "values.yaml keys without a comment"


def test_notes_tell_the_next_commands():
    from llmops_sandbox.tools.chart import helm

    out = helm(["install", "demo", str(CHART_DIR), "--dry-run=client", "--namespace", "ops"]).stdout
    notes = out[out.index("NOTES:"):]
    assert "kubectl -n ops rollout status deployment/demo-llmops" in notes
    assert "helm test demo -n ops" in notes
    assert "operator.prometheusUrl" in notes  # autoscaling needs it and it is unset
    assert "kubectl delete crd llmdeployments.llmops.io" in notes


def test_user_strings_that_look_like_numbers_stay_strings():
    """toYaml prints "07e35" bare and the API server reads a float; every user value is quoted."""
    tricky = "07e35"
    docs = render({
        "operator": {"podLabels": {"x": tricky}, "podAnnotations": {"y": "1"}, "nodeSelector": {"z": "true"},
                     "extraArgs": ["123"], "watchNamespaces": [tricky]},
        "serviceAccount": {"annotations": {"a": tricky}},
        "webhook": {"namespaceSelector": {"matchLabels": {"t": tricky}}},
        "monitoring": {"labels": {"m": tricky}, "prometheusRule": {"alertLabels": {"team": tricky}},
                       "grafanaDashboards": {"labels": {"g": tricky}, "annotations": {"f": "0"}}},
    }, api_versions=[MONITORING_API])
    pod = one(docs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["x"] == tricky and pod["metadata"]["annotations"]["y"] == "1"
    assert pod["spec"]["nodeSelector"] == {"z": "true"} and pod["spec"]["containers"][0]["args"][-1] == "123"
    assert one(docs, "ServiceAccount")["metadata"]["annotations"]["a"] == tricky
    assert one(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"] == {"matchLabels": {"t": tricky}}
    assert one(docs, "PodMonitor")["spec"]["namespaceSelector"]["matchNames"] == [tricky]
    assert all(one(docs, k)["metadata"]["labels"]["m"] == tricky for k in ("PodMonitor", "ServiceMonitor", "PrometheusRule"))
    rules = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert all(r["labels"]["team"] == tricky for r in rules)
    assert all(m["metadata"]["labels"]["g"] == tricky and m["metadata"]["annotations"]["f"] == "0"
               for m in by_kind(docs, "ConfigMap"))


def test_high_availability_runs_two_replicas_that_elect_a_leader():
    docs = render({"operator": {"leaderElection": {"enabled": True, "replicas": 2}}})
    deployment = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("llmops"))
    assert deployment["spec"]["replicas"] == 2 and "strategy" not in deployment["spec"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--leader-elect" in container["args"]
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}} and "POD_NAMESPACE" in env
    role = next(r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("leader-election"))
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    binding = next(b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("leader-election"))
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    default = one(render(), "Deployment")
    assert default["spec"]["replicas"] == 1 and not any(a == "--leader-elect" for a in
                                                         default["spec"]["template"]["spec"]["containers"][0]["args"])
