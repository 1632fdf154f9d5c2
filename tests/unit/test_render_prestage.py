"""Pre-staging renders a DaemonSet on exactly the serving pods' nodes and makes serving pods
wait for, verify and load the node's copy offline."""

from __future__ import annotations

import copy

import pytest

from llmops.render import ClusterCapabilities, ResolvedSharding, render_children
from llmops.render.pod import placement
from llmops.validation import InvalidManifest, validate_manifest

STAGED_DIR = "/var/lib/llmops/models/meta-llama--Llama-3.1-8B-Instruct--main"
USER_NODE_AFFINITY = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "site-tier", "operator": "In", "values": ["gold"]}]}]}}
USER_POD_ANTI_AFFINITY = {"requiredDuringSchedulingIgnoredDuringExecution": [
    {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "x"}}}]}


def manifest(**model):
    return {
        "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment",
        "metadata": {"name": "edge-llama", "namespace": "edge", "uid": "u-1"},
        "spec": {
            "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "prestage": {"enabled": True}, **model},
            "engine": {"env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
                               {"name": "HF_ENDPOINT", "value": "https://mirror.example"},
                               {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}]},
            "resources": {"gpu": {"type": "NVIDIA-L4"}},
            "placement": {"profile": "edge", "zoneSpread": "required", "priorityClassName": "inference",
                          "tolerations": [{"key": "site", "operator": "Exists"}],
                          "affinity": {"nodeAffinity": USER_NODE_AFFINITY, "podAntiAffinity": USER_POD_ANTI_AFFINITY}},
        },
    }


def render(body, sharding=ResolvedSharding(), capabilities=ClusterCapabilities(stager_image="registry.local/llmops:1.2")):
    return render_children(validate_manifest(body), sharding, capabilities)


def kinds(children):
    return {c["kind"]: c for c in children}


