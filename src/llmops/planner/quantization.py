"""How many bytes a parameter takes, and which GPUs vLLM runs a quantization method on.

Bytes per parameter:
- bf16 / fp16: 2; float32: 4.
- fp8 (and 8-bit compressed-tensors / GPTQ-Int8): 1 byte per weight of the linear layers.
- AWQ / GPTQ 4-bit: 0.5 byte per weight plus, per group of 128 weights, an fp16 scale and a
  4-bit zero point: 0.5 + 2.5/128 ~ 0.52.
- bitsandbytes 4-bit: 0.5 plus an fp32 absmax per 64-weight block: 0.5 + 4/64 ~ 0.56.
- GGUF: ~4.5 bits (Q4_K_M-class) for every tensor, embeddings included.
Quantizers other than GGUF leave the token embedding and the output head in 16 bits, which
matters for small models with large vocabularies (Qwen2.5-0.5B: 28% of its parameters).

Minimum compute capability: each vLLM QuantizationConfig's get_min_capability() (vLLM
v0.11, vllm/model_executor/layers/quantization/*.py): awq 75, gptq 60, gguf 60,
bitsandbytes 70, compressed-tensors 70, fp8 80, awq_marlin 80, gptq_marlin 80. vLLM refuses
to start below it ("The quantization method ... is not supported for the current GPU").
fp8 runs natively (W8A8) from 8.9 (Ada, Hopper) and as weight-only W8A16 through Marlin
kernels on 8.0-8.6 (Ampere), which is why its minimum is 8.0 - so fp8 on a T4 (7.5) or V100
(7.0) is refused.
"""

from __future__ import annotations


from dataclasses import dataclass
from typing import Optional

from llmops.api.v1alpha1 import LLMDeploymentSpec, QuantizationMethod
from llmops.planner.vllm_release import image_release

GROUP_SCALE_OVERHEAD = 2.5 / 128  # fp16 scale + 4-bit zero per 128-weight group
FOUR_BIT_GROUPED = 0.5 + GROUP_SCALE_OVERHEAD
EIGHT_BIT_GROUPED = 1.0 + 3.0 / 128  # fp16 scale + 8-bit zero per group
BNB_FOUR_BIT = 0.5 + 4 / 64
GGUF_BYTES = 4.5 / 8

MIN_CAPABILITY: dict[str, int] = {
    "awq": 75,
    "gptq": 60,
    "gguf": 60,
    "bitsandbytes": 70,
    "compressed-tensors": 70,
    "fp8": 80,
    "awq_marlin": 80,
    "gptq_marlin": 80,
}


@dataclass(frozen=True)
class WeightFormat:
    name: str  # shown to users, e.g. "awq 4-bit"
    linear_bytes: float  # per parameter of the (quantized) transformer layers
    embedding_bytes: float  # per parameter of the token embedding / output head
    activation_bytes: int  # activations, and the KV cache when kvCacheDtype is auto
    method: Optional[str] = None  # vLLM --quantization name; None = plain dtype
    chosen_by: str = "spec.engine.dtype"  # the wire path that decided it

    @property
    def min_capability(self) -> Optional[int]:
        return MIN_CAPABILITY.get(self.method) if self.method else None


def _source_suffix_method(source: str) -> Optional[tuple[str, int]]:
    """(method, bits) a quantized re-upload's name announces (vLLM reads it from its config)."""
    name = source.rstrip("/").rsplit("/", 1)[-1].lower()
    if "gguf" in name:
        return "gguf", 4
    if "awq" in name:
        return "awq", 4
    if "gptq" in name:
        return "gptq", 8 if ("int8" in name or "8bit" in name) else 4
    if "bnb" in name or name.endswith("-nf4"):
        return "bitsandbytes", 8 if "8bit" in name else 4
    if "fp8" in name:
        return "fp8", 8
    if "w4a16" in name or name.endswith("-int4"):
        return "compressed-tensors", 4
    if "w8a8" in name or "w8a16" in name or name.endswith("-int8"):
        return "compressed-tensors", 8
    return None


