"""Model pre-staging objects (pure): the model-stage DaemonSet and what serving pods add.

The DaemonSet runs on exactly the nodes serving pods may use: it reuses the serving pods'
node selector, required node affinity and tolerations (`pod.placement`), and drops what
only makes sense for serving replicas (spread constraints, pod (anti-)affinity, priority).
Each of its pods downloads the weights into a node-local hostPath cache and checks them
against the hub's hashes; its readiness is "this node has a complete copy". Serving pods
mount the same directory read-only, wait for the copy in an init container (which also
re-hashes it against SHA256SUMS), and run vLLM offline on the local path.
"""

from __future__ import annotations

import posixpath
from typing import Any, Iterator

from llmops.api.v1alpha1 import LLMDeployment
from llmops.render.context import ResolvedSharding
from llmops.render.meta import child_metadata, common_labels
from llmops.render.pod import placement, staged_model_path
from llmops.stage.layout import DEFAULT_REVISION, MARKER_FILE

STAGE_APP_NAME = "llmops-model-stage"
STAGE_COMPONENT = "model-stage"
CACHE_VOLUME = "model-stage-cache"
WAIT_CONTAINER = "model-stage-wait"
# Env a hub download may need (token, mirror, transfer settings): passed from spec.engine.env.
HUB_ENV_PREFIXES = ("HF_", "HUGGING_FACE_")
OFFLINE_ENV = [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "TRANSFORMERS_OFFLINE", "value": "1"}]
# The kubelet creates the hostPath owned by root: writing there needs uid 0 (as its owner,
# so no capability is needed).
ROOT_NO_CAPS = {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]}}


def staging_enabled(d: LLMDeployment) -> bool:
    return d.spec.model.prestage.enabled


def stage_set_name(d: LLMDeployment) -> str:
    return f"{d.name}-stage"


def revision(d: LLMDeployment) -> str:
    return d.spec.model.revision or DEFAULT_REVISION


def stage_selector(d: LLMDeployment) -> dict[str, str]:
    return {"app.kubernetes.io/name": STAGE_APP_NAME, "app.kubernetes.io/instance": d.name}


def _cache_volume(d: LLMDeployment) -> dict[str, Any]:
    return {"name": CACHE_VOLUME, "hostPath": {"path": d.spec.model.prestage.host_path, "type": "DirectoryOrCreate"}}


def _hub_env(d: LLMDeployment) -> list[dict[str, Any]]:
    return [e for e in d.spec.engine.env if str(e.get("name", "")).startswith(HUB_ENV_PREFIXES)]


def _stage_placement(d: LLMDeployment, sharding: ResolvedSharding) -> dict[str, Any]:
    spec = placement(d, sharding)
    spec.pop("topologySpreadConstraints", None)
    spec.pop("priorityClassName", None)
    node_affinity = (spec.pop("affinity", None) or {}).get("nodeAffinity", {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required:  # preferred terms do not narrow where serving pods *may* run
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": required}}
    return spec


def stage_daemonset(d: LLMDeployment, sharding: ResolvedSharding, image: str) -> dict[str, Any]:
    prestage = d.spec.model.prestage
    directory = staged_model_path(d)
    args = ["--source", d.spec.model.source, "--revision", revision(d), "--root", prestage.host_path, "--hold",
            "--owner", f"{d.namespace}/{d.name}"]
    if prestage.retain_unused_hours is not None:
        args += ["--retain-unused-hours", f"{prestage.retain_unused_hours:g}"]
    args += [item for pattern in prestage.ignore_patterns for item in ("--ignore", pattern)]
    # The common labels (the operator tracks these pods too) with the serving selector swapped
    # for the stager's own: the serving Service must never route to them.
    labels = {**common_labels(d, STAGE_COMPONENT), **stage_selector(d)}
    container = {
        "name": "stage",
        "image": prestage.image or image,
        "command": ["llmops", "stage", "fetch"],
        "args": args,
        "env": [{"name": "HF_HOME", "value": posixpath.join(prestage.host_path, ".hf-home")},
                # Otherwise the client calls huggingface.co once per process even with HF_ENDPOINT set.
                {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}, *_hub_env(d)],
        # Ready = this node holds a complete, checked copy.
        "readinessProbe": {"exec": {"command": ["test", "-f", posixpath.join(directory, MARKER_FILE)]},
                           "periodSeconds": 5, "failureThreshold": 1},
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": ROOT_NO_CAPS,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # the error line reaches ModelStaged
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": prestage.host_path}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": child_metadata(d, stage_set_name(d), component=STAGE_COMPONENT),
        "spec": {
            "selector": {"matchLabels": stage_selector(d)},
            # A new revision is staged on every node at once; serving pods keep the old copy.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container],
                    "volumes": [_cache_volume(d)],
                    "terminationGracePeriodSeconds": 10,
                    **_stage_placement(d, sharding),
                },
            },
        },
    }


def _wait_container(d: LLMDeployment, image: str) -> dict[str, Any]:
    prestage = d.spec.model.prestage
    args = ["--dir", staged_model_path(d), "--timeout", str(d.spec.engine.startup_timeout_seconds)]
    if not prestage.verify_on_start:
        args.append("--no-verify")
    return {
        "name": WAIT_CONTAINER,
        "image": prestage.image or image,
        "command": ["llmops", "stage", "wait"],
        "args": args,
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "securityContext": ROOT_NO_CAPS,  # may drop a damaged copy's marker so it is re-staged
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": CACHE_VOLUME, "mountPath": prestage.host_path}],
    }


def add_staging(template: dict[str, Any], d: LLMDeployment, image: str) -> None:
    """Serving pod template: wait for the node's staged copy, mount it read-only, run offline."""
    spec = template["spec"]
    spec.setdefault("initContainers", []).insert(0, _wait_container(d, image))
    spec.setdefault("volumes", []).append(_cache_volume(d))
    for container in spec["containers"]:
        container.setdefault("volumeMounts", []).append(
            {"name": CACHE_VOLUME, "mountPath": d.spec.model.prestage.host_path, "readOnly": True})
        container["env"] = [*container.get("env", []), *OFFLINE_ENV]


def pod_templates(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod templates inside a Deployment, StatefulSet or LeaderWorkerSet."""
    spec = workload["spec"]
    if "template" in spec:
        yield spec["template"]
    lws = spec.get("leaderWorkerTemplate") or {}
    for key in ("leaderTemplate", "workerTemplate"):
        if key in lws:
            yield lws[key]
