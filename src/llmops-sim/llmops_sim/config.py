"""Turn `vllm serve`'s command line plus LLMOPS_SIM_* environment variables into one
SimConfig. Pure: argv and env come in as values, nothing is read from the process.

The pod spec that runs real vLLM must run the simulator unchanged, so vLLM's flags are
accepted as vLLM spells them and simulator-only knobs come from the environment."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from llmops_sim import multimodal as mm
from llmops_sim import profiles as prof
from llmops_sim import releases as rel
from llmops_sim import timing
from llmops_sim.multimodal import MultimodalConfig

ENV_DOC = {
    "LLMOPS_SIM_GPU": f"GPU product label value, e.g. NVIDIA-L4 (default {prof.DEFAULT_GPU})",
    "LLMOPS_SIM_GPU_COUNT": "GPUs visible to the pod (default TP x PP)",
    "LLMOPS_GROUP_SIZE": "nodes in a multi-node group (set by llmops): the engine's Ray cluster "
                         "has LLMOPS_SIM_GPU_COUNT x this many GPUs (default 1)",
    "LLMOPS_SIM_STARTUP_SECONDS": "model-loading delay before /health is ready (default 2)",
    "LLMOPS_SIM_SPEED": "speed factor; 2 halves every step duration (default 1)",
    "LLMOPS_SIM_SEED": "seed for output lengths and text (default 0)",
    "LLMOPS_SIM_VLLM_VERSION": f"vLLM release to emulate: {', '.join(sorted(rel.RELEASES))} (default {rel.NEWEST}; "
                               "the sandbox sets it from the image tag)",
    "LLMOPS_SIM_LEGACY_KV_METRIC": f"1 = emulate vLLM {rel.LEGACY} (0.8-era metric names) instead",
    "LLMOPS_SIM_CONTROL": "1 = enable the test-only POST /sim/control endpoint",
    "LLMOPS_SIM_PARAMS_B": "model size in billions of parameters (overrides the size in the model name)",
    "LLMOPS_SIM_PROFILE": "YAML file overriding GPU/model-shape/efficiency tables",
    "LLMOPS_SIM_DRAIN_SECONDS": "on SIGTERM, how long in-flight requests may finish (default: the release's "
                                "behaviour: 0.11 cuts them off, 0.33 waits --shutdown-timeout, default 0)",
}

# For a model neither the planner's catalogue nor a local config.json describes.
FALLBACK_MAX_MODEL_LEN = 8192
# vLLM's DistributedExecutorBackend values.
EXECUTOR_BACKENDS = ("ray", "mp", "uni", "external_launcher")


class ConfigError(ValueError):
    """The command line or environment is unusable; the message says how to fix it.

    `argparse_line`: the message is vLLM's own argument-parser line, printed as is.
    `exit_code`: 2 for a refused command line (argparse), 1 for an engine that fails to
    build its config (vLLM raises from ModelConfig)."""

    def __init__(self, message: str, *, argparse_line: bool = False, exit_code: int = 2):
        super().__init__(message)
        self.argparse_line = argparse_line
        self.exit_code = exit_code


def _argparse_error(flag: str, problem: str) -> ConfigError:
    """The line vLLM's FlexibleArgumentParser prints before exiting 2."""
    return ConfigError(f"vllm serve: error: argument {flag}: {problem}", argparse_line=True)


