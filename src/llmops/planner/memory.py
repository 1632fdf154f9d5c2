"""Per-GPU memory estimate for one vLLM replica laid out as tensor x pipeline parallel.

vLLM's rule (vllm/v1/worker/gpu_worker.py determine_available_memory): it may use
gpu_memory_utilization x total GPU memory; from that it subtracts the weights, the peak
activation of a profiling forward pass over max_num_batched_tokens tokens, and non-torch
memory; the rest becomes KV cache. It refuses to start when the KV cache cannot hold ONE
sequence of max_model_len tokens (vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory:
"To serve at least one request with the models's max seq len ..."). That one full-length
sequence is what this planner calls the minimum KV cache; it also reports how many
full-length sequences fit, which is the replica's concurrency at full context.

Figures that are assumptions rather than vLLM rules (stated so they can be challenged):
- RUNTIME_FIXED_GIB: CUDA context, cuBLAS/NCCL workspaces and other non-torch memory,
  1.0 GiB per GPU (vLLM logs report 0.2-0.8 GiB non-torch memory plus a ~0.3-0.5 GiB context).
- CUDA_GRAPHS_GIB: 0.5 GiB per GPU for captured CUDA graphs ("Graph capturing finished ...
  took 0.2-1.0 GiB" in vLLM logs); none with --enforce-eager.
- Activation peak: max_num_batched_tokens x 2 bytes x (4 x hidden + 3 x intermediate / TP),
  i.e. residual, normalised input, attention output and the MLP's gate/up/act tensors of one
  layer, plus the sampler's fp32 logits and probabilities for max_num_seqs requests
  (max_num_seqs x vocab x 4 bytes x 2). intermediate defaults to 3.5 x hidden and vocab to
  128256 when unknown. This lands within ~0.5 GiB of the activation peaks vLLM logs for
  8B-70B models.
- vLLM defaults for the API server (vllm/engine/arg_utils.py get_batch_defaults):
  max_num_batched_tokens 8192 and max_num_seqs 1024 on GPUs with >= 70 GiB that are not
  A100, else 2048 and 256.
- Vision-language models (planner/vision.py): the vision tower stays 16-bit (quantized VLM
  checkpoints keep it unquantized), sits on the first pipeline stage, and is split by TP unless
  vLLM replicates it; its profiling peak is one largest image through the encoder
  (patches x 2 bytes x (4 x hidden + 3 x intermediate)), taken instead of the text forward
  when larger, plus the encoder cache: max(max_num_batched_tokens, largest image's tokens)
  embeddings of the language model's width, 16-bit (vllm/multimodal/encoder_budget.py).
  Image tokens take KV cache like text tokens (Qwen2.5-VL, Gemma 3).
- Sliding-window layers (Gemma 2, Mistral v0.1) are counted as full attention, and KV-head
  replication's extra weights are ignored: both make the estimate slightly larger, never smaller.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Optional

from llmops.api.v1alpha1 import LLMDeploymentSpec
from llmops.planner.gpus import GIB, GPUInfo, lookup_gpu
from llmops.planner.vllm_release import batch_defaults, image_release
from llmops.planner.models import ModelInfo
from llmops.planner.quantization import WeightFormat, kv_cache_bytes, weight_format

RUNTIME_FIXED_GIB = 1.0
CUDA_GRAPHS_GIB = 0.5
DEFAULT_VOCAB = 128256
MLP_RATIO = 3.5  # intermediate_size / hidden_size of Llama-style models
KV_BLOCK_TOKENS = 16  # vLLM's default block size: capacities are whole blocks


@dataclass(frozen=True)
class EngineSettings:
    """The vLLM settings that drive memory, with vLLM's defaults filled in."""

    max_model_len: Optional[int]
    gpu_memory_utilization: float
    max_num_seqs: int
    max_num_batched_tokens: int
    enforce_eager: bool
    cpu_offload_gib: float
    weights: WeightFormat
    kv_bytes: float
    max_model_len_from: str  # spec.engine.maxModelLen or the model's context length
    max_image_pixels: Optional[int] = None  # spec.engine.multimodal.maxImagePixels
    encoder_tp_mode: str = "weights"  # spec.engine.multimodal.encoderTensorParallelMode


