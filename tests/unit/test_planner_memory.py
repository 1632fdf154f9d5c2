"""Per-GPU memory estimates. Expected figures are computed here, independently, from the
models' published config.json values (num_hidden_layers, num_key_value_heads, head_dim,
vocab_size, ...) and the byte sizes of each format."""

from __future__ import annotations

import pytest

from llmops.api.v1alpha1 import LLMDeploymentSpec
from llmops.planner.gpus import GIB, lookup_gpu
from llmops.planner.memory import (
    CUDA_GRAPHS_GIB,
    RUNTIME_FIXED_GIB,
    engine_settings,
    estimate_memory,
    kv_bytes_per_token,
)
from llmops.planner.models import lookup_model

LLAMA3_8B = "hf://meta-llama/Meta-Llama-3-8B-Instruct"
# meta-llama/Meta-Llama-3-8B config.json: 32 layers, 8 KV heads, hidden 4096 / 32 heads = head dim 128,
# vocab 128256, untied embeddings; 8.03e9 parameters (model card).
LLAMA3_8B_PARAMS = 8.03e9
LLAMA3_8B_EMBEDDINGS = 2 * 128256 * 4096


def spec(source=LLAMA3_8B, **fields) -> LLMDeploymentSpec:
    body = {"model": {"source": source}}
    for path, value in fields.items():
        section, key = path.split("__")
        body.setdefault(section, {})[key] = value
    return LLMDeploymentSpec.model_validate(body)


def estimate(source=LLAMA3_8B, gpu="NVIDIA-L4", tp=1, pp=1, **fields):
    s = spec(source, **fields)
    model = lookup_model(source)
    device = lookup_gpu(gpu)
    return estimate_memory(model, device, engine_settings(s, model, device), tp, pp)


def test_llama3_8b_bf16_weights_and_kv_per_token():
    m = estimate()
    assert m.model_weights_gib * GIB == pytest.approx(LLAMA3_8B_PARAMS * 2)  # 16.06 GB
    assert m.weights_gib == pytest.approx(16.06e9 / GIB, rel=1e-3)
    assert m.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 128 * 1024  # 128 KiB
    assert m.max_model_len == 8192
    assert m.min_kv_cache_gib == pytest.approx(8192 * 128 * 1024 / GIB)  # exactly 1 GiB


def test_budget_is_utilisation_times_gpu_memory_and_the_parts_add_up():
    m = estimate(engine__gpuMemoryUtilization=0.8)
    assert m.budget_gib == pytest.approx(0.8 * 23034 / 1024)
    assert m.runtime_gib == RUNTIME_FIXED_GIB + CUDA_GRAPHS_GIB
    assert m.weights_gib + m.runtime_gib + m.activation_gib + m.kv_cache_gib == pytest.approx(m.budget_gib)
    assert m.headroom_gib == pytest.approx(m.kv_cache_gib - m.min_kv_cache_gib)
    # Capacity is whole 16-token blocks of what is left.
    assert m.kv_cache_tokens % 16 == 0
    assert 0 <= m.kv_cache_gib * GIB - m.kv_cache_tokens * m.kv_bytes_per_token < 16 * m.kv_bytes_per_token
    assert m.full_length_sequences == pytest.approx(m.kv_cache_tokens / 8192)


def test_tensor_parallel_splits_weights_and_kv_heads():
    one, two = estimate(tp=1), estimate(tp=2)
    assert two.weights_gib == pytest.approx(one.weights_gib / 2)
    assert two.kv_bytes_per_token == 2 * 32 * 4 * 128 * 2  # 4 of the 8 KV heads per GPU


def test_kv_heads_are_replicated_beyond_their_count():
    model = lookup_model(LLAMA3_8B)
    # TP 16 > 8 KV heads: each GPU still holds one whole KV head (vLLM replicates them).
    assert kv_bytes_per_token(model, 16, 1, 2) == 2 * 32 * 1 * 128 * 2
    assert kv_bytes_per_token(model, 8, 1, 2) == kv_bytes_per_token(model, 16, 1, 2)


