"""The `LLMDeployment` API (llmops.io/v1alpha1): the public contract.

These pydantic models are the single source of truth: the CRD in `crds/` is generated
from them (`llmops crds`), the CLI and the admission webhook validate with them, and the
renderer reads them. Field names are camelCase on the wire (aliases), snake_case in code.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from llmops.api.activator import ActivatorSpec
from llmops.api.autoscaling import AutoscalingSpec

GROUP = "llmops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
SINGULAR = "llmdeployment"
SHORT_NAMES = ["llmd"]

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"  # the one pin; spec.engine.image chooses another
VLLM_PORT = 8000
# The largest GPU count a single sane node offers (8 is the common maximum, 16 exists).
MAX_GPUS_PER_NODE = 16

# Kubernetes sub-objects (tolerations, affinity, env, ...) are passed through verbatim;
# the API server validates them when the children are applied.
KubeObject = dict[str, Any]


class ApiModel(BaseModel):
    """Base: camelCase aliases, unknown fields rejected (a typo must not pass silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ModelShape(ApiModel):
    """Architecture figures for a model the built-in catalogue does not know."""

    parameters_billions: float = Field(gt=0, description="Total parameters, in billions (e.g. 8.03).")
    layers: int = Field(gt=0, description="Transformer layers (num_hidden_layers).")
    attention_heads: int = Field(gt=0, description="Attention heads (num_attention_heads).")
    kv_heads: Optional[int] = Field(
        default=None, gt=0, description="Key/value heads (num_key_value_heads); defaults to attentionHeads."
    )
    hidden_size: int = Field(gt=0, description="Hidden size (hidden_size).")
    max_context_length: Optional[int] = Field(
        default=None, gt=0, description="The model's native context length (max_position_embeddings)."
    )


DEFAULT_STAGE_HOST_PATH = "/var/lib/llmops/models"
# Files a Hugging Face repo often carries besides the safetensors vLLM loads: original
# checkpoints (Llama's `original/`), PyTorch/TF/Flax/GGUF/ONNX copies. Skipping them
# roughly halves what edge nodes download for many popular repos.
DEFAULT_STAGE_IGNORE = ["original/*", "*.pth", "*.pt", "*.msgpack", "*.h5", "*.gguf", "*.onnx", "*.onnx_data"]


class PrestageSpec(ApiModel):
    """Download the weights onto every node the placement allows before serving pods start."""

    enabled: bool = Field(
        default=False,
        description=(
            "Run a DaemonSet on exactly the nodes serving pods may use (same selector, affinity and "
            "tolerations) that downloads the weights to a node-local cache and checks their SHA-256; serving "
            "pods wait for and verify that copy and load it offline."
        ),
    )
    host_path: str = Field(
        default=DEFAULT_STAGE_HOST_PATH,
        pattern=r"^/[^\s:]*[^\s:/]$",
        description="Node directory holding staged models (one sub-directory per repo and revision).",
    )
    image: Optional[str] = Field(
        default=None,
        min_length=1,
        description="Image with `llmops stage`; empty = the operator's own image (--stager-image).",
    )
    ignore_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_STAGE_IGNORE),
        description="Repo files not to download (fnmatch patterns); [] downloads everything.",
    )
    retain_unused_hours: Optional[float] = Field(
        default=24,
        ge=0,
        description=(
            "Remove staged copies on the node that no deployment has used for this long (an old revision, "
            "a deleted deployment); empty = keep them forever."
        ),
    )
    verify_on_start: bool = Field(
        default=True,
        description="Serving pods re-check every file's SHA-256 against the manifest before loading (costs ~1 s/GB).",
    )

    @field_validator("host_path")
    @classmethod
    def _plain_host_path(cls, path: str) -> str:
        if ".." in path.split("/"):
            raise ValueError(f"{path!r} contains '..'; use an absolute path such as {DEFAULT_STAGE_HOST_PATH}")
        return path


MODEL_SOURCE_PATTERN = r"^(hf://[^/\s]+/[^\s]+|s3://[^/\s]+(/[^\s]*)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[^\s]*)?)$"