@dataclass(frozen=True)
class SimConfig:
    model: str
    served_model_names: tuple[str, ...]
    host: str
    port: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    quantization: str | None
    dtype: str
    kv_cache_dtype: str
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    enable_prefix_caching: bool
    gpu_name: str
    gpu: prof.GpuProfile
    gpu_count: int
    params_b: float
    startup_seconds: float
    speed: float
    seed: int
    release: rel.Release
    control_enabled: bool
    drain_seconds: float
    profiles: prof.Profiles
    ignored_flags: tuple[str, ...] = ()
    distributed_executor_backend: str | None = None  # None: vLLM picks (ray across nodes)
    group_size: int = 1  # nodes whose GPUs the engine spans (LLMOPS_GROUP_SIZE)
    data_parallel_size: int = 1  # engines, each on TP x PP GPUs (--data-parallel-size)
    enable_chunked_prefill: bool = True
    notes: tuple[str, ...] = field(default=())  # decisions worth a log line at startup
    multimodal: MultimodalConfig = field(default_factory=lambda: MultimodalConfig(None))

    @property
    def legacy_metrics(self) -> bool:
        return self.release.legacy_metric_names

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0]

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def shape(self) -> prof.ModelShape:
        vision_model = self.multimodal.vision is not None and self.multimodal.language_shape is not None
        return self.multimodal.language_shape if vision_model else prof.shape_for(self.params_b, self.profiles)

    @property
    def weight_bytes(self) -> float:
        return timing.weights_bytes(self.params_b, prof.bytes_per_param(self.dtype, self.quantization))

    @property
    def kv_bytes_per_token(self) -> float:
        return timing.kv_bytes_per_token(self.shape, prof.kv_bytes_per_element(self.kv_cache_dtype, self.dtype))

    @property
    def kv_capacity_tokens(self) -> int:
        return timing.kv_capacity_tokens(
            self.gpu, self.num_gpus, self.gpu_memory_utilization, self.weight_bytes,
            self.kv_bytes_per_token, self.profiles.efficiency.activation_reserve_gib)

    def step_costs(self, speed: float | None = None) -> timing.StepCosts:
        return timing.step_costs(self.gpu, self.num_gpus, self.params_b, self.weight_bytes,
                                 self.kv_bytes_per_token, self.profiles.efficiency,
                                 self.speed if speed is None else speed)

    def fit_error(self) -> str | None:
        """The error real vLLM would die with at startup, or None."""
        capacity = self.kv_capacity_tokens
        if capacity <= 0:
            return (f"{self.release.no_kv_memory_message} (weights {self.weight_bytes / prof.GIB:.1f} GiB on "
                    f"{self.num_gpus} x {self.gpu_name})")
        if self.max_model_len > capacity:
            per_gpu = self.kv_bytes_per_token / self.num_gpus / prof.GIB
            return self.release.kv_too_small_template.format(
                max_len=self.max_model_len, needed=self.max_model_len * per_gpu, available=capacity * per_gpu,
                estimated=capacity)
        return None


# Flags we understand: name -> (dest, type, nargs). Aliases map to the same dest.
_KNOWN_FLAGS: dict[str, tuple[str, type, str | None]] = {
    "--model": ("model", str, None),
    "--served-model-name": ("served_model_name", str, "+"),
    "--host": ("host", str, None),
    "--port": ("port", int, None),
    "--tensor-parallel-size": ("tensor_parallel_size", int, None),
    "-tp": ("tensor_parallel_size", int, None),
    "--pipeline-parallel-size": ("pipeline_parallel_size", int, None),
    "-pp": ("pipeline_parallel_size", int, None),
    "--quantization": ("quantization", str, None),
    "-q": ("quantization", str, None),
    "--max-model-len": ("max_model_len", str, None),
    "--max-num-seqs": ("max_num_seqs", int, None),
    "--max-num-batched-tokens": ("max_num_batched_tokens", str, None),  # human-readable, like 8k
    "--gpu-memory-utilization": ("gpu_memory_utilization", float, None),
    "--dtype": ("dtype", str, None),
    "--kv-cache-dtype": ("kv_cache_dtype", str, None),
    "--distributed-executor-backend": ("distributed_executor_backend", str, None),
    "--data-parallel-size": ("data_parallel_size", str, None),
    "-dp": ("data_parallel_size", str, None),
    "--shutdown-timeout": ("shutdown_timeout", str, None),
    "--limit-mm-per-prompt": ("limit_mm_per_prompt", str, None),
    "--mm-processor-kwargs": ("mm_processor_kwargs", str, None),
    "--mm-processor-cache-gb": ("mm_processor_cache_gb", str, None),
}
_BOOLEAN_FLAGS = {"--enable-prefix-caching": True, "--no-enable-prefix-caching": False,
                  "--enable-chunked-prefill": True, "--no-enable-chunked-prefill": False}


