"""`vllm serve` command lines and LLMOPS_SIM_* environment -> SimConfig."""

import pytest

from llmops_sim.config import ConfigError, build_config, parse_max_model_len, split_vllm_args

RENDERED_POD_ARGS = [
    "--model", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "llama", "--port", "8000",
    "--tensor-parallel-size", "2", "--max-model-len", "16384", "--max-num-seqs", "64",
    "--gpu-memory-utilization", "0.85", "--dtype", "bfloat16", "--kv-cache-dtype", "fp8",
    "--enable-prefix-caching", "--download-dir", "/models", "--enforce-eager",
]


def test_rendered_pod_args_are_understood():
    c = build_config(RENDERED_POD_ARGS, {"LLMOPS_SIM_GPU": "NVIDIA-L4", "LLMOPS_SIM_GPU_COUNT": "2"})
    assert c.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert c.served_model_name == "llama"
    assert (c.tensor_parallel_size, c.max_model_len, c.max_num_seqs) == (2, 16384, 64)
    assert c.gpu_memory_utilization == 0.85 and c.kv_cache_dtype == "fp8" and c.dtype == "bfloat16"
    assert c.gpu_name == "NVIDIA-L4" and c.params_b == 8.0
    assert c.ignored_flags == ("--download-dir /models", "--enforce-eager")
    assert c.host == "0.0.0.0" and c.port == 8000


def test_positional_model_and_defaults():
    c = build_config(["Qwen/Qwen2.5-0.5B-Instruct", "--trust-remote-code"], {})
    assert c.model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert c.served_model_names == ("Qwen/Qwen2.5-0.5B-Instruct",)
    # The catalogue's context length (config.json max_position_embeddings), A100 defaults.
    assert (c.port, c.max_num_seqs, c.max_num_batched_tokens, c.max_model_len) == (8000, 256, 2048, 32768)
    assert c.gpu_memory_utilization == 0.9 and c.enable_prefix_caching and c.enable_chunked_prefill
    assert c.startup_seconds == 2.0 and c.speed == 1.0 and not c.legacy_metrics and not c.control_enabled
    assert c.release.version == "0.33.0"


def test_unknown_flag_values_are_not_taken_for_the_model():
    known, ignored = split_vllm_args(["--lora-modules", "a=/x", "b=/y", "--model", "m", "--max-num-seqs=8"])
    assert ignored == ["--lora-modules a=/x b=/y"]
    assert known == ["--model", "m", "--max-num-seqs=8"]
    assert build_config(["--foo", "bar", "--model", "m-1B"], {}).model == "m-1B"


def test_env_knobs():
    c = build_config(["gpt2"], {"LLMOPS_SIM_PARAMS_B": "1.5", "LLMOPS_SIM_SPEED": "3", "LLMOPS_SIM_SEED": "7",
                                "LLMOPS_SIM_LEGACY_KV_METRIC": "1", "LLMOPS_SIM_CONTROL": "1",
                                "LLMOPS_SIM_STARTUP_SECONDS": "0.5"})
    assert (c.params_b, c.speed, c.seed, c.startup_seconds) == (1.5, 3.0, 7, 0.5)
    assert c.legacy_metrics and c.control_enabled
    assert c.release.version == "0.8.5"
    assert c.notes == (f"context length of 'gpt2' unknown (not in the model catalogue); max_model_len "
                       "8192 (pass --max-model-len)",)  # the size came from the environment


def test_size_missing_from_name_defaults_to_7b_with_a_note():
    c = build_config(["gpt2"], {})
    assert c.params_b == 7.0 and "LLMOPS_SIM_PARAMS_B" in c.notes[0]


def test_profile_yaml_adds_a_gpu():
    c = build_config(["m-8B"], {"LLMOPS_SIM_GPU": "My-GPU"},
                     "gpus: {My-GPU: {memory_gib: 48, bandwidth_gbps: 1000, tflops: 200}}")
    assert c.gpu.memory_gib == 48


