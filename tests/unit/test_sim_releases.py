"""The simulator's configuration against the facts read from vLLM's source for each
emulated release (tests/data/vllm_release_facts.yaml): defaults by GPU, CLI refusals, and
the bad-input lines for an unknown release or GPU."""

from pathlib import Path

import pytest
import yaml

from llmops_sim.config import ConfigError, build_config
from llmops_sim.releases import RELEASES, resolve

FACTS = yaml.safe_load((Path(__file__).parents[1] / "data" / "vllm_release_facts.yaml").read_text())["releases"]
BATCH_CASES = [(version, gpu, tuple(expected)) for version, facts in FACTS.items()
               for gpu, expected in facts["batch_defaults"].items()]


def test_every_emulated_release_has_facts():
    assert set(FACTS) == set(RELEASES) - {"0.8.5"}  # 0.8.5 models only the older metric names


@pytest.mark.parametrize("version,gpu,expected", BATCH_CASES)
def test_batch_defaults_by_gpu_as_vllm_computes_them(version, gpu, expected):
    c = build_config(["Qwen/Qwen2.5-0.5B-Instruct"], {"LLMOPS_SIM_VLLM_VERSION": version, "LLMOPS_SIM_GPU": gpu})
    assert (c.max_num_seqs, c.max_num_batched_tokens) == expected


@pytest.mark.parametrize("version", sorted(FACTS))
def test_explicit_limits_win_and_no_chunked_prefill_fits_a_whole_prompt(version):
    env = {"LLMOPS_SIM_VLLM_VERSION": version}
    c = build_config(["m-1B", "--max-num-seqs", "8", "--max-num-batched-tokens", "512"], env)
    assert (c.max_num_seqs, c.max_num_batched_tokens) == (8, 512)
    assert build_config(["m-1B", "--max-num-batched-tokens", "4K"], env).max_num_batched_tokens == 4096
    whole = build_config(["m-1B", "--max-model-len", "4096", "--no-enable-chunked-prefill"], env)
    assert not whole.enable_chunked_prefill and whole.max_num_batched_tokens == 4096


def cli_cases():
    for version, facts in FACTS.items():
        for case in facts["cli"]:
            yield version, case


@pytest.mark.parametrize("version,case", list(cli_cases()), ids=lambda v: v if isinstance(v, str) else v["args"][0])
def test_command_line_refusals_match_vllm(version, case):
    argv = ["Qwen/Qwen2.5-0.5B-Instruct", *case["args"]]
    env = {"LLMOPS_SIM_VLLM_VERSION": version}
    if case["exit_code"] is None:
        build_config(argv, env)  # accepted
        return
    with pytest.raises(ConfigError) as info:
        build_config(argv, env)
    assert info.value.exit_code == case["exit_code"]
    assert str(info.value).startswith(case["stderr"])


def test_max_model_len_auto_is_the_context_when_it_fits_else_the_kv_cache():
    env = {"LLMOPS_SIM_VLLM_VERSION": "0.33.0", "LLMOPS_SIM_GPU": "NVIDIA-L4"}
    fits = build_config(["Qwen/Qwen2.5-0.5B-Instruct", "--max-model-len", "auto"], env)
    assert fits.max_model_len == 32768
    tight = build_config(["meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "auto"], env)
    assert tight.max_model_len == tight.kv_capacity_tokens < 131072 and tight.fit_error() is None


@pytest.mark.parametrize("version,flag", [("0.11.0", "--shutdown-timeout"), ("0.33.0", "--swap-space")])
def test_a_flag_the_release_does_not_have_is_refused(version, flag):
    with pytest.raises(ConfigError, match=f"unrecognized arguments: {flag} 4 \\(not a flag of vLLM {version}\\)"):
        build_config(["m-1B", flag, "4"], {"LLMOPS_SIM_VLLM_VERSION": version})


def test_data_parallel_needs_gpus_for_every_engine():
    c = build_config(["m-1B", "-dp", "2", "-tp", "2"], {"LLMOPS_SIM_GPU_COUNT": "4"})
    assert (c.data_parallel_size, c.num_gpus) == (2, 2)
    with pytest.raises(ConfigError, match=r"--data-parallel-size 2: .* = 4 GPUs but only 2 visible"):
        build_config(["m-1B", "-dp", "2", "-tp", "2"], {"LLMOPS_SIM_GPU_COUNT": "2"})


def test_release_names_and_bad_values():
    assert resolve("").version == "0.33.0" and resolve("0.11").version == "0.11.0"
    assert resolve("v0.11.0").version == "0.11.0"
    with pytest.raises(ValueError, match=r"LLMOPS_SIM_VLLM_VERSION='0.9.2' is not an emulated vLLM release; "
                                         r"accepted: 0.8, 0.8.5, 0.11, 0.11.0, 0.33, 0.33.0"):
        resolve("0.9.2")
    with pytest.raises(ConfigError, match="LLMOPS_SIM_VLLM_VERSION='0.9.2'"):
        build_config(["m-1B"], {"LLMOPS_SIM_VLLM_VERSION": "0.9.2"})
    with pytest.raises(ConfigError, match="set only one of them"):
        build_config(["m-1B"], {"LLMOPS_SIM_VLLM_VERSION": "0.11", "LLMOPS_SIM_LEGACY_KV_METRIC": "1"})
