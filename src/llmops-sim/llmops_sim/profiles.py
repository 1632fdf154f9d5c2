"""Hardware and model-shape tables behind the simulator's timing model.

Numbers are public datasheet figures (memory, HBM bandwidth, dense bf16 tensor
throughput) and Llama/Qwen-style shapes per size class. They are defaults, not
measurements: a YAML file named by LLMOPS_SIM_PROFILE can override any of them
(see `apply_overrides`). Everything here is pure data and pure functions.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

GIB = 1024**3


@dataclass(frozen=True)
class GpuProfile:
    """One GPU model, keyed by its `nvidia.com/gpu.product` label value."""

    memory_gib: float
    bandwidth_gbps: float  # HBM bandwidth, GB/s (10^9)
    tflops: float  # dense bf16/fp16 tensor TFLOPS


@dataclass(frozen=True)
class ModelShape:
    """Transformer shape of a size class: enough to size weights and KV cache."""

    max_params_b: float  # this class covers models up to this many billion params
    layers: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class Efficiency:
    """How far real kernels fall short of the datasheet, plus fixed costs."""

    memory_bandwidth: float = 0.75  # fraction of HBM bandwidth decode reaches
    compute: float = 0.5  # model FLOPs utilisation in prefill / large batches
    step_overhead_ms: float = 1.5  # scheduler + launch cost of every engine step
    per_sequence_overhead_ms: float = 0.02  # sampling/detokenising per running sequence
    parallel_efficiency: float = 0.9  # multiplied once per doubling of TP x PP
    activation_reserve_gib: float = 1.0  # per GPU: activations, CUDA graphs, NCCL


@dataclass(frozen=True)
class Profiles:
    gpus: Mapping[str, GpuProfile]
    model_shapes: tuple[ModelShape, ...]  # ascending by max_params_b
    efficiency: Efficiency = field(default_factory=Efficiency)


DEFAULT_GPU = "NVIDIA-A100-SXM4-80GB"

DEFAULT_GPUS: dict[str, GpuProfile] = {
    "NVIDIA-A100-SXM4-80GB": GpuProfile(80, 2039, 312),
    "NVIDIA-A100-80GB-PCIe": GpuProfile(80, 1935, 312),
    "NVIDIA-A100-SXM4-40GB": GpuProfile(40, 1555, 312),
    "NVIDIA-A100-PCIE-40GB": GpuProfile(40, 1555, 312),
    "NVIDIA-H100-80GB-HBM3": GpuProfile(80, 3350, 989),
    "NVIDIA-H100-PCIe": GpuProfile(80, 2000, 756),
    "NVIDIA-H100-NVL": GpuProfile(94, 3900, 835),
    "NVIDIA-H200": GpuProfile(141, 4800, 989),
    "NVIDIA-B200": GpuProfile(180, 8000, 2250),
    "NVIDIA-L40S": GpuProfile(48, 864, 362),
    "NVIDIA-L40": GpuProfile(48, 864, 181),
    "NVIDIA-L4": GpuProfile(22.5, 300, 121),
    "NVIDIA-A10G": GpuProfile(22.5, 600, 70),
    "NVIDIA-A10": GpuProfile(22.5, 600, 125),
    "Tesla-T4": GpuProfile(15, 320, 65),
    "Tesla-V100-SXM2-16GB": GpuProfile(16, 900, 125),
}

# Shapes of representative models per size class (Qwen2.5-0.5B/1.5B, Llama-3.2-3B,
# Llama-3.1-8B, Qwen2.5-14B, Qwen2.5-32B, Llama-3.1-70B, Llama-3.1-405B).
DEFAULT_MODEL_SHAPES: tuple[ModelShape, ...] = (
    ModelShape(1.0, 24, 2, 64),
    ModelShape(2.0, 28, 2, 128),
    ModelShape(4.5, 28, 8, 128),
    ModelShape(10.0, 32, 8, 128),
    ModelShape(20.0, 48, 8, 128),
    ModelShape(40.0, 64, 8, 128),
    ModelShape(90.0, 80, 8, 128),
    ModelShape(math.inf, 126, 8, 128),
)

DEFAULT_PROFILES = Profiles(gpus=DEFAULT_GPUS, model_shapes=DEFAULT_MODEL_SHAPES)


def shape_for(params_b: float, profiles: Profiles = DEFAULT_PROFILES) -> ModelShape:
    for shape in profiles.model_shapes:
        if params_b <= shape.max_params_b:
            return shape
    return profiles.model_shapes[-1]


_SIZE_RE = re.compile(r"(?:(\d+)x)?(\d+(?:\.\d+)?)([bBmM])(?![a-zA-Z])")


def params_from_model_name(model: str) -> float | None:
    """Billions of parameters from names like 'Llama-3.1-8B', 'Mixtral-8x7B', 'Qwen2.5-0.5B',
    'SmolLM-135M'; None if the name does not say. The first size token wins: in MoE names
    like 'Qwen3-30B-A3B' it is the total size, which is what memory depends on."""
    best: float | None = None
    for match in _SIZE_RE.finditer(model.rsplit("/", 1)[-1]):
        experts, number, unit = match.groups()
        value = float(number) * (int(experts) if experts else 1)
        if unit in "mM":
            value /= 1000.0
        if best is None:
            best = value
    return best


_QUANT_BYTES = {
    "awq": 0.55, "awq_marlin": 0.55, "gptq": 0.55, "gptq_marlin": 0.55,
    "bitsandbytes": 0.55, "gguf": 0.6, "fp8": 1.0, "fbgemm_fp8": 1.0,
    "compressed-tensors": 1.0, "modelopt": 1.0, "experts_int8": 1.0,
    "marlin": 0.55,
}
_DTYPE_BYTES = {"float32": 4.0, "float": 4.0, "half": 2.0, "float16": 2.0,
                "bfloat16": 2.0, "auto": 2.0}


def quantization_from_model_name(model: str) -> str | None:
    """vLLM reads the quantization from the checkpoint config; names usually tell."""
    lowered = model.lower()
    for hint in ("awq", "gptq", "fp8", "gguf"):
        if hint in lowered:
            return hint
    if "int4" in lowered or "w4a16" in lowered:
        return "gptq"
    if "int8" in lowered or "w8a8" in lowered:
        return "compressed-tensors"
    return None


def bytes_per_param(dtype: str | None, quantization: str | None) -> float:
    if quantization:
        return _QUANT_BYTES.get(quantization.lower(), 1.0)
    return _DTYPE_BYTES.get((dtype or "auto").lower(), 2.0)


def kv_bytes_per_element(kv_cache_dtype: str | None, dtype: str | None) -> float:
    kv = (kv_cache_dtype or "auto").lower()
    if kv.startswith("fp8"):
        return 1.0
    if kv == "auto":
        return 4.0 if (dtype or "").lower() in ("float32", "float") else 2.0
    return _DTYPE_BYTES.get(kv, 2.0)


def apply_overrides(base: Profiles, data: Mapping[str, Any]) -> Profiles:
    """Merge a parsed YAML profile file into the defaults. Shape:

        gpus: {NVIDIA-L4: {memory_gib: 22.5, bandwidth_gbps: 300, tflops: 121}}
        model_shapes: [{max_params_b: 10, layers: 32, kv_heads: 8, head_dim: 128}, ...]
        efficiency: {memory_bandwidth: 0.75, step_overhead_ms: 1.5, ...}

    Unknown keys raise ValueError naming the key, so typos do not pass silently."""
    unknown = set(data) - {"gpus", "model_shapes", "efficiency"}
    if unknown:
        raise ValueError(f"unknown profile keys {sorted(unknown)}; allowed: gpus, model_shapes, efficiency")
    gpus = dict(base.gpus)
    for name, values in (data.get("gpus") or {}).items():
        current = dataclasses.asdict(gpus[name]) if name in gpus else {}
        gpus[name] = GpuProfile(**{**current, **_checked(values, GpuProfile, f"gpus.{name}")})
    shapes = base.model_shapes
    if data.get("model_shapes"):
        shapes = tuple(sorted(
            (ModelShape(**_checked(s, ModelShape, "model_shapes[]")) for s in data["model_shapes"]),
            key=lambda s: s.max_params_b,
        ))
    efficiency = base.efficiency
    if data.get("efficiency"):
        efficiency = dataclasses.replace(efficiency, **_checked(data["efficiency"], Efficiency, "efficiency"))
    return Profiles(gpus=gpus, model_shapes=shapes, efficiency=efficiency)


def _checked(values: Mapping[str, Any], cls: type, where: str) -> dict[str, Any]:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return {k: float(v) if isinstance(v, (int, float)) and k not in ("layers", "kv_heads", "head_dim") else v
            for k, v in values.items()}