class ModelSpec(ApiModel):
    source: str = Field(
        description="Where the weights come from: hf://ORG/NAME, s3://BUCKET/PATH or pvc://CLAIM/PATH.",
        pattern=MODEL_SOURCE_PATTERN,
    )
    served_name: Optional[str] = Field(
        default=None,
        description="Name clients use in requests (--served-model-name); defaults to metadata.name.",
        min_length=1,
        max_length=253,
    )
    shape: Optional[ModelShape] = Field(
        default=None,
        description="Architecture figures for models the planner's catalogue does not know.",
    )
    revision: Optional[str] = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$",
        description="Branch, tag or commit of an hf:// source (--revision); empty = main. Pin a commit for reproducible staging.",
    )
    prestage: PrestageSpec = Field(default_factory=PrestageSpec, description="Pre-stage weights on the nodes.")

    @model_validator(mode="after")
    def _prestage_needs_hf(self) -> "ModelSpec":
        if self.prestage.enabled and self.scheme != "hf":
            fix = ("the weights are already on a volume" if self.scheme == "pvc"
                   else "vLLM streams s3:// weights itself")
            raise ValueError(
                f"prestage.enabled: pre-staging supports hf:// sources only ({fix}); "
                "set prestage.enabled: false or use an hf:// source"
            )
        if self.revision is not None and self.scheme != "hf":
            raise ValueError("revision: only hf:// sources have revisions; remove it or use an hf:// source")
        return self

    @property
    def scheme(self) -> str:
        return self.source.split("://", 1)[0]

    @property
    def location(self) -> str:
        return self.source.split("://", 1)[1]


# A chat completion of a few hundred to ~2,000 tokens at 20-50 tokens/s per sequence (a busy
# replica) takes 10-100 s; 120 s lets nearly all of them finish. A drain ends as soon as the
# engine is idle, so the budget costs time only when requests are really in flight.
DEFAULT_DRAIN_SECONDS = 120
MAX_DRAIN_SECONDS = 3600  # beyond an hour a scale-down or rollout would hang on one request


class MultimodalSpec(ApiModel):
    """vLLM's multimodal limits for a vision-language model (spec.engine.multimodal)."""

    images_per_prompt: Optional[int] = Field(
        default=None, ge=1, le=999,
        description="Most images one request may carry (--limit-mm-per-prompt image); vLLM allows 999.",
    )
    videos_per_prompt: Optional[int] = Field(
        default=None, ge=1, le=999, description="Most videos one request may carry (--limit-mm-per-prompt video).",
    )
    max_image_pixels: Optional[int] = Field(
        default=None, ge=3136, le=100_000_000,
        description="Largest image area the processor keeps, in pixels; larger images are scaled down "
                    "(--mm-processor-kwargs max_pixels; Qwen2.5-VL, whose processor bounds the area).",
    )
    processor_cache_gib: Optional[float] = Field(
        default=None, ge=0, le=1024, alias="processorCacheGiB",
        description="Cache of processed images in GiB of host memory, 0 disables it (--mm-processor-cache-gb; "
                    "vLLM's default 4).",
    )
    encoder_tensor_parallel_mode: Optional[Literal["weights", "data"]] = Field(
        default=None,
        description="weights (vLLM's default): the vision encoder is sharded like the language model; "
                    "data: every tensor-parallel GPU holds the whole encoder and takes a share of the images "
                    "(--mm-encoder-tp-mode).",
    )


class EngineSpec(ApiModel):
    image: str = Field(default=DEFAULT_VLLM_IMAGE, description="vLLM OpenAI server image.", min_length=1)
    max_model_len: Optional[int] = Field(
        default=None, gt=0, le=10_000_000, description="Context length (--max-model-len)."
    )
    gpu_memory_utilization: float = Field(
        default=0.9, gt=0, le=1, description="Share of each GPU's memory vLLM may use (--gpu-memory-utilization)."
    )
    max_num_seqs: Optional[int] = Field(
        default=None, gt=0, le=65536, description="Maximum concurrent sequences per replica (--max-num-seqs)."
    )
    dtype: Optional[str] = Field(
        default=None, description="Weight/activation dtype (--dtype): auto, half, float16, bfloat16, float32."
    )
    kv_cache_dtype: Optional[str] = Field(default=None, description="KV-cache dtype (--kv-cache-dtype): auto, fp8, ...")
    multimodal: Optional[MultimodalSpec] = Field(
        default=None, description="Limits for a vision-language model's image and video inputs."
    )
    extra_args: list[str] = Field(default_factory=list, description="Extra `vllm serve` arguments, passed verbatim.")
    env: list[KubeObject] = Field(
        default_factory=list, description="Extra container env (core/v1 EnvVar), e.g. HF_TOKEN from a Secret."
    )
    cpu: Optional[str] = Field(default=None, description="CPU request and limit per pod, e.g. '8'.")
    memory: Optional[str] = Field(default=None, description="Memory request and limit per pod, e.g. '64Gi'.")
    startup_timeout_seconds: int = Field(
        default=1800,
        ge=60,
        le=86400,
        description="How long a pod may take to download and load the model before it is restarted.",
    )
    drain_seconds: int = Field(
        default=DEFAULT_DRAIN_SECONDS,
        ge=0,
        le=MAX_DRAIN_SECONDS,
        description="On scale-down and rollouts, how long a stopping pod may keep finishing its in-flight "
        "requests (after a few seconds of serving on while endpoint removal propagates). "
        "terminationGracePeriodSeconds is derived from it.",
    )

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: Optional[str]) -> Optional[str]:
        allowed = {"auto", "half", "float16", "bfloat16", "float", "float32"}
        if value is not None and value not in allowed:
            raise ValueError(f"unknown dtype {value!r}; use one of {', '.join(sorted(allowed))}")
        return value

    @field_validator("extra_args")
    @classmethod
    def _no_managed_flags(cls, args: list[str]) -> list[str]:
        for arg in args:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise ValueError(
                    f"{flag} is set by llmops from {MANAGED_FLAGS[flag]}; set that field instead of extraArgs"
                )
        return args


