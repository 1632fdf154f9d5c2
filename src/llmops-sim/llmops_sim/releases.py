"""What differs between the vLLM releases the simulator emulates: the one table.

Every fact names the file of vLLM's source it was read from (the PyPI wheels of each
release, `vllm/...` paths inside them). LLMOPS_SIM_VLLM_VERSION selects a release; the
sandbox sets it from the image tag (vllm/vllm-openai:v0.11.0 -> 0.11.0). Pure data and
pure functions: nothing here reads the environment.

The 0.8.5 entry is the older V1 engine behind LLMOPS_SIM_LEGACY_KV_METRIC=1: only its
metric names and flat error body are modelled (from the 0.8-era names peers still query);
its engine defaults are 0.11's, not read from a 0.8.5 wheel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

from llmops.planner.vllm_release import batch_defaults

GIB = 1024**3

# vllm/model_executor/layers/quantization/__init__.py: QuantizationMethods (0.11.0)
QUANTIZATION_0_11 = (
    "awq", "deepspeedfp", "tpu_int8", "fp8", "ptpc_fp8", "fbgemm_fp8", "modelopt", "modelopt_fp4",
    "bitblas", "gguf", "gptq_marlin_24", "gptq_marlin", "gptq_bitblas", "awq_marlin", "gptq",
    "compressed-tensors", "bitsandbytes", "hqq", "experts_int8", "ipex", "quark", "moe_wna16", "torchao",
    "auto-round", "rtn", "inc", "mxfp4", "petit_nvfp4",
)
# vllm/model_executor/layers/quantization/__init__.py: QuantizationMethods (0.33.0); no
# bitsandbytes, no gguf any more.
QUANTIZATION_0_33 = (
    "awq", "auto_awq", "fp8", "fbgemm_fp8", "fp_quant", "modelopt", "modelopt_fp4", "modelopt_mxfp8",
    "modelopt_mixed", "auto_gptq", "gptq", "gptq_marlin", "awq_marlin", "humming", "compressed-tensors",
    "experts_int8", "quark", "moe_wna16", "torchao", "inc", "mxfp4", "gpt_oss_mxfp4", "deepseek_v4_fp8",
    "online", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel", "int8_per_channel_weight_only",
    "nvfp4_per_token", "mxfp8",
)


@dataclass(frozen=True)
class BatchDefaults:
    max_num_seqs: int
    max_num_batched_tokens: int


def _batch_defaults_0_11(memory_gib: float, device_name: str) -> BatchDefaults:
    """vllm/engine/arg_utils.py EngineArgs._set_default_args, UsageContext.OPENAI_API_SERVER
    (the rule lives with the operator's planner: llmops.planner.vllm_release.batch_defaults)."""
    tokens, seqs = batch_defaults(memory_gib, device_name, (0, 11))
    return BatchDefaults(seqs, tokens)


def _batch_defaults_0_33(memory_gib: float, device_name: str) -> BatchDefaults:
    """vllm/engine/arg_utils.py EngineArgs.get_batch_defaults, OPENAI_API_SERVER (0.33 adds
    the >= 160 GiB class)."""
    tokens, seqs = batch_defaults(memory_gib, device_name, (0, 33))
    return BatchDefaults(seqs, tokens)


_NO_KV_0_11 = ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
               "initializing the engine.")
_NO_KV_0_33 = ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
               "initializing the engine (this flag also controls CPU memory reservation on the CPU backend, "
               "despite its name). See https://docs.vllm.ai/en/latest/configuration/conserving_memory/ "
               "for more details.")
_KV_SMALL_0_11 = ("To serve at least one request with the models's max seq len ({max_len}), ({needed:.2f} GiB KV "
                  "cache is needed, which is larger than the available KV cache memory ({available:.2f} GiB). "
                  "Based on the available memory, the estimated maximum model length is {estimated}. Try "
                  "increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")
_KV_SMALL_0_33 = ("To serve at least one request with the model's max seq len ({max_len}), ({needed:.2f} GiB KV "
                  "cache is needed, which is larger than the available KV cache memory ({available:.2f} GiB). "
                  "Based on the available memory, the estimated maximum model length is {estimated}. Try "
                  "increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or "
                  "decreasing `max_model_len` when initializing the engine. See "
                  "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")


