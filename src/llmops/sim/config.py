"""Turn `vllm serve`'s command line plus LLMOPS_SIM_* environment variables into one
SimConfig. Pure: argv and env come in as values, nothing is read from the process.

The pod spec that runs real vLLM must run the simulator unchanged, so vLLM's flags are
accepted as vLLM spells them and simulator-only knobs come from the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import yaml

from llmops.sim import profiles as prof
from llmops.sim import timing

ENV_DOC = {
    "LLMOPS_SIM_GPU": f"GPU product label value, e.g. NVIDIA-L4 (default {prof.DEFAULT_GPU})",
    "LLMOPS_SIM_GPU_COUNT": "GPUs visible to the pod (default TP x PP)",
    "LLMOPS_GROUP_SIZE": "nodes in a multi-node group (set by llmops): the engine's Ray cluster "
                         "has LLMOPS_SIM_GPU_COUNT x this many GPUs (default 1)",
    "LLMOPS_SIM_STARTUP_SECONDS": "model-loading delay before /health is ready (default 2)",
    "LLMOPS_SIM_SPEED": "speed factor; 2 halves every step duration (default 1)",
    "LLMOPS_SIM_SEED": "seed for output lengths and text (default 0)",
    "LLMOPS_SIM_LEGACY_KV_METRIC": "1 = expose an old (0.8-era) vLLM's metric names instead of current ones",
    "LLMOPS_SIM_CONTROL": "1 = enable the test-only POST /sim/control endpoint",
    "LLMOPS_SIM_PARAMS_B": "model size in billions of parameters (overrides the size in the model name)",
    "LLMOPS_SIM_PROFILE": "YAML file overriding GPU/model-shape/efficiency tables",
    "LLMOPS_SIM_DRAIN_SECONDS": "on SIGTERM, how long in-flight requests may finish (default 30)",
}

DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_BATCHED_TOKENS = 8192
# vLLM's DistributedExecutorBackend values.
EXECUTOR_BACKENDS = ("ray", "mp", "uni", "external_launcher")


class ConfigError(ValueError):
    """The command line or environment is unusable; the message says how to fix it."""


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
    legacy_metrics: bool
    control_enabled: bool
    drain_seconds: float
    profiles: prof.Profiles
    ignored_flags: tuple[str, ...] = ()
    distributed_executor_backend: str | None = None  # None: vLLM picks (ray across nodes)
    group_size: int = 1  # nodes whose GPUs the engine spans (LLMOPS_GROUP_SIZE)
    notes: tuple[str, ...] = field(default=())  # decisions worth a log line at startup

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0]

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def shape(self) -> prof.ModelShape:
        return prof.shape_for(self.params_b, self.profiles)

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
            return ("No available memory for the cache blocks. Try increasing "
                    "`gpu_memory_utilization` when initializing the engine. "
                    f"(weights {self.weight_bytes / prof.GIB:.1f} GiB on {self.num_gpus} x {self.gpu_name})")
        if self.max_model_len > capacity:
            return (f"The model's max seq len ({self.max_model_len}) is larger than the maximum number "
                    f"of tokens that can be stored in KV cache ({capacity}). Try increasing "
                    "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")
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
    "--max-num-batched-tokens": ("max_num_batched_tokens", int, None),
    "--gpu-memory-utilization": ("gpu_memory_utilization", float, None),
    "--dtype": ("dtype", str, None),
    "--kv-cache-dtype": ("kv_cache_dtype", str, None),
    "--distributed-executor-backend": ("distributed_executor_backend", str, None),
}
_BOOLEAN_FLAGS = {"--enable-prefix-caching": True, "--no-enable-prefix-caching": False}


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
    return parser


def parse_max_model_len(value: str) -> int:
    """Like vLLM: 4096, or a suffix where lowercase is decimal (32k = 32000) and
    uppercase binary (32K = 32768)."""
    text = value.strip()
    multipliers = {"k": 1000, "K": 1024, "m": 1_000_000, "M": 1024 * 1024}
    if text and text[-1] in multipliers:
        return int(float(text[:-1]) * multipliers[text[-1]])
    return int(text)


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


def build_config(argv: Sequence[str], env: Mapping[str, str], profile_yaml: str | None = None) -> SimConfig:
    """`profile_yaml` is the text of the LLMOPS_SIM_PROFILE file (the caller reads it)."""
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
    backend = args.distributed_executor_backend
    if backend is not None and backend not in EXECUTOR_BACKENDS:
        raise ConfigError(f"--distributed-executor-backend {backend!r} is not one of {', '.join(EXECUTOR_BACKENDS)}")
    group_size = parse_group_size(env.get("LLMOPS_GROUP_SIZE", ""))
    gpu_count, gpu_error = engine_gpus(env.get("LLMOPS_SIM_GPU_COUNT", "").strip(), group_size, tp * pp, backend)
    if gpu_error:
        raise ConfigError(gpu_error)
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

    quantization = args.quantization or prof.quantization_from_model_name(model)
    if quantization and not args.quantization:
        notes.append(f"quantization {quantization!r} inferred from the model name")

    utilization = args.gpu_memory_utilization if args.gpu_memory_utilization is not None else 0.9
    if not 0 < utilization <= 1:
        raise ConfigError(f"--gpu-memory-utilization {utilization} must be in (0, 1]")
    try:
        max_model_len = parse_max_model_len(args.max_model_len) if args.max_model_len else DEFAULT_MAX_MODEL_LEN
    except ValueError:
        raise ConfigError(f"--max-model-len {args.max_model_len!r} is not a number like 4096 or 32k") from None
    max_num_seqs = args.max_num_seqs or DEFAULT_MAX_NUM_SEQS
    batched = args.max_num_batched_tokens or max(DEFAULT_MAX_BATCHED_TOKENS, max_num_seqs)
    speed = _env_float(env, "LLMOPS_SIM_SPEED", 1.0)
    if speed <= 0:
        raise ConfigError("LLMOPS_SIM_SPEED must be positive")
    port = args.port if args.port is not None else 8000

    return SimConfig(
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
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=batched,
        gpu_memory_utilization=utilization,
        enable_prefix_caching=True if args.enable_prefix_caching is None else args.enable_prefix_caching,
        gpu_name=gpu_name,
        gpu=profiles.gpus[gpu_name],
        gpu_count=gpu_count,
        params_b=params_b,
        startup_seconds=_env_float(env, "LLMOPS_SIM_STARTUP_SECONDS", 2.0),
        speed=speed,
        seed=int(_env_float(env, "LLMOPS_SIM_SEED", 0)),
        legacy_metrics=env.get("LLMOPS_SIM_LEGACY_KV_METRIC", "").strip() in ("1", "true", "yes"),
        control_enabled=env.get("LLMOPS_SIM_CONTROL", "").strip() in ("1", "true", "yes"),
        drain_seconds=_env_float(env, "LLMOPS_SIM_DRAIN_SECONDS", 30.0),
        profiles=profiles,
        ignored_flags=tuple(ignored),
        distributed_executor_backend=backend,
        group_size=group_size,
        notes=tuple(notes),
    )
