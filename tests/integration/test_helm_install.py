"""The chart on a real cluster: `helm install` runs the operator as a pod with only the chart's
RBAC; the webhook refuses an invalid LLMDeployment and admits a valid one; the operator
reconciles it end to end; `helm upgrade` keeps it and its pods; `helm uninstall` removes the
operator but leaves the CRD, the LLMDeployment and its pods.

The operator is installed watching one namespace (namespaced Role mode) and the webhook only
judges namespaces labelled for this module, so other tests sharing the cluster are unaffected.
Tests run in file order and share one release."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from llmops import rbac
from llmops.kube import Kube
from llmops_sandbox.tools.chart import CHART_DIR, helm
from llmops_sandbox.tools.helm import kubectl_path
from llmops_testing.kube import read_or_none
from llmops_testing.samples import sim_deployment
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
TIMEOUT = 90
SAMPLE = sim_deployment("chat")
INVALID_YAML = """\
apiVersion: llmops.io/v1alpha1
kind: LLMDeployment
metadata:
  name: broken
spec:
  model:
    source: hf://Qwen/Qwen2.5-0.5B-Instruct
  engine:
    image: llmops/vllm-sim:latest
    dtype: fp17
    extraArgs: ["--port=9000"]
"""


class Release:
    def __init__(self, api_client, kubeconfig: str, name: str, namespace: str, workloads: str, selector: dict):
        self.api_client, self.kubeconfig = api_client, kubeconfig
        self.name, self.namespace, self.workloads, self.selector = name, namespace, workloads, selector
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.crs = client.CustomObjectsApi(api_client)

    @property
    def values(self) -> dict:
        return {
            "operator": {"watchNamespaces": [self.workloads], "verbose": True},
            "webhook": {"namespaceSelector": {"matchLabels": self.selector}},
            # The sandbox maps llmops/host:* to "run the container's command on the host".
            "tests": {"image": {"repository": "llmops/host", "tag": "latest"}},
        }

    def helm(self, *args: str, values: dict | None = None, timeout: float = 240):
        return helm([*args, "--namespace", self.namespace], values, kubeconfig=self.kubeconfig, timeout=timeout)

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(kubectl_path()), "--kubeconfig", self.kubeconfig, *args],
                              input=stdin, capture_output=True, text=True, timeout=60)

    def operator_pods(self):
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=f"app.kubernetes.io/instance={self.name},"
                                           "app.kubernetes.io/component=operator").items

    def operator_log(self) -> str:
        pods = self.operator_pods()
        return "\n".join(self.core.read_namespaced_pod_log(p.metadata.name, self.namespace) for p in pods)

    def wait_operator_ready(self):
        def ready():
            pods = [p for p in self.operator_pods() if not p.metadata.deletion_timestamp]
            return pods if len(pods) == 1 and all(
                c.ready for c in (pods[0].status.container_statuses or [])) and pods[0].status.container_statuses else None
        return wait_for(ready, TIMEOUT, "the operator pod did not become Ready")[0]


@pytest.fixture(scope="module")
def release(api_client, kubeconfig):
    core = client.CoreV1Api(api_client)
    suffix = uuid.uuid4().hex[:5]
    selector = {"llmops.io/helm-test": suffix}
    namespace, workloads = f"helm-ops-{suffix}", f"helm-ml-{suffix}"
    for ns, labels in ((namespace, {}), (workloads, selector)):
        core.create_namespace({"metadata": {"name": ns, "labels": {"llmops.io/test": "true", **labels}}})
        wait_for(lambda ns=ns: (sa := read_or_none(core.read_namespaced_service_account, "default", ns)) and sa.secrets,
                 30, f"namespace {ns} has no default ServiceAccount token")
    r = Release(api_client, kubeconfig, f"ops{suffix}", namespace, workloads, selector)
    try:
        yield r
    finally:
        # Whatever happened, leave no cluster-wide webhook or role behind.
        r.helm("uninstall", r.name, "--wait", timeout=120) if _installed(r) else None
        for ns in (namespace, workloads):
            _delete(core.delete_namespace, ns)


def _delete(delete, *args):
    try:
        delete(*args)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _installed(r: Release) -> bool:
    out = helm(["list", "--namespace", r.namespace, "-q"], kubeconfig=r.kubeconfig, check=False).stdout
    return r.name in out.split()


def test_install_runs_the_operator_as_a_pod_with_the_charts_service_account(release):
    release.helm("install", release.name, str(CHART_DIR), "--wait", "--timeout", "120s", values=release.values)
    pod = release.wait_operator_ready()
    assert pod.spec.service_account_name == f"{release.name}-llmops"
    # The webhook's Service has the pod as its endpoint (the API server calls it there).
    def endpoint_ready():
        eps = release.core.read_namespaced_endpoints(f"{release.name}-llmops", release.namespace)
        return any(a.ip == pod.status.pod_ip for s in eps.subsets or [] for a in s.addresses or [])
    wait_for(endpoint_ready, TIMEOUT, "the operator's Service has no ready endpoint")


FP8_ON_T4_YAML = """
apiVersion: llmops.io/v1alpha1
kind: LLMDeployment
metadata: {name: fp8-t4}
spec:
  model: {source: hf://meta-llama/Llama-3.1-8B-Instruct}
  quantization: {method: fp8}
  resources: {gpu: {type: Tesla-T4}}
"""


@pytest.mark.parametrize("manifest, name, explanations", [
    (INVALID_YAML, "broken", ["spec.engine.dtype", "spec.engine.extraArgs"]),   # each field named
    (FP8_ON_T4_YAML, "fp8-t4", ["spec.quantization.method", "compute capability"]),
], ids=["invalid-fields", "fp8-on-t4"])
def test_webhook_refuses_what_cannot_work(release, manifest, name, explanations):
    result = release.kubectl("apply", "-n", release.workloads, "-f", "-", stdin=manifest)
    assert result.returncode != 0, result.stdout
    assert "denied the request" in result.stderr, result.stderr
    for explanation in explanations:
        assert explanation in result.stderr, result.stderr
    assert read_or_none(release.crs.get_namespaced_custom_object, GROUP, VERSION, release.workloads, PLURAL, name) is None


def test_webhook_admits_a_valid_one_and_the_operator_reconciles_it_with_the_charts_rbac(release):
    body = {**SAMPLE, "metadata": {"name": "chat", "namespace": release.workloads}}
    release.crs.create_namespaced_custom_object(GROUP, VERSION, release.workloads, PLURAL, body)

    def ready():
        cr = release.crs.get_namespaced_custom_object(GROUP, VERSION, release.workloads, PLURAL, "chat")
        return cr if (cr.get("status") or {}).get("phase") == "Ready" else None

    wait_for(ready, TIMEOUT, "the LLMDeployment did not become Ready under the chart-installed operator")
    assert release.apps.read_namespaced_deployment("chat", release.workloads).status.ready_replicas == 1
    assert release.core.read_namespaced_service("chat", release.workloads)
    kube = Kube(release.api_client)
    pdb_version = kube.discover_capabilities().pdb_api_version
    assert kube.get(pdb_version, "PodDisruptionBudget", "chat", release.workloads), "no PodDisruptionBudget"
    events = release.core.list_namespaced_event(release.workloads, field_selector="involvedObject.name=chat").items
    assert any(e.reason == "Created" and e.involved_object.kind == "LLMDeployment" for e in events), \
        "the operator posted no Event (events create)"
    # With --verbose, urllib3 logs every API call: the pod itself applied the children. The
    # status write that said Ready may reach the container log a moment after we saw Ready.
    paths = (f"/apis/apps/v1/namespaces/{release.workloads}/deployments/chat",
             f"/api/v1/namespaces/{release.workloads}/services/chat",
             f"/apis/llmops.io/v1alpha1/namespaces/{release.workloads}/llmdeployments/chat/status")

    def log_with_every_patch():
        text = release.operator_log()
        return all(re.search(rf'"PATCH {re.escape(path)}[?" ].* 20[01] ', text) for path in paths) and text
    log = wait_for(log_with_every_patch, 20, f"the operator's log lacks a successful PATCH of one of {paths}")
    assert "Handler 'on_llmdeployment" in log and "succeeded" in log, log[-3000:]
    # Kopf says "Not enough permissions" when a list/watch is refused; API errors carry 403/Forbidden.
    refusal = re.search(r'" 403 |\(403\)|Forbidden|forbidden|Not enough permissions', log)
    assert refusal is None, f"the operator hit an RBAC refusal ({refusal.group(0)}):\n{log[-3000:]}"


def test_spec_changes_are_validated_but_scale_and_status_are_not_judged(release):
    patch = {"spec": {"engine": {"dtype": "fp17"}}}
    with pytest.raises(ApiException) as refused:
        release.crs.patch_namespaced_custom_object(GROUP, VERSION, release.workloads, PLURAL, "chat", patch)
    assert refused.value.status == 422 and "spec.engine.dtype" in refused.value.body
    release.crs.patch_namespaced_custom_object_scale(GROUP, VERSION, release.workloads, PLURAL, "chat",
                                                     {"spec": {"replicas": 2}})
    wait_for(lambda: release.apps.read_namespaced_deployment("chat", release.workloads).spec.replicas == 2,
             TIMEOUT, "scaling through /scale did not reach the Deployment")


def test_the_service_account_can_do_exactly_what_the_operator_needs(release):
    """SubjectAccessReviews for the chart's ServiceAccount: every verb the operator uses is
    allowed where it watches, and nothing beyond (other namespaces, secrets, other verbs)."""
    auth = client.AuthorizationV1Api(release.api_client)
    user = f"system:serviceaccount:{release.namespace}:{release.name}-llmops"

    def allowed(verb, group, resource, namespace, subresource=None):
        attrs = {"verb": verb, "group": group, "resource": resource, "namespace": namespace}
        if subresource:
            attrs["subresource"] = subresource
        review = auth.create_subject_access_review({"spec": {"user": user, "resourceAttributes": attrs}})
        return review.status.allowed

    ns = release.workloads
    # Every verb of the one source (src/llmops/rbac.py) where the operator watches.
    needed = [(verb, rule["apiGroups"][0], *(resource.split("/") + [None])[:2])
              for rule in rbac.namespaced_rules() for resource in rule["resources"] for verb in rule["verbs"]]
    assert ("patch", "llmops.io", "llmdeployments", "scale") in needed and len(needed) > 30
    for verb, group, resource, sub in needed:
        assert allowed(verb, group, resource, ns, sub), f"{verb} {group}/{resource}/{sub or ''} denied in {ns}"
    for rule in rbac.cluster_rules():
        for verb in rule["verbs"]:
            assert allowed(verb, rule["apiGroups"][0], rule["resources"][0], None), f"{verb} {rule} denied"
    assert allowed("watch", "apiextensions.k8s.io", "customresourcedefinitions", None)
    assert allowed("watch", "", "nodes", None)
    forbidden = [("get", "", "secrets", ns, None), ("delete", "apps", "deployments", "default", None),
                 ("patch", "", "nodes", None, None),
                 ("delete", "llmops.io", "llmdeployments", ns, None), ("create", "apps", "deployments", "default", None),
                 ("list", "", "pods", "kube-system", None), ("update", "llmops.io", "llmdeployments", ns, None),
                 ("update", "llmops.io", "llmdeployments", ns, "status"), ("get", "", "pods", ns, None),
                 ("list", "", "secrets", ns, None), ("create", "", "pods", ns, None),
                 ("create", "rbac.authorization.k8s.io", "roles", ns, None)]
    for verb, group, resource, namespace, sub in forbidden:
        assert not allowed(verb, group, resource, namespace, sub), f"{verb} {group}/{resource} in {namespace} allowed"


def test_upgrade_keeps_the_llmdeployment_its_pods_and_the_webhook_certificate(release):
    secret_name = f"{release.name}-llmops-webhook-tls"
    cert_before = release.core.read_namespaced_secret(secret_name, release.namespace).data["tls.crt"]
    pods_before = {p.metadata.uid for p in release.core.list_namespaced_pod(release.workloads).items}
    operator_before = release.wait_operator_ready().metadata.uid
    values = {**release.values, "operator": {**release.values["operator"], "verbose": False}}
    release.helm("upgrade", release.name, str(CHART_DIR), "--wait", "--timeout", "120s", values=values)
    operator_after = release.wait_operator_ready()
    assert operator_after.metadata.uid != operator_before  # the args changed, so the pod was replaced
    assert release.core.read_namespaced_secret(secret_name, release.namespace).data["tls.crt"] == cert_before
    cr = release.crs.get_namespaced_custom_object(GROUP, VERSION, release.workloads, PLURAL, "chat")
    assert cr["spec"]["replicas"] == 2
    pods_after = {p.metadata.uid for p in release.core.list_namespaced_pod(release.workloads).items}
    assert pods_before <= pods_after, "the upgrade replaced model pods"
    # The reused certificate still works: the webhook answers (and refuses) after the upgrade.
    result = release.kubectl("apply", "-n", release.workloads, "-f", "-", stdin=INVALID_YAML)
    assert "denied the request" in result.stderr, result.stderr


def test_helm_test_checks_the_operator_health(release, sandbox):
    # The hook pod calls the operator by its Service name: cluster DNS and kube-proxy at work.
    result = helm(["test", release.name, "--namespace", release.namespace, "--logs", "--timeout", "90s"],
                  kubeconfig=release.kubeconfig, check=False, timeout=150)
    if not sandbox.is_sandbox and result.returncode != 0 and ("Name or service not known" in result.stdout + result.stderr
                                   or "Temporary failure in name resolution" in result.stdout + result.stderr):
        pytest.skip("this cluster has no DNS for Service names")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 200" in result.stdout


def test_uninstall_removes_the_operator_but_keeps_the_crd_and_llmdeployments(release):
    release.helm("uninstall", release.name, "--wait", timeout=120)
    admission = client.AdmissionregistrationV1Api(release.api_client)
    assert read_or_none(admission.read_validating_webhook_configuration, f"{release.name}-llmops") is None
    wait_for(lambda: not release.operator_pods(), TIMEOUT, "the operator pod outlived helm uninstall")
    assert read_or_none(release.apps.read_namespaced_deployment, f"{release.name}-llmops", release.namespace) is None
    ext = client.ApiextensionsV1Api(release.api_client)
    assert ext.read_custom_resource_definition("llmdeployments.llmops.io")
    assert release.crs.get_namespaced_custom_object(GROUP, VERSION, release.workloads, PLURAL, "chat")
    assert release.apps.read_namespaced_deployment("chat", release.workloads).status.ready_replicas >= 1