def _extra_arg(args: list[str], flag: str) -> Optional[str]:
    """Value of `flag` in extraArgs, given as --flag=V or --flag V (or '' for a bare flag)."""
    tokens: list[str] = []
    for arg in args:
        tokens.extend(shlex.split(arg) if " " in arg else [arg])
    for i, token in enumerate(tokens):
        if token == flag:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            return "" if nxt.startswith("--") else nxt
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    return None


def _int_arg(args: list[str], flag: str) -> Optional[int]:
    value = _extra_arg(args, flag)
    try:
        return int(value) if value else None
    except ValueError:
        return None


def default_batch_limits(gpu: GPUInfo, image: Optional[str] = None) -> tuple[int, int]:
    """vLLM's API-server defaults (max_num_batched_tokens, max_num_seqs) for this GPU and image."""
    return batch_defaults(gpu.memory_gib, gpu.product, image_release(image) if image else None)


def engine_max_num_seqs(spec: LLMDeploymentSpec) -> Optional[int]:
    """The engine's max-num-seqs as rendered: the spec's, else vLLM's default for the GPU
    type; None when neither is known."""
    if spec.engine.max_num_seqs:
        return spec.engine.max_num_seqs
    gpu = lookup_gpu(spec.resources.gpu.type)
    return default_batch_limits(gpu, spec.engine.image)[1] if gpu else None


def engine_settings(spec: LLMDeploymentSpec, model: ModelInfo, gpu: GPUInfo) -> EngineSettings:
    engine = spec.engine
    default_tokens, default_seqs = default_batch_limits(gpu, engine.image)
    fmt = weight_format(spec)
    offload = _extra_arg(engine.extra_args, "--cpu-offload-gb")
    try:
        offload_gib = float(offload) if offload else 0.0
    except ValueError:
        offload_gib = 0.0
    return EngineSettings(
        max_model_len=engine.max_model_len or model.context_length,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        max_num_seqs=engine.max_num_seqs or default_seqs,
        max_num_batched_tokens=_int_arg(engine.extra_args, "--max-num-batched-tokens") or default_tokens,
        enforce_eager=_extra_arg(engine.extra_args, "--enforce-eager") is not None,
        cpu_offload_gib=offload_gib,
        weights=fmt,
        kv_bytes=kv_cache_bytes(spec, fmt),
        max_model_len_from="spec.engine.maxModelLen" if engine.max_model_len else "the model's context length",
        max_image_pixels=engine.multimodal.max_image_pixels if engine.multimodal else None,
        encoder_tp_mode=(engine.multimodal.encoder_tensor_parallel_mode if engine.multimodal else None) or "weights",
    )


@dataclass(frozen=True)
class MemoryBreakdown:
    """One GPU of the replica (the busiest pipeline stage); sizes in GiB."""

    gpu_product: str
    gpu_memory_gib: float
    gpu_memory_utilization: float
    budget_gib: float  # gpu_memory_utilization x GPU memory: all vLLM may use
    tensor_parallel_size: int
    pipeline_parallel_size: int
    weight_format: str
    model_weights_gib: float  # the whole model, all GPUs together
    weights_gib: float
    runtime_gib: float  # CUDA context, non-torch memory, CUDA graphs
    activation_gib: float
    kv_cache_gib: float  # what is left for the KV cache (negative: not even the weights fit)
    kv_bytes_per_token: float  # on this GPU
    max_model_len: Optional[int]
    min_kv_cache_gib: Optional[float]  # one sequence of max_model_len tokens
    kv_cache_tokens: int
    full_length_sequences: Optional[float]  # concurrent max_model_len sequences that fit
    headroom_gib: Optional[float]  # kv_cache_gib - min_kv_cache_gib
    longest_model_len: int  # the largest maxModelLen whose one sequence would fit
    vision: Optional["VisionMemory"] = None  # vision-language models only

    @property
    def weights_fit(self) -> bool:
        return self.kv_cache_gib > 0

    @property
    def fits(self) -> bool:
        """vLLM would start: weights, overhead and one full-length sequence fit the budget."""
        if self.headroom_gib is None:
            return self.weights_fit
        return self.headroom_gib >= 0

    @property
    def kv_share(self) -> float:
        """Share of the budget left to the KV cache."""
        return max(self.kv_cache_gib, 0.0) / self.budget_gib

    def to_dict(self) -> dict:
        return {
            "gpuProduct": self.gpu_product,
            "gpuMemoryGiB": round(self.gpu_memory_gib, 2),
            "gpuMemoryUtilization": self.gpu_memory_utilization,
            "budgetGiB": round(self.budget_gib, 2),
            "tensorParallelSize": self.tensor_parallel_size,
            "pipelineParallelSize": self.pipeline_parallel_size,
            "weightFormat": self.weight_format,
            "modelWeightsGiB": round(self.model_weights_gib, 2),
            "weightsGiB": round(self.weights_gib, 2),
            "runtimeOverheadGiB": round(self.runtime_gib, 2),
            "activationGiB": round(self.activation_gib, 2),
            "kvCacheGiB": round(self.kv_cache_gib, 2),
            "kvBytesPerToken": int(self.kv_bytes_per_token),
            "maxModelLen": self.max_model_len,
            "minKvCacheGiB": None if self.min_kv_cache_gib is None else round(self.min_kv_cache_gib, 2),
            "kvCacheTokens": self.kv_cache_tokens,
            "fullLengthSequences": None if self.full_length_sequences is None
            else round(self.full_length_sequences, 2),
            "headroomGiB": None if self.headroom_gib is None else round(self.headroom_gib, 2),
            "longestModelLen": self.longest_model_len,
            **({"vision": self.vision.to_dict()} if self.vision else {}),
            "fits": self.fits,
        }