def split_vllm_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(tokens for known flags incl. the positional model, ignored unknown flags with their
    values). An unknown `--flag` swallows following bare tokens as its values, so a
    positional model is only recognised before the first flag, as `vllm serve MODEL ...`."""
    known: list[str] = []
    ignored: list[str] = []
    i = 0
    if argv and not argv[0].startswith("-"):
        known.append(argv[0])
        i = 1
    while i < len(argv):
        token = argv[i]
        name = token.split("=", 1)[0]
        if name in _KNOWN_FLAGS or name in _BOOLEAN_FLAGS:
            known.append(token)
            i += 1
            nargs = _KNOWN_FLAGS.get(name, ("", str, "0"))[2]
            if "=" in token or name in _BOOLEAN_FLAGS:
                continue
            while i < len(argv) and not argv[i].startswith("-"):
                known.append(argv[i])
                i += 1
                if nargs is None:
                    break
            continue
        group = [token]
        i += 1
        while i < len(argv) and not argv[i].startswith("-") and "=" not in token:
            group.append(argv[i])
            i += 1
        ignored.append(" ".join(group))
    return known, ignored


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmops sim serve", add_help=False, exit_on_error=False)
    parser.add_argument("positional_model", nargs="?")
    seen: set[str] = set()
    for flag, (dest, kind, nargs) in _KNOWN_FLAGS.items():
        aliases = [f for f, spec in _KNOWN_FLAGS.items() if spec[0] == dest]
        if dest in seen:
            continue
        seen.add(dest)
        parser.add_argument(*aliases, dest=dest, type=kind, nargs=nargs)
    parser.add_argument("--enable-prefix-caching", dest="enable_prefix_caching", action="store_true", default=None)
    parser.add_argument("--no-enable-prefix-caching", dest="enable_prefix_caching", action="store_false")
    parser.add_argument("--enable-chunked-prefill", dest="enable_chunked_prefill", action="store_true", default=None)
    parser.add_argument("--no-enable-chunked-prefill", dest="enable_chunked_prefill", action="store_false")
    return parser


AUTO_MAX_MODEL_LEN = -1  # `--max-model-len auto` / -1: the longest that fits (0.33)


def parse_max_model_len(value: str, accepts_auto: bool = True) -> int:
    """vLLM's human_readable_int (vllm/engine/arg_utils.py 0.11, vllm/utils/argparse_utils.py
    0.33): 4096, or a suffix where lowercase is decimal (25.6k = 25600) and uppercase binary
    (32K = 32768, no decimals); 0.33's human_readable_int_or_auto adds 'auto' / -1."""
    text = value.strip()
    if accepts_auto and (text == "-1" or text.lower() == "auto"):
        return AUTO_MAX_MODEL_LEN
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", text)
    if match:
        number, suffix = match.groups()
        decimal = {"k": 10**3, "m": 10**6, "g": 10**9}
        binary = {"K": 2**10, "M": 2**20, "G": 2**30}
        if suffix in decimal:
            return int(float(number) * decimal[suffix])
        if suffix in binary:
            return int(number) * binary[suffix]
    return int(text)


def _catalogue_entry(model: str) -> tuple[dict, Any]:
    """(a local directory's config.json, the planner's catalogue entry for the model: by name,
    or for a local directory by its config's _name_or_path, e.g. the simulated hub's)."""
    from llmops.planner.models import lookup_model

    name, hf_config = model, {}
    if model.startswith("/"):
        try:
            with open(os.path.join(model, "config.json"), encoding="utf-8") as handle:
                hf_config = json.load(handle)
            name = str(hf_config.get("_name_or_path") or "")
        except (OSError, ValueError, TypeError, AttributeError):
            return {}, None
        if not isinstance(hf_config, dict):
            return {}, None
    return hf_config, (lookup_model(name) if name else None)


def model_context_length(model: str) -> int | None:
    """What vLLM defaults --max-model-len to: max_position_embeddings from the model's
    config.json (a local directory), else the planner's catalogue of config.json facts."""
    hf_config, info = _catalogue_entry(model)
    try:
        if hf_config.get("max_position_embeddings"):
            return int(hf_config["max_position_embeddings"])
    except (ValueError, TypeError):
        return None
    return info.context_length if info else None


def parse_group_size(raw: str) -> int:
    """LLMOPS_GROUP_SIZE: how many nodes (pods) the engine's Ray cluster spans; unset = 1."""
    text = raw.strip()
    if not text:
        return 1
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise ConfigError(f"LLMOPS_GROUP_SIZE={raw!r} must be a whole number >= 1 (nodes in the group)")
    return size