@dataclass(frozen=True)
class Release:
    version: str
    batch_defaults: Callable[[float, str], BatchDefaults]
    # --- metrics (vllm/v1/metrics/loggers.py PrometheusStatLogger.__init__) ---
    legacy_metric_names: bool  # vllm:gpu_cache_usage_perc / gpu_prefix_cache_* instead of the new names
    deprecated_tpot_histogram: bool  # vllm:time_per_output_token_seconds next to inter_token_latency
    request_param_histograms: bool  # vllm:request_max_num_generation_tokens, vllm:request_params_n
    newer_families: bool  # 0.33's additions (waiting_by_reason, sleep state, prompt_tokens_by_source, ...)
    finish_reasons: tuple[str, ...]  # vllm/v1/engine/__init__.py FINISH_REASON_STRINGS
    # --- API behaviour ---
    flat_error_body: bool  # 0.8-era {"object": "error", ...} instead of {"error": {...}}
    # Context length: "reject" refuses prompt + max_tokens > max_model_len
    # (vllm/entrypoints/openai/serving_engine.py _validate_input, 0.11); "clamp" lowers max_tokens
    # to max_model_len - prompt and serves (vllm/entrypoints/serve/utils/api_utils.py get_max_tokens, 0.33).
    context_policy: str
    # vllm/entrypoints/serve/engine/serving.py _check_model (0.33) adds the served names and param "model".
    not_found_lists_aliases: bool
    # 0.33 raises VLLMValidationError (vllm/exceptions.py): the message gets
    # " (parameter=P, value=V)" appended and the body's param is P; 0.11 raises ValueError (param null).
    validation_error_names_parameter: bool
    # --- CLI (vllm/engine/arg_utils.py EngineArgs.add_cli_args) ---
    quantization_methods: tuple[str, ...]
    # 0.11: quantization is a Literal -> argparse choices (exit 2 "invalid choice"); 0.33 types it
    # `QuantizationMethods | str | None` -> metavar, and ModelConfig refuses it later (exit 1,
    # vllm/config/model.py "Unknown quantization method").
    quantization_is_choice: bool
    max_model_len_auto: bool  # human_readable_int_or_auto (vllm/utils/argparse_utils.py, 0.33)
    # Flags of the other release this one's parser does not know (argparse: "unrecognized arguments").
    flags_absent: tuple[str, ...]
    # SIGTERM. 0.11: vllm/entrypoints/launcher.py serve_http's handler cancels the server task, so
    # in-flight requests are cut off at once. 0.33: vllm/entrypoints/launchers/launcher.py stops the
    # engine client with --shutdown-timeout (vllm/config/vllm.py, default 0): 0 aborts in-flight
    # requests, N lets them finish for up to N s (vllm/v1/engine/core.py _handle_shutdown).
    shutdown_timeout_flag: bool
    # Startup failures: vllm/v1/core/kv_cache_utils.py check_enough_kv_cache_memory (0.11),
    # vllm/v1/core/kv_cache_planning.py _check_enough_kv_cache_memory (0.33).
    no_kv_memory_message: str
    kv_too_small_template: str  # .format(max_len=, needed=, available=, estimated=)


_RELEASE_0_11 = Release(
    version="0.11.0", batch_defaults=_batch_defaults_0_11, legacy_metric_names=False,
    deprecated_tpot_histogram=True, request_param_histograms=True, newer_families=False,
    finish_reasons=("stop", "length", "abort"), flat_error_body=False, context_policy="reject",
    not_found_lists_aliases=False, validation_error_names_parameter=False, quantization_methods=QUANTIZATION_0_11,
    quantization_is_choice=True, max_model_len_auto=False,
    flags_absent=("--shutdown-timeout", "--performance-mode"), shutdown_timeout_flag=False,
    no_kv_memory_message=_NO_KV_0_11, kv_too_small_template=_KV_SMALL_0_11,
)
RELEASES: Mapping[str, Release] = {
    "0.11.0": _RELEASE_0_11,
    "0.33.0": Release(
        version="0.33.0", batch_defaults=_batch_defaults_0_33, legacy_metric_names=False,
        deprecated_tpot_histogram=False, request_param_histograms=True, newer_families=True,
        finish_reasons=("stop", "length", "abort", "error", "repetition"), flat_error_body=False, context_policy="clamp", not_found_lists_aliases=True,
        validation_error_names_parameter=True,
        quantization_methods=QUANTIZATION_0_33, quantization_is_choice=False, max_model_len_auto=True,
        flags_absent=("--swap-space", "--max-num-partial-prefills"), shutdown_timeout_flag=True,
        no_kv_memory_message=_NO_KV_0_33, kv_too_small_template=_KV_SMALL_0_33,
    ),
    # The 0.8-era names and flat error body on 0.11's engine behaviour (see the module doc).
    "0.8.5": dataclasses.replace(_RELEASE_0_11, version="0.8.5", legacy_metric_names=True,
                                 deprecated_tpot_histogram=False, request_param_histograms=False,
                                 flat_error_body=True),
}
NEWEST = "0.33.0"
LEGACY = "0.8.5"
# Accepted spellings: the full version or its series ("0.11" -> 0.11.0).
_ALIASES = {"0.11": "0.11.0", "0.33": "0.33.0", "0.8": "0.8.5"}


def resolve(raw: str) -> Release:
    """LLMOPS_SIM_VLLM_VERSION's value -> the release; '' is the newest. ValueError names the
    accepted values."""
    text = raw.strip().removeprefix("v")
    if not text:
        return RELEASES[NEWEST]
    version = _ALIASES.get(text, text)
    if version not in RELEASES:
        accepted = ", ".join(sorted(set(RELEASES) | set(_ALIASES), key=lambda v: tuple(int(p) for p in v.split("."))))
        raise ValueError(f"LLMOPS_SIM_VLLM_VERSION={raw!r} is not an emulated vLLM release; accepted: {accepted}")
    return RELEASES[version]