def test_pipeline_parallel_splits_layers_and_keeps_one_embedding_matrix_per_end_stage():
    m = estimate(pp=2)
    layer_params = LLAMA3_8B_PARAMS - LLAMA3_8B_EMBEDDINGS
    # Stage 1 holds 16 of 32 layers and the input embedding (the last stage: the output head).
    assert m.weights_gib * GIB == pytest.approx(layer_params / 2 * 2 + 128256 * 4096 * 2)
    assert m.kv_bytes_per_token == 2 * 16 * 8 * 128 * 2
    # Uneven split: 3 stages of 32 layers -> the busiest holds 11.
    assert estimate(pp=3).kv_bytes_per_token == 2 * 11 * 8 * 128 * 2


@pytest.mark.parametrize("source, expected", [
    # Qwen/Qwen2.5-7B-Instruct: 28 layers, 4 KV heads, 3584 / 28 = 128 head dim
    ("hf://Qwen/Qwen2.5-7B-Instruct", 2 * 28 * 4 * 128 * 2),
    # Qwen/Qwen3-4B: head_dim 128 set explicitly (hidden 2560 / 32 heads would be 80), 36 layers, 8 KV heads
    ("hf://Qwen/Qwen3-4B", 2 * 36 * 8 * 128 * 2),
    # google/gemma-2-9b: head_dim 256, 42 layers, 8 KV heads
    ("hf://google/gemma-2-9b-it", 2 * 42 * 8 * 256 * 2),
    # meta-llama/Meta-Llama-3-70B: 80 layers, 8 KV heads, 8192 / 64 = 128
    ("hf://meta-llama/Meta-Llama-3-70B-Instruct", 2 * 80 * 8 * 128 * 2),
    # microsoft/Phi-3-mini-4k-instruct: no GQA, 32 KV heads of 3072 / 32 = 96
    ("hf://microsoft/Phi-3-mini-4k-instruct", 2 * 32 * 32 * 96 * 2),
    # deepseek-ai/DeepSeek-V2-Lite: MLA caches kv_lora_rank 512 + qk_rope_head_dim 64 per layer, 27 layers
    ("hf://deepseek-ai/DeepSeek-V2-Lite", 27 * (512 + 64) * 2),
])
def test_kv_bytes_per_token_from_config(source, expected):
    assert estimate(source, gpu="NVIDIA-H100-80GB-HBM3").kv_bytes_per_token == expected


def test_mla_cache_is_not_split_by_tensor_parallel():
    assert estimate("hf://deepseek-ai/DeepSeek-V2-Lite", tp=2).kv_bytes_per_token == 27 * 576 * 2


def test_fp8_kv_cache_halves_kv_per_token():
    assert estimate(engine__kvCacheDtype="fp8").kv_bytes_per_token == 2 * 32 * 8 * 128 * 1


def test_awq_checkpoint_weights_keep_embeddings_in_16_bit():
    m = estimate("hf://hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4")
    layer_params = LLAMA3_8B_PARAMS - LLAMA3_8B_EMBEDDINGS
    # 4-bit weights + an fp16 scale and a 4-bit zero per group of 128; embeddings/head at 2 bytes.
    expected = layer_params * (0.5 + 2.5 / 128) + LLAMA3_8B_EMBEDDINGS * 2
    assert m.weights_gib * GIB == pytest.approx(expected)
    assert 5.6e9 < expected < 5.8e9  # the published AWQ-INT4 checkpoint is ~5.7 GB
    assert m.weight_format == "awq 4-bit"


def test_fp8_and_int8_weights_take_one_byte():
    layer_params = LLAMA3_8B_PARAMS - LLAMA3_8B_EMBEDDINGS
    fp8 = estimate(quantization__method="fp8")
    assert fp8.weights_gib * GIB == pytest.approx(layer_params * 1 + LLAMA3_8B_EMBEDDINGS * 2)
    gptq8 = estimate("hf://acme/Meta-Llama-3-8B-Instruct-GPTQ-Int8")
    assert gptq8.weights_gib * GIB == pytest.approx(layer_params * (1 + 3 / 128) + LLAMA3_8B_EMBEDDINGS * 2)


def test_gguf_assumes_four_and_a_half_bits_everywhere():
    m = estimate("hf://bartowski/Meta-Llama-3-8B-Instruct-GGUF")
    assert m.weights_gib * GIB == pytest.approx(LLAMA3_8B_PARAMS * 4.5 / 8)