def engine_gpus(per_pod_raw: str, group_size: int, needed: int, backend: str | None) -> tuple[int, str | None]:
    """(GPUs the engine can use, the error real vLLM would fail with or None).

    Each pod of a group sees its own GPUs (LLMOPS_SIM_GPU_COUNT, the pod's nvidia.com/gpu);
    over Ray the engine uses those of every node in the group. Unset: exactly TP x PP."""
    if not per_pod_raw:
        return needed, None
    try:
        per_pod = int(float(per_pod_raw))
    except ValueError:
        return 0, f"LLMOPS_SIM_GPU_COUNT={per_pod_raw!r} is not a number; fix: set it to e.g. {needed}"
    total = per_pod * group_size
    if group_size > 1 and needed > per_pod and backend not in (None, "ray"):
        return total, (f"--distributed-executor-backend {backend} runs on one node, but tensor_parallel_size x "
                       f"pipeline_parallel_size = {needed} GPUs and this node has {per_pod}; "
                       "fix: use --distributed-executor-backend ray for a multi-node group")
    if total < needed:
        where = (f"only {per_pod} visible (LLMOPS_SIM_GPU_COUNT)" if group_size == 1 else
                 f"the group has {total} ({group_size} nodes (LLMOPS_GROUP_SIZE) x {per_pod} GPUs (LLMOPS_SIM_GPU_COUNT))")
        return total, (f"tensor_parallel_size x pipeline_parallel_size = {needed} GPUs but {where}; "
                       "fix: request more nvidia.com/gpu")
    return total, None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; fix: set it to e.g. {default}") from None


def release_from_env(env: Mapping[str, str]) -> rel.Release:
    """LLMOPS_SIM_VLLM_VERSION, or LLMOPS_SIM_LEGACY_KV_METRIC=1 for the 0.8-era engine."""
    raw = env.get("LLMOPS_SIM_VLLM_VERSION", "")
    legacy = env.get("LLMOPS_SIM_LEGACY_KV_METRIC", "").strip() in ("1", "true", "yes")
    try:
        release = rel.resolve(raw or (rel.LEGACY if legacy else ""))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if legacy and not release.legacy_metric_names:
        raise ConfigError(f"LLMOPS_SIM_LEGACY_KV_METRIC=1 emulates vLLM {rel.LEGACY}, but LLMOPS_SIM_VLLM_VERSION "
                          f"is {raw!r}; fix: set only one of them")
    return release


def _quantization(value: str | None, release: rel.Release) -> str | None:
    if value is None or value == "None":
        return None
    if value in release.quantization_methods:
        return value
    if release.quantization_is_choice:
        # argparse's _check_value on Python 3.12 (the vllm-openai image): repr of each choice,
        # and the "None" string vLLM appends for Optional fields.
        choices = ", ".join(repr(c) for c in (*release.quantization_methods, "None"))
        raise _argparse_error("--quantization/-q", f"invalid choice: {value!r} (choose from {choices})")
    # vllm/config/model.py ModelConfig._verify_quantization: the engine dies before serving.
    raise ConfigError(f"Unknown quantization method: {value}. Must be one of "
                      f"{list(release.quantization_methods)}.", exit_code=1)


def _human_int(flag: str, raw: str | None) -> int | None:
    """vLLM parses --max-num-batched-tokens with human_readable_int (2k, 8K) in both releases."""
    if raw is None:
        return None
    try:
        return parse_max_model_len(raw, accepts_auto=False)
    except ValueError:
        raise _argparse_error(flag, f"invalid human_readable_int value: {raw!r}") from None


