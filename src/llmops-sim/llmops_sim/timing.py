"""The simulator's timing and memory model: pure functions, no clock, no I/O.

Memory (per vLLM): weights = params x bytes/param; the KV cache gets what is left of
gpu_memory_utilization x GPU memory on every GPU after weights and a fixed activation
reserve; KV bytes per token = 2 (K and V) x layers x kv_heads x head_dim x KV dtype bytes.

Time per engine step (one forward pass over the batch) is a roofline:

    step = overhead + per_seq x sequences + max(memory_time, compute_time)
    memory_time  = (weight bytes + KV bytes of all scheduled context) / effective bandwidth
    compute_time = 2 x params x tokens processed / effective FLOPS

so decode is memory-bound at small batches and grows with batch size and context, and
prefill grows linearly with prompt tokens. TP x PP GPUs add bandwidth and FLOPS with
`parallel_efficiency` lost per doubling. `speed` divides every duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmops_sim.profiles import GIB, Efficiency, GpuProfile, ModelShape

BLOCK_SIZE = 16  # vLLM's default KV block size in tokens


@dataclass(frozen=True)
class StepCosts:
    """Per-engine constants, in seconds, from which any step's duration follows."""

    fixed_s: float
    per_sequence_s: float
    weight_read_s: float
    kv_read_s_per_token: float
    compute_s_per_token: float


def weights_bytes(params_b: float, bytes_per_param: float) -> float:
    return params_b * 1e9 * bytes_per_param


def kv_bytes_per_token(shape: ModelShape, kv_element_bytes: float) -> float:
    """Across all GPUs: TP splits KV heads, PP splits layers, the total is unchanged."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * kv_element_bytes


def kv_capacity_tokens(
    gpu: GpuProfile,
    num_gpus: int,
    gpu_memory_utilization: float,
    weight_bytes: float,
    kv_bytes_token: float,
    activation_reserve_gib: float,
) -> int:
    """Tokens of KV cache that fit, rounded down to whole blocks; <= 0 means the model
    does not fit (vLLM: 'No available memory for the cache blocks')."""
    budget = num_gpus * (gpu.memory_gib * GIB * gpu_memory_utilization - activation_reserve_gib * GIB)
    free = budget - weight_bytes
    if free <= 0:
        return 0
    tokens = int(free // kv_bytes_token)
    return tokens - tokens % BLOCK_SIZE


def step_costs(
    gpu: GpuProfile,
    num_gpus: int,
    params_b: float,
    weight_bytes: float,
    kv_bytes_token: float,
    efficiency: Efficiency,
    speed: float = 1.0,
) -> StepCosts:
    if speed <= 0:
        raise ValueError("speed must be positive")
    scale = efficiency.parallel_efficiency ** math.log2(num_gpus) if num_gpus > 1 else 1.0
    bandwidth = gpu.bandwidth_gbps * 1e9 * num_gpus * scale * efficiency.memory_bandwidth
    flops = gpu.tflops * 1e12 * num_gpus * scale * efficiency.compute
    return StepCosts(
        fixed_s=efficiency.step_overhead_ms / 1000 / speed,
        per_sequence_s=efficiency.per_sequence_overhead_ms / 1000 / speed,
        weight_read_s=weight_bytes / bandwidth / speed,
        kv_read_s_per_token=kv_bytes_token / bandwidth / speed,
        compute_s_per_token=2 * params_b * 1e9 / flops / speed,
    )


def step_duration(costs: StepCosts, sequences: int, tokens: int, context_tokens: int) -> float:
    """Duration of one engine step that runs `sequences` sequences processing `tokens`
    new tokens in total (1 per decoding sequence + prefill chunks) over
    `context_tokens` tokens of KV cache (including the new ones)."""
    if sequences == 0:
        return 0.0
    memory = costs.weight_read_s + context_tokens * costs.kv_read_s_per_token
    compute = tokens * costs.compute_s_per_token
    return costs.fixed_s + sequences * costs.per_sequence_s + max(memory, compute)


def blocks_for(tokens: int) -> int:
    return -(-tokens // BLOCK_SIZE)


def isolated_request_timeline(
    costs: StepCosts, prompt_tokens: int, output_tokens: int, max_batched_tokens: int
) -> tuple[float, float]:
    """(TTFT, end-to-end latency) of one request alone on an idle engine: prefill in
    chunks of `max_batched_tokens`, the first token at the end of the last chunk, then
    one decode step per further token. What a client should measure, modulo network."""
    elapsed = 0.0
    computed = 0
    while computed < prompt_tokens:
        chunk = min(max_batched_tokens, prompt_tokens - computed)
        computed += chunk
        elapsed += step_duration(costs, 1, chunk, computed)
    ttft = elapsed
    for generated in range(1, output_tokens):
        elapsed += step_duration(costs, 1, 1, prompt_tokens + generated)
    return ttft, elapsed