@dataclass(frozen=True)
class VisionMemory:
    """The vision tower's share of one GPU, and what its largest image costs."""

    parameters_billions: float
    weights_gib: float  # on this GPU (included in MemoryBreakdown.weights_gib)
    sharded: bool  # split by TP (else every TP rank holds all of it)
    largest_image_tokens: int
    kv_gib_per_largest_image: float  # on this GPU
    activation_gib: float  # encoder forward + encoder cache (included in MemoryBreakdown.activation_gib)

    def to_dict(self) -> dict:
        return {
            "parametersBillions": round(self.parameters_billions, 3),
            "weightsGiB": round(self.weights_gib, 2),
            "shardedByTensorParallel": self.sharded,
            "largestImageTokens": self.largest_image_tokens,
            "kvCacheGiBPerLargestImage": round(self.kv_gib_per_largest_image, 3),
            "activationGiB": round(self.activation_gib, 2),
        }


def layers_per_stage(model: ModelInfo, pp: int) -> int:
    return math.ceil(model.layers / pp)


def kv_bytes_per_token(model: ModelInfo, tp: int, pp: int, element_bytes: float) -> float:
    """KV-cache bytes one token takes on one GPU.

    Standard attention: 2 (K and V) x layers x KV heads x head_dim x element bytes; tensor
    parallel splits the KV heads (one per GPU when TP >= KV heads: vLLM replicates them),
    pipeline parallel splits the layers. MLA: one latent vector per layer, on every TP rank.
    """
    layers = layers_per_stage(model, pp)
    if model.mla_cache_width:
        return layers * model.mla_cache_width * element_bytes
    heads_per_gpu = max(1, model.kv_heads // tp) if tp <= model.kv_heads else 1
    return 2 * layers * heads_per_gpu * model.head_dim * element_bytes


def weight_bytes_per_gpu(model: ModelInfo, fmt: WeightFormat, tp: int, pp: int) -> float:
    """Weights on the busiest GPU: its stage's share of the layers plus, on the first/last
    stage, the embedding/output head (both on the only stage when PP = 1), split by TP."""
    embedding_params = model.embedding_parameters
    layer_params = model.language_parameters - embedding_params
    stage_layers = layers_per_stage(model, pp) / model.layers
    if pp == 1:
        stage_embedding = embedding_params
    else:
        stage_embedding = (model.vocab_size or 0) * model.hidden_size
    return (layer_params * stage_layers * fmt.linear_bytes + stage_embedding * fmt.embedding_bytes) / tp


VISION_BYTES = 2  # the vision tower is loaded 16-bit


def vision_weight_bytes(model: ModelInfo, tp: int, encoder_tp_mode: str) -> float:
    if model.vision is None:
        return 0.0
    shards = tp if model.vision.sharded(tp, encoder_tp_mode) else 1
    return model.vision.parameters * VISION_BYTES / shards


def vision_activation_bytes(model: ModelInfo, settings: EngineSettings, tp: int) -> tuple[float, float]:
    """(encoder forward peak for the largest image, encoder cache) on one GPU."""
    vision = model.vision
    if vision is None:
        return 0.0, 0.0
    largest = vision.max_image_tokens(settings.max_image_pixels)
    shards = tp if vision.sharded(tp, settings.encoder_tp_mode) else 1
    forward = vision.encoder_patches(largest) * VISION_BYTES * (
        4 * vision.hidden_size + 3 * vision.intermediate_size / shards)
    cache = max(settings.max_num_batched_tokens, largest) * model.hidden_size * VISION_BYTES
    return forward, cache


def activation_bytes(model: ModelInfo, settings: EngineSettings, tp: int) -> float:
    intermediate = model.intermediate_size or MLP_RATIO * model.hidden_size
    act = settings.weights.activation_bytes
    forward = settings.max_num_batched_tokens * act * (4 * model.hidden_size + 3 * intermediate / tp)
    sampler = settings.max_num_seqs * (model.vocab_size or DEFAULT_VOCAB) * 4 * 2
    return forward + sampler


def estimate_memory(model: ModelInfo, gpu: GPUInfo, settings: EngineSettings, tp: int = 1,
                    pp: int = 1) -> MemoryBreakdown:
    budget = gpu.memory_bytes * settings.gpu_memory_utilization
    model_weights = weight_bytes_per_gpu(model, settings.weights, 1, 1)
    model_weights += vision_weight_bytes(model, 1, settings.encoder_tp_mode)
    vision_weights = vision_weight_bytes(model, tp, settings.encoder_tp_mode)
    weights = max(weight_bytes_per_gpu(model, settings.weights, tp, pp) + vision_weights
                  - settings.cpu_offload_gib * GIB, 0.0)
    runtime = (RUNTIME_FIXED_GIB + (0.0 if settings.enforce_eager else CUDA_GRAPHS_GIB)) * GIB
    text_activation = activation_bytes(model, settings, tp)
    encoder_forward, encoder_cache = vision_activation_bytes(model, settings, tp)
    activation = max(text_activation, encoder_forward) + encoder_cache
    kv_cache = budget - weights - runtime - activation
    per_token = kv_bytes_per_token(model, tp, pp, settings.kv_bytes)
    vision = None
    if model.vision is not None:
        largest = model.vision.max_image_tokens(settings.max_image_pixels)
        vision = VisionMemory(
            parameters_billions=model.vision.parameters_billions,
            weights_gib=vision_weights / GIB,
            sharded=model.vision.sharded(tp, settings.encoder_tp_mode),
            largest_image_tokens=largest,
            kv_gib_per_largest_image=largest * per_token / GIB,
            activation_gib=(activation - text_activation) / GIB if activation > text_activation else 0.0,
        )
    blocks = int(max(kv_cache, 0) // (per_token * KV_BLOCK_TOKENS))
    tokens = blocks * KV_BLOCK_TOKENS
    max_len = settings.max_model_len
    if max_len:
        needed = math.ceil(max_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS * per_token
        min_kv: Optional[float] = needed / GIB
        headroom: Optional[float] = (kv_cache - needed) / GIB
        sequences: Optional[float] = tokens / max_len
    else:
        min_kv = headroom = sequences = None
    longest = tokens if not model.context_length else min(tokens, model.context_length)
    return MemoryBreakdown(
        gpu_product=gpu.product,
        gpu_memory_gib=gpu.memory_gib,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        budget_gib=budget / GIB,
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        weight_format=settings.weights.name,
        model_weights_gib=model_weights / GIB,
        weights_gib=weights / GIB,
        runtime_gib=runtime / GIB,
        activation_gib=activation / GIB,
        kv_cache_gib=kv_cache / GIB,
        kv_bytes_per_token=per_token,
        max_model_len=max_len,
        min_kv_cache_gib=min_kv,
        kv_cache_tokens=tokens,
        full_length_sequences=sequences,
        headroom_gib=headroom,
        longest_model_len=longest,
        vision=vision,
    )