# Flags the renderer sets from typed fields; passing them in extraArgs would conflict.
MANAGED_FLAGS = {
    "--model": "spec.model.source",
    "--revision": "spec.model.revision",
    "--served-model-name": "spec.model.servedName",
    "--tensor-parallel-size": "spec.sharding.tensorParallelSize",
    "--pipeline-parallel-size": "spec.sharding.pipelineParallelSize",
    "--quantization": "spec.quantization.method",
    "--max-model-len": "spec.engine.maxModelLen",
    "--gpu-memory-utilization": "spec.engine.gpuMemoryUtilization",
    "--max-num-seqs": "spec.engine.maxNumSeqs",
    "--limit-mm-per-prompt": "spec.engine.multimodal.imagesPerPrompt / videosPerPrompt",
    "--mm-processor-kwargs": "spec.engine.multimodal.maxImagePixels",
    "--mm-processor-cache-gb": "spec.engine.multimodal.processorCacheGiB",
    "--mm-encoder-tp-mode": "spec.engine.multimodal.encoderTensorParallelMode",
    "--port": "the fixed serving port 8000",
    "--shutdown-timeout": "spec.engine.drainSeconds",
    "--host": "the pod network (0.0.0.0)",
}


class ShardingSpec(ApiModel):
    """How one replica is split across GPUs. Leave sizes empty for the planner to choose."""

    tensor_parallel_size: Optional[int] = Field(
        default=None, ge=1, le=64, description="GPUs a layer is split across (--tensor-parallel-size); empty = auto."
    )
    pipeline_parallel_size: Optional[int] = Field(
        default=None, ge=1, le=64, description="Pipeline stages (--pipeline-parallel-size); empty = auto."
    )
    allow_multi_node: bool = Field(
        default=False,
        description="Let one replica span several nodes (pipeline stages across nodes, tensor parallel within).",
    )

    @property
    def is_auto(self) -> bool:
        return self.tensor_parallel_size is None and self.pipeline_parallel_size is None

    @property
    def gpus_per_replica(self) -> int:
        return (self.tensor_parallel_size or 1) * (self.pipeline_parallel_size or 1)


class QuantizationMethod(str, Enum):
    none = "none"
    awq = "awq"
    gptq = "gptq"
    fp8 = "fp8"
    bitsandbytes = "bitsandbytes"
    gguf = "gguf"
    compressed_tensors = "compressed-tensors"
    awq_marlin = "awq_marlin"
    gptq_marlin = "gptq_marlin"


class QuantizationSpec(ApiModel):
    method: QuantizationMethod = Field(
        default=QuantizationMethod.none, description="Weight quantization (--quantization); none = model dtype."
    )


class GPUSpec(ApiModel):
    type: Optional[str] = Field(
        default=None,
        description="GPU product (the nvidia.com/gpu.product node label), e.g. NVIDIA-L4; pods are pinned to it.",
        min_length=1,
    )
    resource_name: str = Field(default="nvidia.com/gpu", description="Extended resource that counts GPUs.")


class ResourcesSpec(ApiModel):
    gpu: GPUSpec = Field(default_factory=GPUSpec, description="GPUs per replica follow from sharding.")


class PlacementProfile(str, Enum):
    default = "default"
    edge = "edge"                       # only edge nodes
    edge_preferred = "edge-preferred"   # edge nodes first, datacenter nodes when none fits


class ZoneSpread(str, Enum):
    none = "none"
    preferred = "preferred"  # spread replicas over zones/sites when the scheduler can
    required = "required"    # never put two more replicas in one zone than in another