def test_bitsandbytes_four_bit():
    m = estimate(quantization__method="bitsandbytes")
    layer_params = LLAMA3_8B_PARAMS - LLAMA3_8B_EMBEDDINGS
    assert m.weights_gib * GIB == pytest.approx(layer_params * (0.5 + 4 / 64) + LLAMA3_8B_EMBEDDINGS * 2)


def test_float32_doubles_weights_and_kv():
    m = estimate(engine__dtype="float32", gpu="NVIDIA-H100-80GB-HBM3")
    assert m.weights_gib * GIB == pytest.approx(LLAMA3_8B_PARAMS * 4)
    assert m.kv_bytes_per_token == 2 * 32 * 8 * 128 * 4


def test_mixture_of_experts_counts_every_expert():
    # Mixtral-8x7B: 46.7e9 parameters resident although ~13e9 are active per token.
    m = estimate("hf://mistralai/Mixtral-8x7B-Instruct-v0.1", gpu="NVIDIA-H100-80GB-HBM3", tp=2)
    assert m.model_weights_gib * GIB == pytest.approx(46.7e9 * 2)
    assert m.weights_gib * GIB == pytest.approx(46.7e9)


def test_vllm_batch_defaults_depend_on_the_gpu():
    s = spec()
    model = lookup_model(LLAMA3_8B)
    big = engine_settings(s, model, lookup_gpu("NVIDIA-H100-80GB-HBM3"))
    a100 = engine_settings(s, model, lookup_gpu("NVIDIA-A100-SXM4-80GB"))
    small = engine_settings(s, model, lookup_gpu("NVIDIA-L4"))
    assert (big.max_num_batched_tokens, big.max_num_seqs) == (8192, 1024)
    assert (a100.max_num_batched_tokens, a100.max_num_seqs) == (2048, 256)
    assert (small.max_num_batched_tokens, small.max_num_seqs) == (2048, 256)


@pytest.mark.parametrize("args", [
    ["--max-num-batched-tokens=16384"],
    ["--max-num-batched-tokens", "16384"],
    ["--max-num-batched-tokens 16384"],
])
def test_extra_args_that_change_memory_are_read(args):
    plain = estimate()
    more = estimate(engine__extraArgs=args)
    assert more.activation_gib > plain.activation_gib
    eager = estimate(engine__extraArgs=["--enforce-eager"])
    assert eager.runtime_gib == RUNTIME_FIXED_GIB


def test_cpu_offload_reduces_weights_on_the_gpu():
    m = estimate(engine__extraArgs=["--cpu-offload-gb", "4"])
    assert m.weights_gib == pytest.approx(16.06e9 / GIB - 4, rel=1e-3)


def test_long_context_needs_more_than_one_l4():
    # Llama-3.1-8B defaults to its 131072-token context: one sequence is 16 GiB of KV cache.
    m = estimate("hf://meta-llama/Llama-3.1-8B-Instruct")
    assert m.min_kv_cache_gib == pytest.approx(16.0)
    assert m.weights_fit and not m.fits
    assert 0 < m.longest_model_len < 131072
    shorter = estimate("hf://meta-llama/Llama-3.1-8B-Instruct", engine__maxModelLen=m.longest_model_len)
    assert shorter.fits and shorter.headroom_gib < 16 * 128 * 1024 / GIB  # less than one more block
    assert not estimate("hf://meta-llama/Llama-3.1-8B-Instruct", engine__maxModelLen=m.longest_model_len + 16).fits


def test_weights_that_do_not_fit_leave_a_negative_kv_cache():
    m = estimate("hf://meta-llama/Meta-Llama-3-70B-Instruct")
    assert not m.weights_fit and not m.fits
    assert m.kv_cache_gib < 0 and m.kv_cache_tokens == 0 and m.longest_model_len == 0


def test_breakdown_serialises_for_json():
    data = estimate().to_dict()
    assert data["kvBytesPerToken"] == 131072
    assert data["fits"] is True
    assert set(data) >= {"budgetGiB", "weightsGiB", "runtimeOverheadGiB", "activationGiB", "kvCacheGiB",
                         "minKvCacheGiB", "headroomGiB", "fullLengthSequences"}
