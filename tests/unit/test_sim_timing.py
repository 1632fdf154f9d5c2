"""The timing and memory model: pure functions checked against hand-computed values."""


import pytest

from llmops_sim import profiles as prof
from llmops_sim import timing

A100 = prof.DEFAULT_GPUS["NVIDIA-A100-SXM4-80GB"]
LLAMA_8B = prof.shape_for(8.0)
EFF = prof.Efficiency()


def test_llama_8b_kv_bytes_per_token_matches_the_real_model():
    # Llama-3.1-8B: 32 layers x 8 KV heads x 128 dims x K and V x 2 bytes = 128 KiB
    assert timing.kv_bytes_per_token(LLAMA_8B, 2.0) == 131072


def test_kv_capacity_is_what_is_left_after_weights_in_whole_blocks():
    weights = timing.weights_bytes(8.0, 2.0)
    tokens = timing.kv_capacity_tokens(A100, 1, 0.9, weights, 131072, 1.0)
    expected = (80 * prof.GIB * 0.9 - prof.GIB - 16e9) // 131072
    assert tokens == expected - expected % 16
    assert tokens % timing.BLOCK_SIZE == 0


def test_kv_capacity_is_zero_when_weights_do_not_fit():
    l4 = prof.DEFAULT_GPUS["NVIDIA-L4"]
    weights = timing.weights_bytes(70.0, 2.0)
    assert timing.kv_capacity_tokens(l4, 1, 0.9, weights, 327680, 1.0) == 0
    assert timing.kv_capacity_tokens(l4, 8, 0.9, weights, 327680, 1.0) > 0  # TP=8 spreads it


def test_more_gpu_memory_utilization_gives_more_kv_cache():
    weights = timing.weights_bytes(8.0, 2.0)
    low = timing.kv_capacity_tokens(A100, 1, 0.5, weights, 131072, 1.0)
    high = timing.kv_capacity_tokens(A100, 1, 0.95, weights, 131072, 1.0)
    assert high > low > 0


def costs(gpu=A100, gpus=1, params=8.0, speed=1.0):
    return timing.step_costs(gpu, gpus, params, timing.weights_bytes(params, 2.0),
                             timing.kv_bytes_per_token(prof.shape_for(params), 2.0), EFF, speed)


def test_single_sequence_decode_is_memory_bound_at_a_plausible_rate():
    step = timing.step_duration(costs(), 1, 1, 100)
    # 16 GB of weights over 0.75 x 2039 GB/s ~ 10.5 ms, plus overheads: ~80 tokens/s like real A100s.
    assert 0.010 < step < 0.015


def test_decode_step_grows_with_batch_size():
    c = costs()
    durations = [timing.step_duration(c, b, b, b * 500) for b in (1, 8, 64, 256)]
    assert durations == sorted(durations)
    assert durations[-1] > 2 * durations[0]


def test_prefill_time_grows_linearly_with_prompt_tokens_when_compute_bound():
    c = costs()
    t1 = timing.step_duration(c, 1, 2000, 2000)
    t2 = timing.step_duration(c, 1, 4000, 4000)
    fixed = c.fixed_s + c.per_sequence_s
    assert (t2 - fixed) == pytest.approx(2 * (t1 - fixed), rel=1e-9)


def test_speed_factor_divides_every_duration():
    assert timing.step_duration(costs(speed=2.0), 4, 4, 400) == pytest.approx(
        timing.step_duration(costs(), 4, 4, 400) / 2)


def test_faster_gpu_and_tensor_parallelism_make_steps_shorter():
    h100 = prof.DEFAULT_GPUS["NVIDIA-H100-80GB-HBM3"]
    base = timing.step_duration(costs(), 1, 1, 100)
    assert timing.step_duration(costs(gpu=h100), 1, 1, 100) < base
    assert timing.step_duration(costs(gpus=2), 1, 1, 100) < base


def test_empty_step_takes_no_time_and_speed_must_be_positive():
    assert timing.step_duration(costs(), 0, 0, 0) == 0.0
    with pytest.raises(ValueError):
        costs(speed=0)


def test_isolated_request_timeline_chunks_long_prompts():
    c = costs()
    ttft_one_chunk, _ = timing.isolated_request_timeline(c, 4000, 1, 8192)
    ttft_two_chunks, _ = timing.isolated_request_timeline(c, 4000, 1, 2000)
    assert ttft_two_chunks > ttft_one_chunk  # one more step's fixed cost and weight read
    ttft, e2e = timing.isolated_request_timeline(c, 100, 11, 8192)
    decode = sum(timing.step_duration(c, 1, 1, 100 + i) for i in range(1, 11))
    assert e2e - ttft == pytest.approx(decode)


def test_blocks_round_up():
    assert [timing.blocks_for(n) for n in (0, 1, 16, 17)] == [0, 1, 1, 2]


@pytest.mark.parametrize("name,params", [
    ("meta-llama/Llama-3.1-8B-Instruct", 8.0), ("Qwen/Qwen2.5-0.5B-Instruct", 0.5),
    ("mistralai/Mixtral-8x7B-v0.1", 56.0), ("HuggingFaceTB/SmolLM-135M", 0.135),
    ("meta-llama/Llama-3.3-70B-Instruct-AWQ", 70.0), ("Qwen/Qwen3-30B-A3B", 30.0), ("gpt2", None),
])
def test_params_from_model_name(name, params):
    got = prof.params_from_model_name(name)
    assert got == (pytest.approx(params) if params else None)


def test_shape_classes_and_bytes_per_param():
    assert prof.shape_for(70).layers == 80
    assert prof.shape_for(405).layers == 126
    assert prof.shape_for(0.5).kv_heads == 2
    assert prof.bytes_per_param("bfloat16", None) == 2.0
    assert prof.bytes_per_param("auto", "awq") < 1.0
    assert prof.bytes_per_param("auto", "fp8") == 1.0
    assert prof.kv_bytes_per_element("fp8_e5m2", "auto") == 1.0
    assert prof.quantization_from_model_name("TheBloke/Llama-2-7B-AWQ") == "awq"


def test_profile_overrides_merge_and_reject_typos():
    merged = prof.apply_overrides(prof.DEFAULT_PROFILES, {
        "gpus": {"NVIDIA-L4": {"bandwidth_gbps": 250}, "Custom-GPU": {"memory_gib": 10, "bandwidth_gbps": 100,
                                                                     "tflops": 10}},
        "efficiency": {"step_overhead_ms": 3},
    })
    assert merged.gpus["NVIDIA-L4"].bandwidth_gbps == 250
    assert merged.gpus["NVIDIA-L4"].memory_gib == prof.DEFAULT_GPUS["NVIDIA-L4"].memory_gib
    assert merged.gpus["Custom-GPU"].tflops == 10
    assert merged.efficiency.step_overhead_ms == 3
    with pytest.raises(ValueError, match="bandwith"):
        prof.apply_overrides(prof.DEFAULT_PROFILES, {"gpus": {"NVIDIA-L4": {"bandwith_gbps": 1}}})
    with pytest.raises(ValueError, match="gpu"):
        prof.apply_overrides(prof.DEFAULT_PROFILES, {"gpu": {}})
