"""Model catalogue: the architecture figures the fit check needs, for popular open models.

Every figure comes from the model's `config.json` on its Hugging Face page (the `source`
column: https://huggingface.co/<repo>/blob/main/config.json) - num_hidden_layers,
num_attention_heads, num_key_value_heads, hidden_size, head_dim (when the config sets it),
max_position_embeddings, vocab_size, tie_word_embeddings, intermediate_size - and the parameter
count from the model card. tests/unit/test_planner_models.py recomputes each dense model's
parameter count from these figures, so a mistyped figure fails a test.

Models are found by their Hugging Face repo id in `spec.model.source` (hf://ORG/NAME),
case-insensitively and ignoring the organisation (quantized re-uploads live under other orgs),
after dropping quantization suffixes (-AWQ, -GPTQ-Int4, -FP8, ...) and instruction-tuning
suffixes (-Instruct, -it, -chat), which do not change the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from llmops.api.v1alpha1 import ModelShape, ModelSpec
from llmops.planner.vision import GEMMA3, MLLAMA, QWEN2_5_VL, VisionTower


@dataclass(frozen=True)
class ModelInfo:
    name: str
    parameters_billions: float  # total; for mixture-of-experts every expert is resident
    layers: int
    attention_heads: int
    kv_heads: int
    hidden_size: int
    head_dim: int
    context_length: Optional[int]  # max_position_embeddings: vLLM's default --max-model-len
    vocab_size: Optional[int] = None
    tied_embeddings: bool = False
    intermediate_size: Optional[int] = None
    experts: Optional[int] = None  # mixture-of-experts: routed experts per layer
    # Multi-head latent attention (DeepSeek-V2/V3) caches one compressed vector per token and
    # layer (kv_lora_rank + qk_rope_head_dim wide) instead of K and V per KV head.
    mla_cache_width: Optional[int] = None
    source: str = ""
    aliases: tuple[str, ...] = field(default=(), compare=False)
    vision: Optional[VisionTower] = None  # vision-language models: the image encoder and projector

    @property
    def multimodal(self) -> bool:
        return self.vision is not None

    @property
    def language_parameters(self) -> float:
        """Everything but the vision tower (parameters_billions counts both, as model cards do)."""
        return self.parameters - (self.vision.parameters if self.vision else 0.0)

    @property
    def parameters(self) -> float:
        return self.parameters_billions * 1e9

    @property
    def embedding_parameters(self) -> float:
        """Input embedding plus output head (one matrix when tied); quantizers keep them 16-bit."""
        if self.vocab_size is None:
            return 0.0
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)


def _hf(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


def _model(repo: str, params: float, layers: int, heads: int, kv: int, hidden: int, context: int, *,
           head_dim: Optional[int] = None, vocab: Optional[int] = None, tied: bool = False,
           intermediate: Optional[int] = None, experts: Optional[int] = None,
           mla: Optional[int] = None, aliases: tuple[str, ...] = (),
           vision: Optional[VisionTower] = None) -> ModelInfo:
    return ModelInfo(
        name=repo, parameters_billions=params, layers=layers, attention_heads=heads, kv_heads=kv,
        hidden_size=hidden, head_dim=head_dim or hidden // heads, context_length=context,
        vocab_size=vocab, tied_embeddings=tied, intermediate_size=intermediate, experts=experts,
        mla_cache_width=mla, source=_hf(repo), aliases=aliases, vision=vision,
    )


def _preprocessor(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/preprocessor_config.json"


def _qwen2_5_vl_tower(repo: str, output_size: int) -> VisionTower:
    # config.json vision_config: depth 32, hidden_size 1280, intermediate_size 3420, num_heads 16,
    # patch_size 14, spatial_merge_size 2, temporal_patch_size 2, out_hidden_size = the LM's hidden;
    # preprocessor_config.json: min_pixels 3136, max_pixels 12845056.
    # Verified against public copies (2026-12): 3B config.json in zhanggaojian/Qwen2.5-VL-3B-LLMQ_Samples
    # models/Qwen2.5-VL-3B-Instruct/config.json; 7B config.json in Harrison-HXLiu/vlm_api_test
    # models/Qwen2.5-VL-7B-Instruct/config.json, its module print (merger 5120 -> 3584, 32 blocks)
    # in acproject/duorou docs/qwen2.5vl_graph.md; 7B preprocessor_config.json in
    # remodlai/qwen-2.5-vl-7b-instruct-lexiq preprocessor_config.json, the same figures in the
    # processor print of Jeremy-lf/MLLM-Application Qwen-02.md. No public copy of the 3B's
    # preprocessor_config.json was found: its pixel bounds are assumed equal to the 7B's (unverified).
    return VisionTower(family=QWEN2_5_VL, layers=32, hidden_size=1280, intermediate_size=3420, heads=16,
                       patch_size=14, output_size=output_size, merge_size=2, temporal_patch_size=2,
                       min_pixels=3136, max_pixels=12845056, preprocessor=_preprocessor(repo))


def _gemma3_tower(repo: str, output_size: int) -> VisionTower:
    # config.json vision_config (SigLIP so400m): num_hidden_layers 27, hidden_size 1152,
    # intermediate_size 4304, num_attention_heads 16, image_size 896, patch_size 14;
    # mm_tokens_per_image 256. Verified (2026-12) against copies of the 4B / 12B configs quoted in
    # public code (found by exact string, repository not named by the index) and transformers 5.17.0
    # configuration_gemma3.py (mm_tokens_per_image 256); preprocessor_config.json copies quoted in
    # public code agree: size 896x896, image_seq_length 256, do_pan_and_scan null. vLLM's gemma3_mm.py
    # counts (num_crops + 1) * image_seq_length, num_crops 0 without pan-and-scan.
    return VisionTower(family=GEMMA3, layers=27, hidden_size=1152, intermediate_size=4304, heads=16,
                       patch_size=14, output_size=output_size, image_size=896, tokens_per_image=256,
                       preprocessor=_preprocessor(repo))


# config.json vision_config: num_hidden_layers 32, num_global_layers 8, hidden_size 1280,
# intermediate_size 5120, attention_heads 16, image_size 560, patch_size 14, max_num_tiles 4,
# vision_output_dim 7680. vLLM dropped MllamaForConditionalGeneration in 0.10.2
# (vllm/model_executor/models/registry.py, _PREVIOUSLY_SUPPORTED_MODELS), so 0.11 and 0.33 refuse it.
# Verified (2026-12): vision_config and preprocessor_config.json (size 560x560, max_image_tiles 4)
# quoted in danbev/learning-ai notes/llama.cpp/llama-3-2-vision.md; 1601 tokens a tile is
# transformers 5.17.0 modeling_mllama.py num_patches = (image_size // patch_size) ** 2 + 1.
_MLLAMA_TOWER = VisionTower(family=MLLAMA, layers=32, global_layers=8, hidden_size=1280, intermediate_size=5120,
                            heads=16, patch_size=14, output_size=4096, image_size=560, max_tiles=4,
                            projector_input=7680, removed_in_vllm=(0, 11),
                            preprocessor=_preprocessor("meta-llama/Llama-3.2-11B-Vision-Instruct"))


# repo, params (B), layers, attention heads, KV heads, hidden size, context length, extras.
MODEL_CATALOGUE: tuple[ModelInfo, ...] = (
    # Llama 3 / 3.1 / 3.2 / 3.3 (vocab 128256; 3.2 1B/3B tie embeddings)
    _model("meta-llama/Meta-Llama-3-8B", 8.03, 32, 32, 8, 4096, 8192, vocab=128256, intermediate=14336),
    _model("meta-llama/Meta-Llama-3-70B", 70.6, 80, 64, 8, 8192, 8192, vocab=128256, intermediate=28672),
    _model("meta-llama/Llama-3.1-8B", 8.03, 32, 32, 8, 4096, 131072, vocab=128256, intermediate=14336,
           aliases=("meta-llama-3.1-8b",)),
    _model("meta-llama/Llama-3.1-70B", 70.6, 80, 64, 8, 8192, 131072, vocab=128256, intermediate=28672,
           aliases=("meta-llama-3.1-70b",)),
    _model("meta-llama/Llama-3.1-405B", 405.9, 126, 128, 8, 16384, 131072, vocab=128256, intermediate=53248,
           aliases=("meta-llama-3.1-405b",)),
    _model("meta-llama/Llama-3.2-1B", 1.24, 16, 32, 8, 2048, 131072, vocab=128256, tied=True, intermediate=8192),
    _model("meta-llama/Llama-3.2-3B", 3.21, 28, 24, 8, 3072, 131072, vocab=128256, tied=True, intermediate=8192),
    _model("meta-llama/Llama-3.3-70B-Instruct", 70.6, 80, 64, 8, 8192, 131072, vocab=128256, intermediate=28672),
    # Qwen2.5 (the -Instruct configs, max_position_embeddings 32768; YaRN extends it on request)
    _model("Qwen/Qwen2.5-0.5B-Instruct", 0.49, 24, 14, 2, 896, 32768, vocab=151936, tied=True, intermediate=4864),
    _model("Qwen/Qwen2.5-1.5B-Instruct", 1.54, 28, 12, 2, 1536, 32768, vocab=151936, tied=True, intermediate=8960),
    _model("Qwen/Qwen2.5-3B-Instruct", 3.09, 36, 16, 2, 2048, 32768, vocab=151936, tied=True, intermediate=11008),
    _model("Qwen/Qwen2.5-7B-Instruct", 7.61, 28, 28, 4, 3584, 32768, vocab=152064, intermediate=18944),
    _model("Qwen/Qwen2.5-14B-Instruct", 14.7, 48, 40, 8, 5120, 32768, vocab=152064, intermediate=13824),
    _model("Qwen/Qwen2.5-32B-Instruct", 32.5, 64, 40, 8, 5120, 32768, vocab=152064, intermediate=27648),
    _model("Qwen/Qwen2.5-72B-Instruct", 72.7, 80, 64, 8, 8192, 32768, vocab=152064, intermediate=29568),
    # Qwen3 (head_dim 128 is set explicitly and differs from hidden/heads for several sizes)
    _model("Qwen/Qwen3-0.6B", 0.6, 28, 16, 8, 1024, 40960, head_dim=128, vocab=151936, tied=True, intermediate=3072),
    _model("Qwen/Qwen3-1.7B", 1.7, 28, 16, 8, 2048, 40960, head_dim=128, vocab=151936, tied=True, intermediate=6144),
    _model("Qwen/Qwen3-4B", 4.0, 36, 32, 8, 2560, 40960, head_dim=128, vocab=151936, tied=True, intermediate=9728),
    _model("Qwen/Qwen3-8B", 8.2, 36, 32, 8, 4096, 40960, head_dim=128, vocab=151936, intermediate=12288),
    _model("Qwen/Qwen3-14B", 14.8, 40, 40, 8, 5120, 40960, head_dim=128, vocab=151936, intermediate=17408),
    _model("Qwen/Qwen3-32B", 32.8, 64, 64, 8, 5120, 40960, head_dim=128, vocab=151936, intermediate=25600),
    _model("Qwen/Qwen3-30B-A3B", 30.5, 48, 32, 4, 2048, 40960, head_dim=128, vocab=151936, experts=128),
    _model("Qwen/Qwen3-235B-A22B", 235.1, 94, 64, 4, 4096, 40960, head_dim=128, vocab=151936, experts=128),
    # Mistral / Mixtral (Mixtral is mixture-of-experts: all 8 experts are resident)
    _model("mistralai/Mistral-7B-Instruct-v0.3", 7.25, 32, 32, 8, 4096, 32768, vocab=32768, intermediate=14336,
           aliases=("mistral-7b-v0.1", "mistral-7b-v0.2", "mistral-7b")),
    _model("mistralai/Mistral-Nemo-Instruct-2407", 12.2, 40, 32, 8, 5120, 1024000, head_dim=128, vocab=131072,
           intermediate=14336, aliases=("mistral-nemo-base-2407", "mistral-nemo")),
    _model("mistralai/Mistral-Small-24B-Instruct-2501", 23.6, 40, 32, 8, 5120, 32768, head_dim=128, vocab=131072,
           intermediate=32768, aliases=("mistral-small-24b-base-2501",)),
    _model("mistralai/Mixtral-8x7B-Instruct-v0.1", 46.7, 32, 32, 8, 4096, 32768, vocab=32000, experts=8,
           aliases=("mixtral-8x7b",)),
    _model("mistralai/Mixtral-8x22B-Instruct-v0.1", 140.6, 56, 48, 8, 6144, 65536, vocab=32768, experts=8,
           aliases=("mixtral-8x22b",)),
    # Gemma 2 (head_dim 256 for 2B/9B; tied embeddings, vocab 256000)
    _model("google/gemma-2-2b-it", 2.61, 26, 8, 4, 2304, 8192, head_dim=256, vocab=256000, tied=True,
           intermediate=9216),
    _model("google/gemma-2-9b-it", 9.24, 42, 16, 8, 3584, 8192, head_dim=256, vocab=256000, tied=True,
           intermediate=14336),
    _model("google/gemma-2-27b-it", 27.2, 46, 32, 16, 4608, 8192, head_dim=128, vocab=256000, tied=True,
           intermediate=36864),
    # DeepSeek: R1 distills keep their Qwen2.5 / Llama bases' shapes; V2-Lite uses MLA (512 + 64)
    _model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 1.78, 28, 12, 2, 1536, 131072, vocab=151936,
           intermediate=8960),
    _model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 7.62, 28, 28, 4, 3584, 131072, vocab=152064,
           intermediate=18944),
    _model("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", 14.8, 48, 40, 8, 5120, 131072, vocab=152064,
           intermediate=13824),
    _model("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32.8, 64, 40, 8, 5120, 131072, vocab=152064,
           intermediate=27648),
    _model("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", 8.03, 32, 32, 8, 4096, 131072, vocab=128256,
           intermediate=14336),
    _model("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", 70.6, 80, 64, 8, 8192, 131072, vocab=128256,
           intermediate=28672),
    _model("deepseek-ai/DeepSeek-V2-Lite", 15.7, 27, 16, 16, 2048, 163840, vocab=102400, experts=64, mla=576),
    # Phi-3 / 3.5 / 4
    _model("microsoft/Phi-3-mini-4k-instruct", 3.82, 32, 32, 32, 3072, 4096, vocab=32064, intermediate=8192),
    _model("microsoft/Phi-3-mini-128k-instruct", 3.82, 32, 32, 32, 3072, 131072, vocab=32064, intermediate=8192),
    _model("microsoft/Phi-3.5-mini-instruct", 3.82, 32, 32, 32, 3072, 131072, vocab=32064, intermediate=8192),
    _model("microsoft/Phi-3-medium-4k-instruct", 14.0, 40, 40, 10, 5120, 4096, vocab=32064, intermediate=17920),
    _model("microsoft/Phi-3-medium-128k-instruct", 14.0, 40, 40, 10, 5120, 131072, vocab=32064, intermediate=17920),
    _model("microsoft/phi-4", 14.7, 40, 40, 10, 5120, 16384, vocab=100352, intermediate=17920),
    _model("microsoft/Phi-4-mini-instruct", 3.84, 32, 24, 8, 3072, 131072, vocab=200064, tied=True,
           intermediate=8192),
    # Vision-language models: the language model's figures are config.json's text part (top level for
    # Qwen2.5-VL, text_config for Gemma 3 and Llama 3.2 Vision); parameters are the model card's total,
    # vision tower included.
    # Qwen2.5-VL-3B total: model.safetensors.index.json total_size 7509245952 bytes of bf16 = 3.755B
    # (zhanggaojian/Qwen2.5-VL-3B-LLMQ_Samples models/Qwen2.5-VL-3B-Instruct/model.safetensors.index.json).
    _model("Qwen/Qwen2.5-VL-3B-Instruct", 3.75, 36, 16, 2, 2048, 128000, vocab=151936, tied=True,
           intermediate=11008, vision=_qwen2_5_vl_tower("Qwen/Qwen2.5-VL-3B-Instruct", 2048)),
    _model("Qwen/Qwen2.5-VL-7B-Instruct", 8.29, 28, 28, 4, 3584, 128000, vocab=152064, intermediate=18944,
           vision=_qwen2_5_vl_tower("Qwen/Qwen2.5-VL-7B-Instruct", 3584)),
    # Gemma 3: config.json's text_config sets only hidden/intermediate/layers (and heads/KV for 12B); the
    # rest are transformers' Gemma3TextConfig defaults (5.17.0: vocab 262208, 8 heads, 4 KV heads,
    # head_dim 256, max_position_embeddings 131072, tied). The text-only counts in keras-team/keras-hub
    # keras_hub/src/models/gemma3/gemma3_presets.py (3,880,099,328 and 11,765,788,416) match the
    # language part recomputed here to 0.01 %.
    _model("google/gemma-3-4b-it", 4.3, 34, 8, 4, 2560, 131072, head_dim=256, vocab=262208, tied=True,
           intermediate=10240, vision=_gemma3_tower("google/gemma-3-4b-it", 2560)),
    _model("google/gemma-3-12b-it", 12.2, 48, 16, 8, 3840, 131072, head_dim=256, vocab=262208, tied=True,
           intermediate=15360, vision=_gemma3_tower("google/gemma-3-12b-it", 3840)),
    # num_hidden_layers 40 counts the 8 cross-attention layers (cross_attention_layers 3, 8, ..., 38),
    # whose projections have the self-attention layers' shapes. text_config figures checked against
    # config dumps quoted in public code (found by exact string; no repository-named config.json
    # copy was found, so one independent copy only). The 10.6B total is the model card's and is not
    # checked against a safetensors index (unverified); the figures here recompute to 10.67B.
    _model("meta-llama/Llama-3.2-11B-Vision-Instruct", 10.6, 40, 32, 8, 4096, 131072, vocab=128256,
           intermediate=14336, vision=_MLLAMA_TOWER, aliases=("llama-3.2-11b-vision",)),
)

# Suffixes of quantized re-uploads (longest first so -GPTQ-Int4 goes before -Int4).
QUANT_SUFFIXES = (
    "-quantized.w4a16", "-quantized.w8a8", "-quantized.w8a16",
    "-awq-int4", "-awq-4bit", "-gptq-int4", "-gptq-int8", "-gptq-4bit", "-gptq-8bit",
    "-fp8-dynamic", "-fp8-kv", "-unsloth-bnb-4bit", "-bnb-4bit", "-bnb-8bit",
    "-w4a16", "-w8a8", "-w8a16", "-int4", "-int8", "-4bit", "-8bit",
    "-awq", "-gptq", "-fp8", "-gguf", "-marlin", "-nf4", "-exl2",
)
_TUNING_WORDS = ("instruct", "chat", "it", "base", "hf")


def _normalise(name: str) -> str:
    return name.strip().lower()


def _strip_quant(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for suffix in QUANT_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                changed = True
    return name


def _strip_tuning(name: str) -> str:
    parts = [p for p in name.split("-") if p not in _TUNING_WORDS]
    return "-".join(parts)


def _keys(name: str) -> list[str]:
    """Lookup keys for a model name, most specific first."""
    name = _normalise(name)
    keys = [name]
    for candidate in (_strip_quant(name),):
        keys.append(candidate)
        keys.append(_strip_tuning(candidate))
        if candidate.startswith("meta-llama-"):
            keys.append(_strip_tuning(candidate[len("meta-"):]))
    seen: list[str] = []
    for key in keys:
        if key and key not in seen:
            seen.append(key)
    return seen


_INDEX: dict[str, ModelInfo] = {}
for _info in MODEL_CATALOGUE:
    _repo_name = _info.name.split("/", 1)[1]
    for _name in (_repo_name, *_info.aliases):
        for _k in _keys(_name):
            _INDEX.setdefault(_k, _info)


def hf_repo(source: str) -> Optional[str]:
    """ORG/NAME of an hf:// source, else None."""
    if not source.lower().startswith("hf://"):
        return None
    parts = source[5:].split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else None