def test_daemonset_runs_where_serving_pods_may_run_and_nowhere_else():
    body = manifest()
    children = render(body)
    assert [c["kind"] for c in children] == ["Service", "DaemonSet", "Deployment", "PodDisruptionBudget"]
    ds, dep = kinds(children)["DaemonSet"], kinds(children)["Deployment"]
    stage_pod, serving_pod = ds["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]
    assert stage_pod["nodeSelector"] == serving_pod["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-L4", "llmops.io/edge": "true"}
    assert stage_pod["tolerations"] == serving_pod["tolerations"]
    assert {"key": "llmops.io/edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in stage_pod["tolerations"]
    # Required node affinity narrows where serving pods may run: kept. Replica spreading,
    # pod anti-affinity and priority are about serving replicas: dropped.
    assert stage_pod["affinity"] == {"nodeAffinity": USER_NODE_AFFINITY}
    assert "podAntiAffinity" in serving_pod["affinity"] and "topologySpreadConstraints" in serving_pod
    assert "topologySpreadConstraints" not in stage_pod and "priorityClassName" not in stage_pod
    assert "nvidia.com/gpu" not in str(stage_pod["containers"][0].get("resources")), "staging needs no GPU"


def test_daemonset_pods_are_not_serving_pods():
    ds = kinds(render(manifest()))["DaemonSet"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "llmops-model-stage"  # not the serving Service's selector
    assert labels["llmops.io/deployment"] == "edge-llama"           # but still tracked by the operator
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert ds["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_stager_downloads_the_revision_with_hub_env_and_reports_ready_on_the_marker():
    ds = kinds(render(manifest(revision="0123456789abcdef0123456789abcdef01234567")))["DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["image"] == "registry.local/llmops:1.2"
    assert c["command"] == ["llmops", "stage", "fetch"]
    args = c["args"]
    assert args[:7] == ["--source", "hf://meta-llama/Llama-3.1-8B-Instruct", "--revision",
                        "0123456789abcdef0123456789abcdef01234567", "--root", "/var/lib/llmops/models", "--hold"]
    assert args[args.index("--ignore") + 1] == "original/*"
    assert [e["name"] for e in c["env"]] == ["HF_HOME", "HF_HUB_DISABLE_TELEMETRY", "HF_TOKEN", "HF_ENDPOINT"]  # not VLLM_*
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["test", "-f"] and probe[2].endswith("--0123456789abcdef0123456789abcdef01234567/.llmops-staged.json")
    assert pod["volumes"] == [{"name": "model-stage-cache",
                               "hostPath": {"path": "/var/lib/llmops/models", "type": "DirectoryOrCreate"}}]


def test_serving_pods_wait_verify_and_load_the_local_copy_offline():
    dep = kinds(render(manifest()))["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    [wait] = pod["initContainers"]
    assert wait["command"] == ["llmops", "stage", "wait"]
    assert wait["args"] == ["--dir", STAGED_DIR, "--timeout", "1800"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in wait["env"]
    [vllm] = pod["containers"]
    assert vllm["args"][vllm["args"].index("--model") + 1] == STAGED_DIR
    assert "--revision" not in vllm["args"]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in vllm["env"]
    assert {"name": "model-stage-cache", "mountPath": "/var/lib/llmops/models", "readOnly": True} in vllm["volumeMounts"]


def test_verify_on_start_can_be_turned_off():
    body = manifest()
    body["spec"]["model"]["prestage"]["verifyOnStart"] = False
    wait = kinds(render(body))["Deployment"]["spec"]["template"]["spec"]["initContainers"][0]
    assert wait["args"][-1] == "--no-verify"


@pytest.mark.parametrize("lws", [False, True])
def test_every_member_of_a_multi_node_group_waits_for_its_own_nodes_copy(lws):
    children = render(manifest(), ResolvedSharding(1, 2, nodes_per_replica=2),
                      ClusterCapabilities(leader_worker_set=lws))
    templates = []
    for c in children:
        if c["kind"] == "StatefulSet":
            templates.append(c["spec"]["template"])
        if c["kind"] == "LeaderWorkerSet":
            templates += [c["spec"]["leaderWorkerTemplate"][k] for k in ("leaderTemplate", "workerTemplate")]
    assert len(templates) >= 2
    for t in templates:
        assert [i["name"] for i in t["spec"]["initContainers"]] == ["model-stage-wait"]
    assert len([c for c in children if c["kind"] == "DaemonSet"]) == 1


def test_without_prestage_nothing_changes_and_revision_goes_to_vllm():
    body = manifest(revision="v2")
    body["spec"]["model"]["prestage"]["enabled"] = False
    children = render(body)
    assert "DaemonSet" not in kinds(children)
    pod = kinds(children)["Deployment"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    args = pod["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert args[args.index("--revision") + 1] == "v2"


def test_edge_preferred_stages_on_every_node_serving_pods_may_use():
    body = manifest()
    body["spec"]["placement"] = {"profile": "edge-preferred"}
    d = validate_manifest(body)
    stage_pod = kinds(render(body))["DaemonSet"]["spec"]["template"]["spec"]
    assert "affinity" not in stage_pod, "a preference does not limit where serving pods may run"
    assert stage_pod["tolerations"] == placement(d)["tolerations"]


@pytest.mark.parametrize("model, field, words", [
    ({"source": "pvc://weights/llama"}, "spec.model", "pre-staging supports hf:// sources only"),
    ({"source": "s3://bucket/llama"}, "spec.model", "pre-staging supports hf:// sources only"),
    ({"prestage": {"enabled": True, "hostPath": "/"}}, "spec.model.prestage.hostPath", "absolute node directory"),
    ({"prestage": {"enabled": True, "hostPath": "/var/../etc"}}, "spec.model.prestage.hostPath", "contains '..'"),
    ({"prestage": {"enabled": True, "hostPath": "relative/dir"}}, "spec.model.prestage.hostPath", "absolute"),
    ({"source": "pvc://weights/llama", "prestage": {"enabled": False}, "revision": "main"}, "spec.model",
     "only hf:// sources have revisions"),
])
def test_bad_prestage_settings_name_the_field_and_the_fix(model, field, words):
    body = copy.deepcopy(manifest())
    body["spec"]["model"].update(model)
    with pytest.raises(InvalidManifest) as exc:
        validate_manifest(body)
    assert any(p.path == field and words in p.message for p in exc.value.problems), exc.value.problems


def test_stager_keeps_a_lease_and_cleans_up_after_the_retention():
    args = kinds(render(manifest()))["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--owner") + 1] == "edge/edge-llama"
    assert args[args.index("--retain-unused-hours") + 1] == "24"
    body = manifest()
    body["spec"]["model"]["prestage"]["retainUnusedHours"] = None
    args = kinds(render(body))["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--retain-unused-hours" not in args


def test_every_container_reports_its_last_words_on_a_crash():
    children = kinds(render(manifest()))
    stage_pod = children["DaemonSet"]["spec"]["template"]["spec"]
    serving_pod = children["Deployment"]["spec"]["template"]["spec"]
    for container in [*stage_pod["containers"], *serving_pod["initContainers"], *serving_pod["containers"]]:
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", container["name"]