@pytest.mark.parametrize("argv,env,fragment", [
    ([], {}, "no model"),
    (["m"], {"LLMOPS_SIM_GPU": "NVIDIA-Z9"}, "NVIDIA-Z9"),
    (["m", "--tensor-parallel-size", "4"], {"LLMOPS_SIM_GPU_COUNT": "2"}, "only 2 visible"),
    (["m", "--gpu-memory-utilization", "1.5"], {}, "gpu-memory-utilization"),
    (["m"], {"LLMOPS_SIM_SPEED": "fast"}, "LLMOPS_SIM_SPEED"),
    (["m", "--max-num-seqs", "many"], {}, "bad vllm serve argument"),
])
def test_unusable_settings_say_what_to_fix(argv, env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config(argv, env)


def test_fit_errors_like_vllm():
    too_big = build_config(["meta-llama/Llama-3.1-70B-Instruct"], {"LLMOPS_SIM_GPU": "NVIDIA-L4"})
    assert "No available memory for the cache blocks" in too_big.fit_error()
    too_long = build_config(["m-8B", "--max-model-len", "1000000"], {"LLMOPS_SIM_GPU": "NVIDIA-L4"})
    assert "is larger than the available KV cache memory" in too_long.fit_error()
    # Llama-3.1-8B's own 131072-token context does not fit an L4, as with vLLM.
    assert "max seq len (131072)" in build_config(["meta-llama/Llama-3.1-8B-Instruct"],
                                                  {"LLMOPS_SIM_GPU": "NVIDIA-L4"}).fit_error()
    assert build_config(["m-8B"], {"LLMOPS_SIM_GPU": "NVIDIA-L4"}).fit_error() is None
    sharded = build_config(["meta-llama/Llama-3.1-70B-Instruct", "-tp", "8", "--max-model-len", "8192"],
                           {"LLMOPS_SIM_GPU": "NVIDIA-L4"})
    assert sharded.fit_error() is None


def test_max_model_len_suffixes():
    assert parse_max_model_len("4096") == 4096
    assert parse_max_model_len("32k") == 32000
    assert parse_max_model_len("32K") == 32768
    assert parse_max_model_len("25.6k") == 25600
    assert parse_max_model_len("auto") == -1
    with pytest.raises(ValueError):
        parse_max_model_len("auto", accepts_auto=False)


# --- multi-node groups ------------------------------------------------------------------------

GROUP_LEADER_ARGS = ["--model", "Qwen/Qwen2.5-0.5B-Instruct", "--tensor-parallel-size", "1",
                     "--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray"]


def test_group_leader_uses_the_gpus_of_every_node_in_the_group():
    c = build_config(GROUP_LEADER_ARGS, {"LLMOPS_SIM_GPU": "NVIDIA-L4", "LLMOPS_SIM_GPU_COUNT": "1",
                                         "LLMOPS_GROUP_SIZE": "2"})
    assert (c.gpu_count, c.group_size, c.num_gpus) == (2, 2, 2)
    assert c.distributed_executor_backend == "ray" and c.ignored_flags == ()
    assert any("2 nodes" in note for note in c.notes)
    assert c.fit_error() is None


def test_without_the_group_the_same_leader_lacks_gpus():
    with pytest.raises(ConfigError, match="2 GPUs but only 1 visible"):
        build_config(GROUP_LEADER_ARGS, {"LLMOPS_SIM_GPU_COUNT": "1"})


def test_a_group_too_small_for_tp_times_pp_says_both_factors():
    with pytest.raises(ConfigError, match=r"group has 8 \(2 nodes .* x 4 GPUs"):
        build_config(["m", "-tp", "4", "-pp", "4"], {"LLMOPS_SIM_GPU_COUNT": "4", "LLMOPS_GROUP_SIZE": "2"})


def test_group_size_one_or_unset_changes_nothing():
    env = {"LLMOPS_SIM_GPU_COUNT": "4"}
    assert build_config(["m", "-tp", "4"], env).gpu_count == 4
    assert build_config(["m", "-tp", "4"], {**env, "LLMOPS_GROUP_SIZE": "1"}).gpu_count == 4
    assert build_config(["m", "-tp", "2"], {}).group_size == 1


def test_a_single_node_backend_cannot_span_the_group():
    env = {"LLMOPS_SIM_GPU_COUNT": "1", "LLMOPS_GROUP_SIZE": "2"}
    with pytest.raises(ConfigError, match="runs on one node.*backend ray"):
        build_config([*GROUP_LEADER_ARGS[:-1], "mp"], env)
    # Fitting on the leader's own node, mp is fine (the rest of the group idles).
    assert build_config(["m", "--distributed-executor-backend=mp"], env).distributed_executor_backend == "mp"


@pytest.mark.parametrize("argv,env,fragment", [
    (["m"], {"LLMOPS_GROUP_SIZE": "0"}, "LLMOPS_GROUP_SIZE='0' must be a whole number >= 1"),
    (["m"], {"LLMOPS_GROUP_SIZE": "two"}, "LLMOPS_GROUP_SIZE"),
    (["m"], {"LLMOPS_SIM_GPU_COUNT": "some"}, "LLMOPS_SIM_GPU_COUNT='some' is not a number"),
    (["m", "--distributed-executor-backend", "slurm"], {}, "not one of ray, mp, uni, external_launcher"),
])
def test_unusable_group_settings_say_what_to_fix(argv, env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_config(argv, env)


def test_a_local_model_directory_must_hold_a_model(tmp_path):
    missing = tmp_path / "meta-llama--Llama-3.1-8B-Instruct--main"
    with pytest.raises(ConfigError, match=r"--model .*: no config.json in that directory"):
        build_config(["--model", str(missing)], {})
    missing.mkdir()
    (missing / "config.json").write_text("{}")
    assert build_config(["--model", str(missing)], {}).params_b == 8.0  # size still read from the name


def test_a_local_model_directory_gives_its_own_context_length(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "config.json").write_text('{"max_position_embeddings": 16384}')
    assert build_config(["--model", str(own)], {}).max_model_len == 16384
    staged = tmp_path / "staged"  # the simulated hub's config.json names the repo only
    staged.mkdir()
    (staged / "config.json").write_text('{"_name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}')
    assert build_config(["--model", str(staged)], {}).max_model_len == 131072