class PlacementSpec(ApiModel):
    profile: PlacementProfile = Field(
        default=PlacementProfile.default,
        description=(
            "'edge' adds the edge node selector and toleration (llmops.io/edge); 'edge-preferred' "
            "prefers edge nodes (node affinity) and tolerates them, falling back to other nodes."
        ),
    )
    zone_spread: ZoneSpread = Field(
        default=ZoneSpread.none,
        description="Spread replicas across topology.kubernetes.io/zone (e.g. edge sites): none, preferred or required.",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Passed to the pod spec unchanged.")
    tolerations: list[KubeObject] = Field(default_factory=list, description="core/v1 Tolerations, unchanged.")
    affinity: KubeObject = Field(default_factory=dict, description="core/v1 Affinity, unchanged.")
    topology_spread_constraints: list[KubeObject] = Field(
        default_factory=list, description="core/v1 TopologySpreadConstraints, unchanged."
    )
    priority_class_name: Optional[str] = Field(default=None, description="Pod priority class.")


class LLMDeploymentSpec(ApiModel):
    model: ModelSpec
    engine: EngineSpec = Field(default_factory=EngineSpec)
    sharding: ShardingSpec = Field(default_factory=ShardingSpec)
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    replicas: int = Field(default=1, ge=0, le=1000, description="Desired replicas (the /scale subresource).")
    autoscaling: Optional[AutoscalingSpec] = Field(
        default=None, description="Scale replicas from Prometheus metrics; absent = fixed replicas."
    )
    activator: ActivatorSpec = Field(
        default_factory=ActivatorSpec, description="Hold requests while the deployment wakes from zero."
    )

    @model_validator(mode="after")
    def _single_node_shape(self) -> "LLMDeploymentSpec":
        gpus = self.sharding.gpus_per_replica
        if gpus > MAX_GPUS_PER_NODE and not self.sharding.allow_multi_node:
            raise ValueError(
                f"sharding: tensorParallelSize x pipelineParallelSize = {gpus} GPUs, more than any node offers "
                f"({MAX_GPUS_PER_NODE}); lower the sizes or set sharding.allowMultiNode: true"
            )
        return self


class Condition(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: str
    status: str = Field(description="True, False or Unknown.")
    reason: str = ""
    message: Optional[str] = None  # left out when empty: a 1.20 API server refuses ""
    last_transition_time: Optional[str] = None
    observed_generation: Optional[int] = None


class LLMDeploymentStatus(ApiModel):
    # Status is written by the operator; tolerate fields added by newer operator versions.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    observed_generation: Optional[int] = None
    phase: Optional[str] = Field(default=None, description="Pending, Progressing, Ready, Degraded or Failed.")
    # Keyed by type, so each status writer (server-side apply, its own field manager) owns
    # its own conditions and one writer's list never replaces another's.
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: Optional[int] = Field(default=None, description="Replicas that exist (for /scale).")
    ready_replicas: Optional[int] = None
    updated_replicas: Optional[int] = None
    selector: Optional[str] = Field(default=None, description="Label selector of the pods (for /scale).")
    endpoint: Optional[str] = Field(default=None, description="In-cluster OpenAI-compatible base URL.")
    tensor_parallel_size: Optional[int] = Field(default=None, description="Tensor parallel size in use.")
    pipeline_parallel_size: Optional[int] = Field(default=None, description="Pipeline parallel size in use.")
    nodes_per_replica: Optional[int] = Field(default=None, description="Nodes each replica (group) spans.")
    sharding_source: Optional[str] = Field(
        default=None, description="'spec' when the sizes came from the spec, 'planner' when llmops chose them."
    )
    group_backend: Optional[str] = Field(
        default=None, description="What runs multi-node groups (StatefulSet or LeaderWorkerSet); kept until asked to switch."
    )
    autoscaling: Optional[dict[str, Any]] = Field(default=None, description="The autoscaler's last decisions.")

    def to_patch(self) -> dict[str, Any]:
        """The JSON a status write sends: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=63)
    namespace: Optional[str] = None
    uid: Optional[str] = None
    generation: Optional[int] = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        # Children (Services) are named after the deployment: it must be a DNS-1035 label.
        if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
            raise ValueError(
                f"{name!r} is not a valid name: use lower-case letters, digits and '-', starting with a letter"
            )
        return name


class LLMDeployment(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: LLMDeploymentSpec
    status: Optional[LLMDeploymentStatus] = None

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != API_VERSION:
            raise ValueError(f"must be {API_VERSION}")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value != KIND:
            raise ValueError(f"must be {KIND}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def served_name(self) -> str:
        return self.spec.model.served_name or self.metadata.name
