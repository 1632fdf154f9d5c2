"""The kind Prometheus (e2e/kind/prometheus.yaml) labels vLLM pods exactly as the sandbox's does.

A real Prometheus applies the kind config's relabel rules to the labels Kubernetes service
discovery (role pod) gives a pod. Debian's Prometheus has no Kubernetes discovery, so those
`__meta_kubernetes_*` labels come through file_sd; everything after discovery (keep/drop,
address and path, labelmap, the llmops_deployment/namespace/pod/node labels) is Prometheus' own
relabelling. The result must equal what the sandbox's target writer gives the same pod
(llmops_sandbox.prometheus.scrape_target), so scenarios see the same series on both clusters.
Pod IPs are loopback addresses: nothing leaves the machine."""

from __future__ import annotations

import copy
import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from llmops.render import ResolvedSharding, render_children
from llmops_sandbox.binaries import find_prometheus
from llmops_sandbox.prometheus import scrape_target
from llmops.validation import validate_manifest
from llmops.waiting import wait_for

KIND_PROMETHEUS = Path(__file__).resolve().parents[2] / "e2e" / "kind" / "prometheus.yaml"
JOB = "kubernetes-pods"


def _sd_name(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def kubernetes_sd_targets(pod: dict) -> list[dict]:
    """The targets Prometheus' kubernetes_sd (role pod) makes of a pod: one per container port,
    with the documented __meta_kubernetes_pod_* labels."""
    meta, spec, status = pod["metadata"], pod["spec"], pod["status"]
    common = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": status["podIP"],
        "__meta_kubernetes_pod_node_name": spec.get("nodeName", ""),
        "__meta_kubernetes_pod_host_ip": "127.0.0.1",
        "__meta_kubernetes_pod_phase": status["phase"],
        "__meta_kubernetes_pod_ready": "true" if status["phase"] == "Running" else "false",
        "__meta_kubernetes_pod_uid": meta["uid"],
    }
    for key, value in meta.get("labels", {}).items():
        common[f"__meta_kubernetes_pod_label_{_sd_name(key)}"] = value
        common[f"__meta_kubernetes_pod_labelpresent_{_sd_name(key)}"] = "true"
    for key, value in meta.get("annotations", {}).items():
        common[f"__meta_kubernetes_pod_annotation_{_sd_name(key)}"] = value
        common[f"__meta_kubernetes_pod_annotationpresent_{_sd_name(key)}"] = "true"
    targets = []
    for container in spec["containers"]:
        for port in container.get("ports", []):
            targets.append({"targets": [f"{status['podIP']}:{port['containerPort']}"], "labels": {
                **common,
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_image": container["image"],
                "__meta_kubernetes_pod_container_init": "false",
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
            }})
    return targets


def vllm_pod(name: str, ip: str, phase: str = "Running") -> dict:
    """A pod as the operator's Deployment makes it (template from the real renderer)."""
    d = validate_manifest({
        "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment",
        "metadata": {"name": "chat", "namespace": "t-kind", "uid": "00000000-0000-0000-0000-00000000000a"},
        "spec": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
                 "engine": {"image": "llmops/vllm-sim:latest"}, "replicas": 1},
    })
    deployment = next(c for c in render_children(d, ResolvedSharding(1, 1)) if c["kind"] == "Deployment")
    template = copy.deepcopy(deployment["spec"]["template"])
    template["metadata"]["labels"]["pod-template-hash"] = "5d8f7c9b4"
    return {
        "metadata": {**template["metadata"], "name": name, "namespace": "t-kind", "uid": f"uid-{name}"},
        "spec": {**template["spec"], "nodeName": "llmops-e2e-worker"},
        "status": {"phase": phase, "podIP": ip},
    }


def cases() -> list[dict]:
    running = vllm_pod("chat-running", "127.0.0.2")
    pending = vllm_pod("chat-pending", "127.0.0.3", phase="Pending")
    unannotated = vllm_pod("plain", "127.0.0.4")
    unannotated["metadata"]["annotations"] = {}
    other_port = vllm_pod("chat-other-port", "127.0.0.5")
    other_port["metadata"]["annotations"].update({"prometheus.io/port": "9400", "prometheus.io/path": "/custom"})
    no_deployment = vllm_pod("not-llmops", "127.0.0.6")
    del no_deployment["metadata"]["labels"]["llmops.io/deployment"]
    return [running, pending, unannotated, other_port, no_deployment]


def kind_scrape_config() -> dict:
    docs = [d for d in yaml.safe_load_all(KIND_PROMETHEUS.read_text()) if d]
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    return yaml.safe_load(config_map["data"]["prometheus.yml"])


@pytest.fixture(scope="module")
def prometheus_targets(tmp_path_factory) -> dict:
    binary = find_prometheus()
    if binary is None:
        pytest.skip("no prometheus binary (Debian: apt-get install prometheus)")
    work = tmp_path_factory.mktemp("kind-prometheus")
    targets_file = work / "targets.json"
    targets_file.write_text(json.dumps([t for pod in cases() for t in kubernetes_sd_targets(pod)]))
    config = kind_scrape_config()
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB and job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["file_sd_configs"] = [{"files": [str(targets_file)]}]
    config["global"]["scrape_interval"] = "1h"  # labels are what matters; do not bother scraping
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen([str(binary), f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api/v1/targets?state=any"
    expected = sum(len(kubernetes_sd_targets(p)) for p in cases())

    def all_targets_seen():
        assert proc.poll() is None, f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            data = json.load(resp)["data"]
        return data if len(data["activeTargets"]) + len(data["droppedTargets"]) == expected else None

    try:
        yield wait_for(all_targets_seen, 30, "Prometheus did not discover the file_sd targets")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.mark.parametrize("pod", cases(), ids=lambda p: p["metadata"]["name"])
def test_kind_prometheus_labels_a_pod_as_the_sandbox_does(prometheus_targets, pod):
    name = pod["metadata"]["name"]
    active = [t for t in prometheus_targets["activeTargets"]
              if t["discoveredLabels"]["__meta_kubernetes_pod_name"] == name]
    sandbox = scrape_target(pod)
    if sandbox is None:
        assert active == [], f"kind Prometheus scrapes {name}, the sandbox does not"
        return
    (target,) = active
    labels = dict(sandbox["labels"])
    path = labels.pop("__meta_metrics_path")
    (address,) = sandbox["targets"]
    assert target["labels"] == {**labels, "instance": address, "job": JOB}
    assert target["scrapeUrl"] == f"http://{address}{path}"


def test_vllm_pod_gets_the_labels_the_autoscaler_selects_on(prometheus_targets):
    (target,) = [t for t in prometheus_targets["activeTargets"] if t["labels"]["pod"] == "chat-running"]
    assert {k: target["labels"][k] for k in ("llmops_deployment", "namespace", "pod", "node")} == {
        "llmops_deployment": "chat", "namespace": "t-kind", "pod": "chat-running", "node": "llmops-e2e-worker"}
    assert target["scrapeUrl"] == "http://127.0.0.2:8000/metrics"
