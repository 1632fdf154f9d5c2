"""The vLLM pod template: command line, GPUs, volumes, probes and placement."""

from __future__ import annotations

from typing import Any

import copy

from llmops.api.v1alpha1 import VLLM_PORT, LLMDeployment, PlacementProfile, QuantizationMethod, ZoneSpread
from llmops.planner.vllm_release import image_release
from llmops.render.context import ResolvedSharding
from llmops.render.drain import pre_stop_lifecycle, termination_grace_seconds
from llmops.render.meta import common_labels, selector_labels
from llmops.render.multimodal import multimodal_args
from llmops.stage.layout import model_dir

MODEL_CACHE_PATH = "/root/.cache/huggingface"
PVC_MOUNT_ROOT = "/models"
EDGE_LABEL = "llmops.io/edge"
EDGE_TOLERATION = {"key": EDGE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
EDGE_PREFERENCE = {"weight": 100, "preference": {"matchExpressions": [
    {"key": EDGE_LABEL, "operator": "In", "values": ["true"]}]}}
ZONE_LABEL = "topology.kubernetes.io/zone"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# GPU nodes are commonly tainted so only GPU pods land there.
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
# vLLM releases whose `vllm serve` has --shutdown-timeout (0.11 has not; see sim/releases.py).
SHUTDOWN_TIMEOUT_SINCE = (0, 33)
STARTUP_PROBE_PERIOD = 10


def staged_model_path(d: LLMDeployment) -> str:
    """A pre-staged model's directory; the node cache is mounted at the same path in pods."""
    return model_dir(d.spec.model.prestage.host_path, d.spec.model.location, d.spec.model.revision)


def model_argument(d: LLMDeployment) -> str:
    """What `vllm serve` gets as --model for each source scheme."""
    source = d.spec.model
    if source.prestage.enabled:
        return staged_model_path(d)
    if source.scheme == "hf":
        return source.location
    if source.scheme == "pvc":
        return f"{PVC_MOUNT_ROOT}/{source.location.rstrip('/')}"
    return source.source  # s3:// is streamed by vLLM's run:ai model streamer


def vllm_args(d: LLMDeployment, sharding: ResolvedSharding) -> list[str]:
    engine = d.spec.engine
    args = [
        "--model", model_argument(d),
        "--served-model-name", d.served_name,
        "--host", "0.0.0.0",
        "--port", str(VLLM_PORT),
        "--tensor-parallel-size", str(sharding.tensor_parallel_size),
        "--pipeline-parallel-size", str(sharding.pipeline_parallel_size),
        "--gpu-memory-utilization", str(engine.gpu_memory_utilization),
    ]
    if d.spec.model.revision and not d.spec.model.prestage.enabled:
        args += ["--revision", d.spec.model.revision]
    if d.spec.model.scheme == "s3":
        args += ["--load-format", "runai_streamer"]
    if d.spec.quantization.method is not QuantizationMethod.none:
        args += ["--quantization", d.spec.quantization.method.value]
    optional = [
        ("--max-model-len", engine.max_model_len),
        ("--max-num-seqs", engine.max_num_seqs),
        ("--dtype", engine.dtype),
        ("--kv-cache-dtype", engine.kv_cache_dtype),
    ]
    args += [item for flag, value in optional if value is not None for item in (flag, str(value))]
    release = image_release(engine.image)
    if release is not None and release >= SHUTDOWN_TIMEOUT_SINCE:
        # If the preStop drain cannot run (an image without python3), vLLM itself still lets
        # in-flight requests finish after SIGTERM instead of aborting them at once.
        args += ["--shutdown-timeout", str(engine.drain_seconds)]
    return args + multimodal_args(engine.multimodal) + list(engine.extra_args)


def _resources(d: LLMDeployment, gpus: int) -> dict[str, Any]:
    # Quantities are strings: server-side apply's typed patch rejects bare integers.
    limits: dict[str, Any] = {d.spec.resources.gpu.resource_name: str(gpus)}
    requests: dict[str, Any] = {}
    if d.spec.engine.cpu:
        limits["cpu"] = requests["cpu"] = d.spec.engine.cpu
    if d.spec.engine.memory:
        limits["memory"] = requests["memory"] = d.spec.engine.memory
    return {"limits": limits, **({"requests": requests} if requests else {})}


def _probes(d: LLMDeployment) -> dict[str, Any]:
    def health() -> dict[str, Any]:
        return {"path": "/health", "port": "http"}

    return {
        # Downloading and loading weights takes minutes: the startup probe holds the
        # liveness probe off for the whole startupTimeoutSeconds budget.
        "startupProbe": {
            "httpGet": health(),
            "periodSeconds": STARTUP_PROBE_PERIOD,
            "failureThreshold": max(1, d.spec.engine.startup_timeout_seconds // STARTUP_PROBE_PERIOD),
        },
        "readinessProbe": {"httpGet": health(), "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": health(), "periodSeconds": 15, "failureThreshold": 4},
    }


def _volumes(d: LLMDeployment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        # NCCL and the multiprocessing executor exchange tensors through /dev/shm.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "model-cache", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "model-cache", "mountPath": MODEL_CACHE_PATH},
    ]
    if d.spec.model.scheme == "pvc":
        claim = d.spec.model.location.split("/", 1)[0]
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "model", "mountPath": f"{PVC_MOUNT_ROOT}/{claim}", "readOnly": True})
    return volumes, mounts