def _activation_bytes(dtype: Optional[str]) -> int:
    return 4 if dtype in ("float32", "float") else 2


def weight_format(spec: LLMDeploymentSpec) -> WeightFormat:
    """The storage format vLLM will load: the explicit quantization method, else what the
    repo name announces (vLLM picks it up from the checkpoint's config), else the dtype."""
    method = spec.quantization.method
    announced = _source_suffix_method(spec.model.source)
    act = _activation_bytes(spec.engine.dtype)
    if method != QuantizationMethod.none:
        name = method.value
        bits = announced[1] if announced and announced[0] in (name, name.split("_")[0]) else None
        return _quantized(name, bits, act, "spec.quantization.method")
    if announced:
        return _quantized(announced[0], announced[1], act, "spec.model.source")
    if act == 4:
        return WeightFormat("float32", 4.0, 4.0, 4)
    label = {"half": "fp16", "float16": "fp16", "bfloat16": "bf16"}.get(spec.engine.dtype or "", "bf16/fp16")
    return WeightFormat(label, 2.0, 2.0, 2)


def _quantized(method: str, bits: Optional[int], act: int, chosen_by: str) -> WeightFormat:
    if method == "fp8":
        return WeightFormat("fp8", 1.0, 2.0, act, method, chosen_by)
    if method == "gguf":
        return WeightFormat("gguf ~4.5-bit", GGUF_BYTES, GGUF_BYTES, act, method, chosen_by)
    if method == "bitsandbytes":
        per = 1.0 if bits == 8 else BNB_FOUR_BIT
        return WeightFormat(f"bitsandbytes {bits or 4}-bit", per, 2.0, act, method, chosen_by)
    if method == "compressed-tensors":
        # Unannounced compressed-tensors checkpoints are taken as 8-bit: the larger estimate.
        per = FOUR_BIT_GROUPED if bits == 4 else 1.0
        return WeightFormat(f"compressed-tensors {bits or 8}-bit", per, 2.0, act, method, chosen_by)
    # awq, gptq and their marlin kernels: group-quantized integers, 4-bit unless announced 8.
    per = EIGHT_BIT_GROUPED if bits == 8 else FOUR_BIT_GROUPED
    return WeightFormat(f"{method} {bits or 4}-bit", per, 2.0, act, method, chosen_by)


def kv_cache_bytes(spec: LLMDeploymentSpec, fmt: WeightFormat) -> float:
    """Bytes per KV-cache element: fp8 variants take 1, auto follows the activation dtype."""
    kv = (spec.engine.kv_cache_dtype or "auto").lower()
    if kv.startswith("fp8") or kv in ("int8", "fp8_inc"):
        return 1.0
    if kv in ("bfloat16", "float16", "half"):
        return 2.0
    if kv in ("float32", "float"):
        return 4.0
    return float(fmt.activation_bytes)


# Methods a vLLM release no longer accepts for --quantization: (method, first release without
# it). 0.33's QuantizationMethods (vllm/model_executor/layers/quantization/__init__.py)
# lists neither; 0.11's lists both. Releases in between were not read, so they pass.
REMOVED_METHODS = {"bitsandbytes": (0, 33), "gguf": (0, 33)}

def removed_method_message(spec: LLMDeploymentSpec) -> Optional[str]:
    """Why the image's vLLM release cannot run spec.quantization.method, or None."""
    method = spec.quantization.method.value
    release = image_release(spec.engine.image)
    removed_in = REMOVED_METHODS.get(method)
    if removed_in is None or release is None or release < removed_in:
        return None
    return (f"vLLM {release[0]}.{release[1]} ({spec.engine.image}) has no --quantization {method} (gone since "
            f"{removed_in[0]}.{removed_in[1]}). Fix: use a quantized checkpoint vLLM still loads (awq, gptq, "
            "compressed-tensors, fp8), or pin spec.engine.image to vllm/vllm-openai:v0.11.0")
