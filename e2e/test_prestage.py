"""Model pre-staging end to end: the stage DaemonSet runs on exactly the nodes an edge
deployment may use, serving pods start only from a checked local copy, a damaged copy is
found and repaired, and turning pre-staging off removes it all."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

import pytest

from llmops.stage.layout import MARKER_FILE, cache_key
from llmops_testing.samples import SIM_IMAGE, sim_deployment
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
REPO = "meta-llama/Llama-3.1-8B-Instruct"
ROOT = "/var/lib/llmops/models"


def staged_manifest(name, namespace, revision, replicas=2):
    # A fresh commit id per test: node caches from other tests cannot satisfy it.
    return sim_deployment(
        name, namespace,
        # The simulator image stages from a simulated hub (no network, no token for a gated repo).
        model={"source": f"hf://{REPO}", "servedName": name, "revision": revision,
               "prestage": {"enabled": True, "image": SIM_IMAGE}},
        resources={"gpu": {"type": "NVIDIA-L4"}},
        placement={"profile": "edge"},
        replicas=replicas,
    )


def condition(crs, namespace, name, ctype):
    status = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)


def ready_and_staged(crs, namespace, name, replicas):
    status = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
    staged = condition(crs, namespace, name, "ModelStaged")
    return status.get("readyReplicas") == replicas and staged and staged["status"] == "True" and status


def pods(core, namespace, selector):
    return [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
            if not p.metadata.deletion_timestamp]


def serving_pods(core, namespace, name):
    return pods(core, namespace, f"app.kubernetes.io/name=llmops-vllm,app.kubernetes.io/instance={name}")


def stage_pods(core, namespace, name):
    return pods(core, namespace, f"app.kubernetes.io/name=llmops-model-stage,app.kubernetes.io/instance={name}")


def edge_l4_nodes(core):
    return {n.metadata.name for n in core.list_node(label_selector="llmops.io/edge=true,nvidia.com/gpu.product=NVIDIA-L4").items}


def test_staging_runs_on_exactly_the_edge_nodes_and_serving_pods_start_from_the_checked_copy(
        e2e_operator, crs, core, namespace, sandbox):
    revision = secrets.token_hex(20)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        staged_manifest("staged-edge", namespace, revision))
    wait_for(lambda: ready_and_staged(crs, namespace, "staged-edge", 2), 120,
             "the pre-staged edge deployment never had 2 ready replicas with ModelStaged=True")
    allowed = edge_l4_nodes(core)
    assert len(allowed) == 4
    stagers = stage_pods(core, namespace, "staged-edge")
    assert sorted(p.spec.node_name for p in stagers) == sorted(allowed), "one stager per allowed node, no other"
    assert "4 eligible nodes" in condition(crs, namespace, "staged-edge", "ModelStaged")["message"]
    key = cache_key(REPO, revision)
    for pod in serving_pods(core, namespace, "staged-edge"):
        assert pod.spec.node_name in allowed
        [init] = pod.status.init_container_statuses
        assert init.name == "model-stage-wait" and init.state.terminated.exit_code == 0
        [vllm] = pod.status.container_statuses
        assert vllm.state.running.started_at >= init.state.terminated.finished_at
        if sandbox.is_sandbox:
            # The serving container started after its own node's copy was complete and checked.
            marker = json.loads(sandbox.node_path(pod.spec.node_name, f"{ROOT}/{key}/{MARKER_FILE}").read_text())
            staged_at = dt.datetime.fromisoformat(marker["stagedAt"].replace("Z", "+00:00"))
            assert vllm.state.running.started_at >= staged_at
            assert marker["commit"] == revision
            assert "verified 6 files" in sandbox.pod_log(namespace, pod.metadata.name, "model-stage-wait")
    if sandbox.is_sandbox:
        others = {n.metadata.name for n in core.list_node().items} - allowed
        assert others and not any(sandbox.node_path(n, f"{ROOT}/{key}").exists() for n in others), \
            "weights were downloaded onto a node the placement does not allow"


def test_a_damaged_copy_is_refused_then_restaged_and_the_pod_recovers(e2e_operator, crs, core, namespace, sandbox):
    sandbox.require_sandbox("damages a file on a simulated node's disk")
    revision = secrets.token_hex(20)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        staged_manifest("repair-edge", namespace, revision, replicas=1))
    wait_for(lambda: ready_and_staged(crs, namespace, "repair-edge", 1), 120, "the deployment never got ready")
    shard = "model-00002-of-00004.safetensors"
    copies = [sandbox.node_path(n, f"{ROOT}/{cache_key(REPO, revision)}/{shard}") for n in edge_l4_nodes(core)]
    good = hashlib.sha256(copies[0].read_bytes()).hexdigest()
    for path in copies:   # wherever the replacement lands, its copy is bad (same size, one bit)
        data = bytearray(path.read_bytes())
        data[4096] ^= 0x01
        path.write_bytes(bytes(data))
    [old] = serving_pods(core, namespace, "repair-edge")
    core.delete_namespaced_pod(old.metadata.name, namespace, _preload_content=False)

    def replacement_ready():
        current = [p for p in serving_pods(core, namespace, "repair-edge") if p.metadata.uid != old.metadata.uid]
        ready = [p for p in current if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return ready[0] if ready else None

    new = wait_for(replacement_ready, 120, "the replacement pod never became Ready from a repaired copy")
    [init] = new.status.init_container_statuses
    assert init.restart_count >= 1, "the waiting init container should have refused the damaged copy first"
    repaired = sandbox.node_path(new.spec.node_name, f"{ROOT}/{cache_key(REPO, revision)}/{shard}")
    assert hashlib.sha256(repaired.read_bytes()).hexdigest() == good
    [stager] = [p for p in stage_pods(core, namespace, "repair-edge") if p.spec.node_name == new.spec.node_name]
    assert "staging again" in sandbox.pod_log(namespace, stager.metadata.name, "stage")


def test_turning_prestage_off_removes_the_daemonset_and_serves_from_the_hub_again(
        e2e_operator, crs, core, apps_api, namespace):
    revision = secrets.token_hex(20)
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        staged_manifest("toggle-edge", namespace, revision, replicas=1))
    wait_for(lambda: ready_and_staged(crs, namespace, "toggle-edge", 1), 120, "the deployment never got ready")
    crs.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "toggle-edge",
                                       {"spec": {"model": {"prestage": {"enabled": False}}}})

    def unstaged():
        sets = [d.metadata.name for d in apps_api.list_namespaced_daemon_set(namespace).items]
        template = apps_api.read_namespaced_deployment("toggle-edge", namespace).spec.template.spec
        return (not sets and not template.init_containers
                and condition(crs, namespace, "toggle-edge", "ModelStaged") is None)

    wait_for(unstaged, 60, "turning prestage off left the DaemonSet, the init container or the condition behind")
    args = apps_api.read_namespaced_deployment("toggle-edge", namespace).spec.template.spec.containers[0].args
    assert args[args.index("--model") + 1] == REPO and args[args.index("--revision") + 1] == revision


def test_a_revision_the_hub_lacks_is_reported_and_serving_pods_wait(e2e_operator, crs, core, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                        staged_manifest("typo-edge", namespace, "missing-v9", replicas=1))

    def explained():
        c = condition(crs, namespace, "typo-edge", "ModelStaged")
        return c if c and c["status"] == "False" and "Revision Not Found" in c.get("message", "") else None

    staged = wait_for(explained, 90, "ModelStaged never carried the hub's 404 for the missing revision")
    assert staged["reason"] == "CrashLoopBackOff" and "0/4 eligible nodes" in staged["message"]
    [pod] = serving_pods(core, namespace, "typo-edge")
    assert pod.status.phase == "Pending" and pod.status.init_container_statuses[0].state.running, \
        "the serving pod should be waiting for its node's copy, not loading without it"
    status = crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "typo-edge")["status"]
    assert status["readyReplicas"] == 0 and status["phase"] != "Ready"