def _zone_spread(d: LLMDeployment) -> list[dict[str, Any]]:
    mode = d.spec.placement.zone_spread
    if mode is ZoneSpread.none:
        return []
    return [{
        "maxSkew": 1,
        "topologyKey": ZONE_LABEL,
        "whenUnsatisfiable": "DoNotSchedule" if mode is ZoneSpread.required else "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector_labels(d)},
    }]


def placement(d: LLMDeployment, sharding: ResolvedSharding | None = None) -> dict[str, Any]:
    """User placement unchanged, plus what the GPU type and the placement shorthands imply."""
    p = d.spec.placement
    node_selector = dict(p.node_selector)
    tolerations = list(p.tolerations)
    affinity = copy.deepcopy(p.affinity)
    gpu_type = d.spec.resources.gpu.type or (sharding.gpu_product if sharding else None)
    if gpu_type:
        node_selector.setdefault(GPU_PRODUCT_LABEL, gpu_type)
    if p.profile is PlacementProfile.edge:
        node_selector.setdefault(EDGE_LABEL, "true")
    if p.profile is PlacementProfile.edge_preferred:
        preferred = affinity.setdefault("nodeAffinity", {}).setdefault(
            "preferredDuringSchedulingIgnoredDuringExecution", [])
        preferred.append(EDGE_PREFERENCE)
    if p.profile is not PlacementProfile.default and EDGE_TOLERATION not in tolerations:
        tolerations.append(EDGE_TOLERATION)
    if GPU_TOLERATION not in tolerations:
        tolerations.append(GPU_TOLERATION)
    spec: dict[str, Any] = {"nodeSelector": node_selector, "tolerations": tolerations}
    if affinity:
        spec["affinity"] = affinity
    spread = list(p.topology_spread_constraints) + _zone_spread(d)
    if spread:
        spec["topologySpreadConstraints"] = spread
    if p.priority_class_name:
        spec["priorityClassName"] = p.priority_class_name
    return spec


def pod_template(d: LLMDeployment, sharding: ResolvedSharding) -> dict[str, Any]:
    volumes, mounts = _volumes(d)
    container = {
        "name": "vllm",
        "image": d.spec.engine.image,
        "args": vllm_args(d, sharding),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "env": [{"name": "HF_HOME", "value": MODEL_CACHE_PATH}, *d.spec.engine.env],
        "resources": _resources(d, sharding.gpus_per_node),
        "volumeMounts": mounts,
        # vLLM's last log line (CUDA OOM, unknown architecture, ...) becomes the pod's
        # termination message, which status shows on a crash loop.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # Scale-down and rollouts: keep serving until endpoint removal has propagated, then
        # until in-flight requests are done (llmops.render.drain), and only then SIGTERM.
        "lifecycle": pre_stop_lifecycle(d.spec.engine.drain_seconds),
        **_probes(d),
    }
    return {
        "metadata": {
            "labels": common_labels(d),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(VLLM_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "containers": [container],
            "volumes": volumes,
            "terminationGracePeriodSeconds": termination_grace_seconds(d.spec.engine.drain_seconds),
            **placement(d, sharding),
        },
    }