def lookup_model(source: str) -> Optional[ModelInfo]:
    """The catalogue entry for an hf://ORG/NAME source (or a bare repo id), None if unknown."""
    repo = hf_repo(source) if "://" in source else source
    if not repo:
        return None
    name = repo.split("/")[-1]
    for key in _keys(name):
        if key in _INDEX:
            return _INDEX[key]
    return None


def model_from_shape(shape: ModelShape, name: str) -> ModelInfo:
    # `headDim` is read when ModelShape has it (Qwen3, Gemma 2 set head_dim != hidden/heads).
    head_dim = getattr(shape, "head_dim", None) or shape.hidden_size // shape.attention_heads
    return ModelInfo(
        name=name,
        parameters_billions=shape.parameters_billions,
        layers=shape.layers,
        attention_heads=shape.attention_heads,
        kv_heads=shape.kv_heads or shape.attention_heads,
        hidden_size=shape.hidden_size,
        head_dim=head_dim,
        context_length=shape.max_context_length,
        source="spec.model.shape",
    )


def resolve_model(model: ModelSpec) -> Optional[ModelInfo]:
    """The figures the planner uses: spec.model.shape when given (the user knows best),
    else the catalogue entry for the source; None when neither is available."""
    if model.shape is not None:
        return model_from_shape(model.shape, model.source)
    return lookup_model(model.source)