def _positive_int(flag: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise _argparse_error(flag, f"invalid int value: {raw!r}") from None


def build_config(argv: Sequence[str], env: Mapping[str, str], profile_yaml: str | None = None) -> SimConfig:
    """`profile_yaml` is the text of the LLMOPS_SIM_PROFILE file (the caller reads it)."""
    release = release_from_env(env)
    absent: list[str] = []
    for index, token in enumerate(argv):
        if token.split("=", 1)[0] in release.flags_absent:
            absent.append(token)
            absent.extend(itertools.takewhile(lambda t: not t.startswith("-"), argv[index + 1:]))
    if absent:
        raise ConfigError(f"vllm serve: error: unrecognized arguments: {' '.join(absent)} (not a flag of vLLM "
                          f"{release.version})", argparse_line=True)
    known, ignored = split_vllm_args(argv)
    try:
        args, leftover = _parser().parse_known_args(known)
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigError(f"bad vllm serve argument: {exc}") from None
    ignored.extend(leftover)
    model = args.model or args.positional_model
    if not model:
        raise ConfigError("no model given; fix: pass `--model NAME` or a positional model like `vllm serve NAME`")
    if model.startswith("/") and not os.path.isfile(os.path.join(model, "config.json")):
        # vLLM loads a local directory as is: without its config.json there is no model.
        raise ConfigError(f"--model {model}: no config.json in that directory; fix: stage the model there "
                          "or point --model at a model directory")
    notes: list[str] = []
    quantization_flag = _quantization(args.quantization, release)

    profiles = prof.DEFAULT_PROFILES
    if profile_yaml is not None:
        try:
            profiles = prof.apply_overrides(profiles, yaml.safe_load(profile_yaml) or {})
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            raise ConfigError(f"LLMOPS_SIM_PROFILE: {exc}") from None

    gpu_name = env.get("LLMOPS_SIM_GPU", "").strip() or prof.DEFAULT_GPU
    if gpu_name not in profiles.gpus:
        raise ConfigError(f"LLMOPS_SIM_GPU={gpu_name!r} is unknown; fix: use one of "
                          f"{', '.join(sorted(profiles.gpus))} or add it in LLMOPS_SIM_PROFILE")
    tp = args.tensor_parallel_size or 1
    pp = args.pipeline_parallel_size or 1
    if tp < 1 or pp < 1:
        raise ConfigError("--tensor-parallel-size and --pipeline-parallel-size must be >= 1")
    dp = _positive_int("--data-parallel-size/-dp", args.data_parallel_size) or 1
    if dp < 1:
        raise ConfigError(f"--data-parallel-size {dp} must be >= 1 (engines, each on TP x PP GPUs)")
    backend = args.distributed_executor_backend
    if backend is not None and backend not in EXECUTOR_BACKENDS:
        raise ConfigError(f"--distributed-executor-backend {backend!r} is not one of {', '.join(EXECUTOR_BACKENDS)}")
    group_size = parse_group_size(env.get("LLMOPS_GROUP_SIZE", ""))
    gpu_count, gpu_error = engine_gpus(env.get("LLMOPS_SIM_GPU_COUNT", "").strip(), group_size, tp * pp * dp, backend)
    if gpu_error:
        raise ConfigError(gpu_error if dp == 1 else f"--data-parallel-size {dp}: {gpu_error}")
    if group_size > 1:
        notes.append(f"multi-node group: Ray cluster of {group_size} nodes, {gpu_count} GPUs in all")

    env_params = env.get("LLMOPS_SIM_PARAMS_B", "").strip()
    if env_params:
        params_b = _env_float(env, "LLMOPS_SIM_PARAMS_B", 7.0)
    else:
        from_name = prof.params_from_model_name(model)
        params_b = from_name if from_name else 7.0
        if not from_name:
            notes.append(f"model size not in name {model!r}; assuming 7B (set LLMOPS_SIM_PARAMS_B)")
    if params_b <= 0:
        raise ConfigError("LLMOPS_SIM_PARAMS_B must be positive")

    quantization = quantization_flag or prof.quantization_from_model_name(model)
    if quantization and not quantization_flag:
        notes.append(f"quantization {quantization!r} inferred from the model name")

    utilization = args.gpu_memory_utilization if args.gpu_memory_utilization is not None else 0.9
    if not 0 < utilization <= 1:
        raise ConfigError(f"--gpu-memory-utilization {utilization} must be in (0, 1]")
    if args.max_model_len:
        try:
            max_model_len = parse_max_model_len(args.max_model_len, release.max_model_len_auto)
        except ValueError:
            raise _argparse_error("--max-model-len", f"invalid human_readable_int{'_or_auto' if release.max_model_len_auto else ''} "
                                  f"value: {args.max_model_len!r}") from None
    else:
        max_model_len = model_context_length(model) or 0
        if not max_model_len:
            max_model_len = FALLBACK_MAX_MODEL_LEN
            notes.append(f"context length of {model!r} unknown (not in the model catalogue); "
                         f"max_model_len {FALLBACK_MAX_MODEL_LEN} (pass --max-model-len)")
    info = _catalogue_entry(model)[1]
    try:
        multimodal = mm.build(info.vision if info else None, args.limit_mm_per_prompt, args.mm_processor_kwargs,
                              args.mm_processor_cache_gb, params_b)
        if info is not None and info.vision is not None:
            # Vision-language models (new to the simulator) take their KV shape from the catalogue's
            # config.json figures, so image tokens cost what they cost; text models keep the size classes.
            multimodal = dataclasses.replace(multimodal, language_shape=prof.ModelShape(
                info.parameters_billions, info.layers, info.kv_heads, info.head_dim))
    except mm.MultimodalFlagError as exc:
        raise ConfigError(str(exc), argparse_line=str(exc).startswith("vllm serve: error:")) from None
    if multimodal.vision:
        notes.append(f"vision-language model ({multimodal.vision.family}): image tokens as its processor counts "
                     "them; http(s) image URLs are not fetched")
    chunked_prefill = True if args.enable_chunked_prefill is None else args.enable_chunked_prefill
    gpu = profiles.gpus[gpu_name]
    defaults = release.batch_defaults(gpu.memory_gib, gpu_name)
    speed = _env_float(env, "LLMOPS_SIM_SPEED", 1.0)
    if speed <= 0:
        raise ConfigError("LLMOPS_SIM_SPEED must be positive")
    port = args.port if args.port is not None else 8000
    shutdown_timeout = _positive_int("--shutdown-timeout", args.shutdown_timeout) or 0
    if shutdown_timeout < 0:
        raise ConfigError(f"--shutdown-timeout {shutdown_timeout} must be >= 0 (seconds in-flight requests may finish)")
    drain_seconds = _env_float(env, "LLMOPS_SIM_DRAIN_SECONDS", float(shutdown_timeout))

    config = SimConfig(
        model=model,
        served_model_names=tuple(args.served_model_name or [model]),
        host=args.host or "0.0.0.0",
        port=port,
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        quantization=quantization,
        dtype=args.dtype or "auto",
        kv_cache_dtype=args.kv_cache_dtype or "auto",
        max_model_len=max_model_len,
        max_num_seqs=0,
        max_num_batched_tokens=0,
        gpu_memory_utilization=utilization,
        enable_prefix_caching=True if args.enable_prefix_caching is None else args.enable_prefix_caching,
        gpu_name=gpu_name,
        gpu=gpu,
        gpu_count=gpu_count,
        params_b=params_b,
        startup_seconds=_env_float(env, "LLMOPS_SIM_STARTUP_SECONDS", 2.0),
        speed=speed,
        seed=int(_env_float(env, "LLMOPS_SIM_SEED", 0)),
        release=release,
        control_enabled=env.get("LLMOPS_SIM_CONTROL", "").strip() in ("1", "true", "yes"),
        drain_seconds=drain_seconds,
        profiles=profiles,
        ignored_flags=tuple(ignored),
        distributed_executor_backend=backend,
        group_size=group_size,
        data_parallel_size=dp,
        enable_chunked_prefill=chunked_prefill,
        notes=tuple(notes),
        multimodal=multimodal,
    )
    if max_model_len == AUTO_MAX_MODEL_LEN:
        # vllm/config/model.py (0.33): the model's own context if it fits, else the longest that does.
        context = model_context_length(model) or FALLBACK_MAX_MODEL_LEN
        max_model_len = max(1, min(context, config.kv_capacity_tokens))
        notes.append(f"--max-model-len auto: {max_model_len}")
    # vllm/engine/arg_utils.py: without chunked prefill a step must hold a whole prompt.
    batched = _human_int("--max-num-batched-tokens", args.max_num_batched_tokens) or (
        defaults.max_num_batched_tokens if chunked_prefill else max(max_model_len, defaults.max_num_batched_tokens))
    # 0.11 caps the default max_num_seqs at max_num_batched_tokens (_set_default_args).
    max_num_seqs = args.max_num_seqs or min(defaults.max_num_seqs, batched)
    return dataclasses.replace(config, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                               max_num_batched_tokens=batched, notes=tuple(notes))
