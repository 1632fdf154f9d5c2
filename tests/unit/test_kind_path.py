"""The kind e2e path (e2e/kind/, .github/workflows/e2e-kind.yml) stays honest where kind cannot
run: its files parse, its nodes mirror the sandbox's, its Prometheus relabelling and chart
values say what the scenarios rely on, and its script passes `bash -n` and shellcheck.
(tests/integration/test_kind_prometheus.py runs the relabelling through a real Prometheus.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmops_sandbox.nodes import EDGE_ROLE_LABEL, default_nodes_text, node_labels, node_taints, parse_nodes

REPO = Path(__file__).resolve().parents[2]
KIND = REPO / "e2e" / "kind"
SCRIPT = KIND / "run-e2e.sh"
WORKFLOW = REPO / ".github" / "workflows" / "e2e-kind.yml"

# Labels the kubelet sets itself, and the sandbox's own marker: not part of the mirrored layout.
KUBELET_OWN = {"kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
               "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "llmops.io/sandbox"}
# What a kubelet may set through --node-labels under kubernetes.io / k8s.io (NodeRestriction).
KUBELET_ALLOWED = {"kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
                   "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
                   "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
                   "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
                   "failure-domain.beta.kubernetes.io/zone"}


def script_constant(name: str) -> str:
    """A NAME=value (or NAME=${ENV:-value}) assignment at the top of run-e2e.sh."""
    match = re.search(rf"^{name}=(?:\$\{{\w+:-)?\"?([^\"}}\n]+)", SCRIPT.read_text(), re.M)
    assert match, f"{name} is not assigned in {SCRIPT}"
    value = match.group(1)
    return re.sub(r"\$(\w+)", lambda m: script_constant(m.group(1)), value)


def source_script(call: str) -> str:
    """Output of a run-e2e.sh function, the script sourced (sourcing runs nothing)."""
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}" && {call}'], capture_output=True,
                          text=True, check=True, timeout=30).stdout


# --- kind-config.yaml ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kind_config() -> dict:
    return yaml.safe_load((KIND / "kind-config.yaml").read_text())


def workers(config: dict) -> list[dict]:
    return [n for n in config["nodes"] if n["role"] == "worker"]


def join_taints(node: dict) -> list[dict]:
    taints = []
    for patch in node.get("kubeadmConfigPatches", []):
        doc = yaml.safe_load(patch)
        if doc.get("kind") == "JoinConfiguration":
            taints += doc["nodeRegistration"].get("taints", [])
    return taints


def test_kind_config_is_one_control_plane_and_six_workers(kind_config):
    assert kind_config["kind"] == "Cluster" and kind_config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in kind_config["nodes"]] == ["control-plane"] + ["worker"] * 6
    control_plane = kind_config["nodes"][0]
    assert not any(k.startswith("nvidia.com/") for k in control_plane.get("labels", {}))


def test_workers_mirror_the_sandbox_nodes_labels_and_taints(kind_config):
    sandbox = parse_nodes(default_nodes_text())
    assert len(workers(kind_config)) == len(sandbox) == 6
    for worker, spec in zip(workers(kind_config), sandbox):
        expected = {k: v for k, v in node_labels(spec).items() if k not in KUBELET_OWN | {EDGE_ROLE_LABEL}}
        assert worker["labels"] == expected, f"kind worker for sandbox node {spec.name} differs"
        assert join_taints(worker) == node_taints(spec), spec.name
        # run-e2e.sh patches nvidia.com/gpu capacity from this label.
        assert int(worker["labels"]["nvidia.com/gpu.count"]) == spec.gpu.count


def test_layout_is_two_datacenter_a100_and_two_sites_of_two_tainted_edge_l4_workers(kind_config):
    products = [w["labels"]["nvidia.com/gpu.product"] for w in workers(kind_config)]
    assert products == ["NVIDIA-A100-SXM4-80GB"] * 2 + ["NVIDIA-L4"] * 4
    edge = [w for w in workers(kind_config) if w["labels"].get("llmops.io/edge") == "true"]
    assert len(edge) == 4
    assert [w["labels"]["topology.kubernetes.io/zone"] for w in edge] == \
        ["sandbox-edge-site-a"] * 2 + ["sandbox-edge-site-b"] * 2
    assert all(join_taints(w) == [{"key": "llmops.io/edge", "value": "true", "effect": "NoSchedule"}] for w in edge)


def test_kind_node_labels_are_ones_a_kubelet_may_set(kind_config):
    # kind passes them as kubelet --node-labels; a node-role.kubernetes.io label there would stop
    # the kubelet from starting, which is why run-e2e.sh adds the edge role with kubectl.
    for worker in workers(kind_config):
        for key in worker["labels"]:
            prefix = key.split("/")[0] if "/" in key else ""
            restricted = prefix.endswith("kubernetes.io") or prefix.endswith("k8s.io")
            assert not restricted or key in KUBELET_ALLOWED, key
    assert "node-role.kubernetes.io/edge=" in SCRIPT.read_text()


def test_script_checks_for_the_same_node_counts(kind_config):
    # check_nodes refuses a cluster made from an older config; its expected counts must follow.
    edge = sum(1 for w in workers(kind_config) if w["labels"].get("llmops.io/edge") == "true")
    dc = len(workers(kind_config)) - edge
    script = SCRIPT.read_text()
    assert f'[[ "$dc" == {dc} && "$edge" == {edge} && "$tainted" == {edge} ]]' in script
    assert f"{len(workers(kind_config))} workers" in script


def test_pod_subnet_avoids_the_sandbox_pod_range(kind_config):
    subnet = kind_config["networking"]["podSubnet"]
    assert subnet != "10.244.0.0/16" and subnet.endswith("/16")
    assert 'config_path = "/etc/containerd/certs.d"' in kind_config["containerdConfigPatches"][0]


# --- prometheus.yaml -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prometheus_objects() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((KIND / "prometheus.yaml").read_text()) if d]
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def scrape_config(prometheus_objects) -> dict:
    config = yaml.safe_load(prometheus_objects["ConfigMap"]["data"]["prometheus.yml"])
    assert config["global"]["scrape_interval"] == "2s"
    (job,) = config["scrape_configs"]
    return job


def rules_by_target(job: dict) -> dict[str, dict]:
    return {r["target_label"]: r for r in job["relabel_configs"] if "target_label" in r}


def test_prometheus_objects_are_all_there(prometheus_objects):
    assert set(prometheus_objects) == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                       "ConfigMap", "Deployment", "Service"}
    (rule,) = prometheus_objects["ClusterRole"]["rules"]
    assert rule["resources"] == ["pods"] and {"list", "watch"} <= set(rule["verbs"])
    pod = prometheus_objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == prometheus_objects["ServiceAccount"]["metadata"]["name"]
    assert pod["containers"][0]["image"].startswith("prom/prometheus:v")


def test_scrape_job_discovers_pods_and_keeps_only_annotated_running_ones(scrape_config):
    assert scrape_config["kubernetes_sd_configs"] == [{"role": "pod"}]
    keeps = {tuple(r["source_labels"]): r["regex"] for r in scrape_config["relabel_configs"] if r["action"] == "keep"}
    assert keeps == {("__meta_kubernetes_pod_annotation_prometheus_io_scrape",): "true",
                     ("__meta_kubernetes_pod_phase",): "Running"}


def test_relabelling_yields_the_labels_the_autoscaler_selects_on(scrape_config):
    rules = rules_by_target(scrape_config)
    for target, source in [("llmops_deployment", "__meta_kubernetes_pod_label_llmops_io_deployment"),
                           ("namespace", "__meta_kubernetes_namespace"),
                           ("pod", "__meta_kubernetes_pod_name"),
                           ("node", "__meta_kubernetes_pod_node_name"),
                           ("__metrics_path__", "__meta_kubernetes_pod_annotation_prometheus_io_path")]:
        assert rules[target]["source_labels"] == [source] and rules[target]["action"] == "replace", target
    address = rules["__address__"]
    assert address["source_labels"] == ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"]
    assert re.fullmatch(address["regex"], "10.245.1.7;8000") and address["replacement"] == "$1:$2"
    labelmaps = [r for r in scrape_config["relabel_configs"] if r["action"] == "labelmap"]
    assert [r["regex"] for r in labelmaps] == ["__meta_kubernetes_pod_label_(.+)"]


def test_script_prometheus_urls_match_the_service(prometheus_objects):
    service = prometheus_objects["Service"]
    (port,) = service["spec"]["ports"]
    assert service["spec"]["type"] == "NodePort"
    assert str(port["nodePort"]) == script_constant("PROMETHEUS_NODE_PORT")
    meta = service["metadata"]
    assert script_constant("PROMETHEUS_IN_CLUSTER_URL") == f"http://{meta['name']}.{meta['namespace']}.svc:{port['port']}"
    assert script_constant("PROMETHEUS_NAMESPACE") == meta["namespace"]


# --- run-e2e.sh ------------------------------------------------------------------------------

def test_script_passes_bash_n_and_is_executable():
    assert os.access(SCRIPT, os.X_OK), "the workflow runs it directly: chmod +x e2e/kind/run-e2e.sh"
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_script_passes_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", "--severity=style", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_script_help_and_bad_arguments():
    help_text = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--keep" in help_text and "--down" in help_text and "set -euo" not in help_text
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown argument '--bogus'" in bad.stderr


def test_script_uses_the_images_and_names_the_suite_expects():
    assert script_constant("CLUSTER_NAME") == "llmops-e2e"
    sim = script_constant("SIM_IMAGE")
    assert f'"image": "{sim}"' in (REPO / "e2e" / "test_autoscaling.py").read_text()
    script = SCRIPT.read_text()
    for dockerfile in ("operator/Dockerfile", "e2e/images/vllm-sim/Dockerfile"):
        assert (REPO / dockerfile).is_file() and f"$REPO_ROOT/{dockerfile}" in script
    assert "pytest e2e -m cluster" in script
    assert "LLMOPS_TEST_KUBECONFIG=" in script and "LLMOPS_TEST_PROMETHEUS_URL=" in script


def test_operator_values_render_an_operator_using_the_e2e_image_and_prometheus():
    from llmops_sandbox.tools.chart import render
    values = yaml.safe_load(source_script("operator_values sha256:0123"))
    docs = render(values, release=script_constant("RELEASE"), namespace=script_constant("OPERATOR_NAMESPACE"))
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    operators = [d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    assert [d["metadata"]["name"] for d in operators] == [script_constant("OPERATOR_DEPLOYMENT")]
    # e2e/test_activator.py uses the chart's activator, from the same image.
    activators = [d for d in deployments if d["metadata"]["labels"]["app.kubernetes.io/component"] == "activator"]
    assert [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in activators] == ["llmops/operator:e2e"]
    pod = operators[0]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == script_constant("OPERATOR_IMAGE") == "llmops/operator:e2e"
    assert container["imagePullPolicy"] in ("IfNotPresent", "Never")
    assert f"--prometheus-url={script_constant('PROMETHEUS_IN_CLUSTER_URL')}" in container["args"]
    assert pod["metadata"]["annotations"]["llmops.io/e2e-image-id"] == "sha256:0123"


# --- the workflow ----------------------------------------------------------------------------

def test_workflow_runs_the_script_with_kind_helm_and_python():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert {"push", "pull_request"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu") and job["timeout-minutes"] <= 60
    steps = job["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses[:4] == ["actions/checkout", "actions/setup-python", "helm/kind-action", "azure/setup-helm"]
    kind_step = next(s for s in steps if s.get("uses", "").startswith("helm/kind-action"))
    assert kind_step["with"]["install_only"] is True  # the script makes the cluster from kind-config.yaml
    runs = [s["run"] for s in steps if "run" in s]
    assert any("pip install -e '.[test]'" in r for r in runs)
    assert any(r.strip() == "e2e/kind/run-e2e.sh" for r in runs)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "failure()"
    assert upload["with"]["path"] == job["env"]["LLMOPS_E2E_LOG_DIR"]
