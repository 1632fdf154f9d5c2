"""Rendering: golden files for representative manifests plus the rules that matter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from llmops.render import ClusterCapabilities, ResolvedSharding, render_children
from llmops.validation import validate_manifest

DATA = Path(__file__).parent / "data" / "render"
GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("LLMOPS_UPDATE_GOLDEN") == "1"


def load(name: str):
    return validate_manifest(yaml.safe_load((DATA / name).read_text()))


def by_kind(children):
    return {c["kind"]: c for c in children}


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.yaml")))
def test_render_matches_golden(name):
    d = load(name)
    s = d.spec.sharding
    rendered = yaml.safe_dump_all(
        render_children(d, ResolvedSharding(s.tensor_parallel_size or 1, s.pipeline_parallel_size or 1)),
        sort_keys=False,
    )
    golden = GOLDEN / name
    if UPDATE or not golden.exists():
        golden.write_text(rendered)
        if not UPDATE:
            pytest.fail(f"golden file {golden} was missing and has been written; review and commit it")
    assert rendered == golden.read_text(), f"rendering of {name} changed; LLMOPS_UPDATE_GOLDEN=1 to accept"


def test_gpu_count_is_tp_times_pp_and_args_carry_sharding():
    d = load("s3-fp8-tp4.yaml")
    children = by_kind(render_children(d, ResolvedSharding(4, 2)))
    container = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    args = container["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--pipeline-parallel-size") + 1] == "2"
    assert args[args.index("--quantization") + 1] == "fp8"
    assert args[args.index("--model") + 1] == "s3://weights/llama-3.1-70b-instruct"
    assert args[args.index("--load-format") + 1] == "runai_streamer"
    assert args[-2:] == ["--enable-prefix-caching", "--max-num-batched-tokens=8192"]


def test_placement_reaches_pod_spec_unchanged_plus_profile_extras():
    d = load("edge-pvc.yaml")
    pod = by_kind(render_children(d))["Deployment"]["spec"]["template"]["spec"]
    assert pod["affinity"] == d.spec.placement.affinity
    assert pod["topologySpreadConstraints"] == d.spec.placement.topology_spread_constraints
    assert pod["nodeSelector"] == {
        "topology.kubernetes.io/zone": "store-17",
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "llmops.io/edge": "true",
    }
    assert {"key": "llmops.io/edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]


def test_pvc_source_is_mounted_read_only_and_passed_as_path():
    d = load("edge-pvc.yaml")
    pod = by_kind(render_children(d))["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][container["args"].index("--model") + 1] == "/models/models/phi-3-mini"
    assert {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    assert {"name": "model", "mountPath": "/models/models", "readOnly": True} in container["volumeMounts"]


def test_children_are_owned_and_labelled():
    d = load("minimal.yaml")
    for child in render_children(d):
        meta = child["metadata"]
        assert meta["ownerReferences"] == [{
            "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "name": "qwen-small",
            "uid": "00000000-0000-0000-0000-000000000001", "controller": True, "blockOwnerDeletion": True,
        }]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "llmops"
        assert meta["labels"]["app.kubernetes.io/instance"] == "qwen-small"
        assert meta["namespace"] == "default"


def test_replicas_come_from_the_custom_resource_and_rollout_never_surges():
    d = load("edge-pvc.yaml")
    spec = by_kind(render_children(d))["Deployment"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_probes_are_patient_for_model_loading():
    d = load("edge-pvc.yaml")  # startupTimeoutSeconds: 600
    container = by_kind(render_children(d))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_shared_memory_volume_is_memory_backed():
    pod = by_kind(render_children(load("minimal.yaml")))["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]


def test_pdb_api_version_follows_discovery():
    d = load("minimal.yaml")
    old = by_kind(render_children(d, capabilities=ClusterCapabilities(pdb_api_version="policy/v1beta1")))
    assert old["PodDisruptionBudget"]["apiVersion"] == "policy/v1beta1"
    assert by_kind(render_children(d))["PodDisruptionBudget"]["apiVersion"] == "policy/v1"


def test_service_serves_port_8000_named_http():
    svc = by_kind(render_children(load("minimal.yaml")))["Service"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "llmops-vllm", "app.kubernetes.io/instance": "qwen-small"}


def test_rendering_is_pure_and_repeatable():
    d = load("s3-fp8-tp4.yaml")
    assert render_children(d) == render_children(d)


def test_multi_node_replica_renders_leader_and_per_group_worker_sets():
    d = load("edge-pvc.yaml")  # replicas: 2
    children = render_children(d, ResolvedSharding(1, 2, nodes_per_replica=2))
    names = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert names == [("Service", "phi-edge"), ("Service", "phi-edge-group"), ("StatefulSet", "phi-edge-leader"),
                     ("StatefulSet", "phi-edge-workers-0"), ("StatefulSet", "phi-edge-workers-1"),
                     ("PodDisruptionBudget", "phi-edge")]
    service, headless, leaders, workers0 = children[0], children[1], children[2], children[3]
    assert service["spec"]["selector"]["llmops.io/role"] == "leader"
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert leaders["spec"]["replicas"] == 2 and workers0["spec"]["replicas"] == 1
    leader_pod = leaders["spec"]["template"]["spec"]
    assert leader_pod["readinessGates"] == [{"conditionType": "llmops.io/group-ready"}]
    leader = leader_pod["containers"][0]
    assert leader["command"][:2] == ["/bin/sh", "-c"] and "ray start --head" in leader["command"][2]
    assert leader["args"][-2:] == ["--distributed-executor-backend", "ray"]
    assert leader["args"][leader["args"].index("--pipeline-parallel-size") + 1] == "2"
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == "1"  # TP per node, not TP x PP
    worker = workers0["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"] == ["ray", "start", "--block", "--address=$(LLMOPS_LEADER_ADDRESS):6379"]
    assert {"name": "LLMOPS_LEADER_ADDRESS", "value": "phi-edge-leader-0.phi-edge-group.edge.svc.cluster.local"} in worker["env"]
    assert "readinessProbe" not in worker
    # Edge placement applies to every member of the group.
    assert workers0["spec"]["template"]["spec"]["nodeSelector"]["llmops.io/edge"] == "true"


def test_multi_node_with_leaderworkerset_installed_renders_one_lws():
    d = load("edge-pvc.yaml")
    children = render_children(d, ResolvedSharding(1, 2, nodes_per_replica=2),
                               ClusterCapabilities(leader_worker_set=True))
    [lws] = [c for c in children if c["kind"] == "LeaderWorkerSet"]
    template = lws["spec"]["leaderWorkerTemplate"]
    assert (lws["spec"]["replicas"], template["size"], template["restartPolicy"]) == (2, 2, "RecreateGroupOnPodRestart")
    worker_env = template["workerTemplate"]["spec"]["containers"][0]["env"]
    assert {"name": "LLMOPS_LEADER_ADDRESS", "value": "$(LWS_LEADER_ADDRESS)"} in worker_env
    assert not [c for c in children if c["kind"] in ("Deployment", "StatefulSet")]


def test_planner_chosen_gpu_type_is_pinned_when_the_spec_names_none():
    d = load("minimal.yaml")
    pod = by_kind(render_children(d, ResolvedSharding(1, 1, gpu_product="NVIDIA-L4")))["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"


def test_edge_preferred_prefers_edge_nodes_without_requiring_them():
    d = load("edge-pvc.yaml")
    d.spec.placement.profile = "edge-preferred"
    pod = by_kind(render_children(d))["Deployment"]["spec"]["template"]["spec"]
    assert "llmops.io/edge" not in pod["nodeSelector"]
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred[0] == d.spec.placement.affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert {"weight": 100, "preference": {"matchExpressions": [
        {"key": "llmops.io/edge", "operator": "In", "values": ["true"]}]}} in preferred
    assert {"key": "llmops.io/edge", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
    # The user's affinity object itself is not modified.
    assert len(d.spec.placement.affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]) == 1


def test_zone_spread_adds_a_constraint_after_the_users_own():
    d = load("edge-pvc.yaml")
    d.spec.placement.zone_spread = "required"
    spread = by_kind(render_children(d))["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0] == d.spec.placement.topology_spread_constraints[0]
    assert spread[1] == {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "llmops-vllm",
                                                           "app.kubernetes.io/instance": "phi-edge"}}}
    d.spec.placement.zone_spread = "preferred"
    spread = by_kind(render_children(d))["Deployment"]["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[1]["whenUnsatisfiable"] == "ScheduleAnyway"


def _pod_spec(d, sharding=None):
    return by_kind(render_children(d, sharding))["Deployment"]["spec"]["template"]["spec"]


def test_serving_pods_drain_before_sigterm_within_a_grace_period_derived_from_drain_seconds():
    d = load("edge-pvc.yaml")
    d.spec.engine.drain_seconds = 45
    pod = _pod_spec(d)
    hook = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["python3", "-c"]
    # local engine, port, endpoint-propagation delay, drain budget, poll, idle readings
    assert hook[3:] == ["127.0.0.1", "8000", "5", "45", "0.5", "2"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 45 + 15


def test_shutdown_timeout_only_for_releases_that_have_the_flag():
    d = load("edge-pvc.yaml")
    for image, expected in (("vllm/vllm-openai:v0.33.0", ["--shutdown-timeout", "120"]),
                            ("vllm/vllm-openai:v0.11.0", None), ("llmops/vllm-sim:latest", None)):
        d.spec.engine.image = image
        args = _pod_spec(d)["containers"][0]["args"]
        found = args[args.index("--shutdown-timeout"):][:2] if "--shutdown-timeout" in args else None
        assert found == expected, image


def test_group_leaders_drain_and_workers_wait_for_their_leader():
    d = load("edge-pvc.yaml")
    children = render_children(d, ResolvedSharding(1, 2, nodes_per_replica=2))
    leader = children[2]["spec"]["template"]["spec"]["containers"][0]
    worker = children[3]["spec"]["template"]["spec"]["containers"][0]
    assert leader["lifecycle"]["preStop"]["exec"]["command"][3] == "127.0.0.1"
    # A worker stays in the Ray cluster until its leader's engine is idle (or gone).
    assert worker["lifecycle"]["preStop"]["exec"]["command"][3] == "env:LLMOPS_LEADER_ADDRESS"
