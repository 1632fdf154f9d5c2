"""The model and GPU catalogues: figures hold together, and lookups tolerate real-world names."""

from __future__ import annotations

import pytest

from llmops.api.v1alpha1 import ModelShape, ModelSpec
from llmops.planner.gpus import GPU_CATALOGUE, lookup_gpu
from llmops.planner.models import MODEL_CATALOGUE, lookup_model, resolve_model


def dense_parameters(m) -> float:
    """Parameter count of a dense decoder recomputed from its config.json figures:
    per layer q/o (hidden x heads*head_dim each), k/v (hidden x kv*head_dim each), a gated MLP
    (3 x hidden x intermediate); plus embeddings (and an untied output head)."""
    attention = 2 * m.hidden_size * m.attention_heads * m.head_dim + 2 * m.hidden_size * m.kv_heads * m.head_dim
    mlp = 3 * m.hidden_size * m.intermediate_size
    embeddings = m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)
    return m.layers * (attention + mlp) + embeddings


DENSE = [m for m in MODEL_CATALOGUE if m.intermediate_size and not m.experts and not m.mla_cache_width]


@pytest.mark.parametrize("model", DENSE, ids=lambda m: m.name)
def test_dense_parameter_counts_match_the_architecture(model):
    # A mistyped layer count, head count or hidden size moves this by far more than 2 %.
    # Vision-language models: the model card's total less the vision tower recomputed from vision_config.
    assert dense_parameters(model) == pytest.approx(model.language_parameters, rel=0.02)


def test_every_model_states_its_source_and_a_consistent_shape():
    assert len(DENSE) >= 30
    for m in MODEL_CATALOGUE:
        assert m.source == f"https://huggingface.co/{m.name}/blob/main/config.json"
        assert m.attention_heads % m.kv_heads == 0, m.name
        assert m.context_length and m.context_length >= 4096, m.name


@pytest.mark.parametrize("source, expected", [
    ("hf://meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta-Llama-3-8B"),
    ("hf://META-LLAMA/meta-llama-3-8b-instruct", "meta-llama/Meta-Llama-3-8B"),
    ("hf://casperhansen/llama-3-70b-instruct-awq", "meta-llama/Meta-Llama-3-70B"),
    ("hf://meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B"),
    ("hf://hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "meta-llama/Llama-3.1-8B"),
    ("hf://RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "meta-llama/Llama-3.3-70B-Instruct"),
    ("hf://unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "meta-llama/Llama-3.2-1B"),
    ("hf://Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "Qwen/Qwen2.5-7B-Instruct"),
    ("hf://Qwen/Qwen2.5-72B-Instruct-AWQ", "Qwen/Qwen2.5-72B-Instruct"),
    ("hf://Qwen/Qwen3-8B-FP8", "Qwen/Qwen3-8B"),
    ("hf://TheBloke/Mistral-7B-Instruct-v0.2-AWQ", "mistralai/Mistral-7B-Instruct-v0.3"),
    ("hf://mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    ("hf://google/gemma-2-9b-it", "google/gemma-2-9b-it"),
    ("hf://google/gemma-2-9b", "google/gemma-2-9b-it"),
    ("hf://deepseek-ai/DeepSeek-V2-Lite-Chat", "deepseek-ai/DeepSeek-V2-Lite"),
    ("hf://microsoft/Phi-3-mini-4k-instruct", "microsoft/Phi-3-mini-4k-instruct"),
    ("hf://microsoft/phi-4", "microsoft/phi-4"),
])
def test_lookup_by_repo_ignores_case_org_and_quantization_suffixes(source, expected):
    found = lookup_model(source)
    assert found is not None and found.name == expected


@pytest.mark.parametrize("source", [
    "hf://acme/llama-in-house-13b",
    "s3://weights/llama-3.1-70b-instruct",  # only hf:// repo ids are trusted to name a model
    "pvc://models/phi-3-mini",
    "hf://microsoft/phi-3-mini",  # ambiguous: 4k and 128k contexts differ
])
def test_unknown_sources_are_not_guessed(source):
    assert lookup_model(source) is None


def test_context_length_follows_the_variant():
    assert lookup_model("hf://microsoft/Phi-3-mini-4k-instruct").context_length == 4096
    assert lookup_model("hf://microsoft/Phi-3-mini-128k-instruct").context_length == 131072
    assert lookup_model("hf://meta-llama/Meta-Llama-3-8B").context_length == 8192
    assert lookup_model("hf://meta-llama/Llama-3.1-8B").context_length == 131072


def test_explicit_shape_wins_over_the_catalogue():
    spec = ModelSpec(
        source="hf://meta-llama/Meta-Llama-3-8B-Instruct",
        shape=ModelShape(parameters_billions=9.0, layers=40, attention_heads=40, kv_heads=8, hidden_size=5120,
                         max_context_length=4096),
    )
    model = resolve_model(spec)
    assert (model.parameters_billions, model.layers, model.head_dim, model.context_length) == (9.0, 40, 128, 4096)
    assert model.source == "spec.model.shape"


def test_shape_without_kv_heads_means_multi_head_attention():
    spec = ModelSpec(source="pvc://models/x",
                     shape=ModelShape(parameters_billions=1.0, layers=12, attention_heads=16, hidden_size=2048))
    model = resolve_model(spec)
    assert model.kv_heads == 16 and model.context_length is None


@pytest.mark.parametrize("label, product", [
    ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
    ("nvidia-a100-sxm4-80gb", "NVIDIA-A100-SXM4-80GB"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
    ("NVIDIA-A100-80GB-PCIe", "NVIDIA-A100-80GB-PCIe"),
    ("A100", "NVIDIA-A100-SXM4-40GB"),  # ambiguous: the smaller part, never over-admitting
    ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-80GB-HBM3"),
    ("H100", "NVIDIA-H100-80GB-HBM3"),
    ("NVIDIA-H100-PCIe", "NVIDIA-H100-PCIe"),
    ("NVIDIA-H100-NVL", "NVIDIA-H100-NVL"),
    ("NVIDIA-H200", "NVIDIA-H200"),
    ("NVIDIA-L4", "NVIDIA-L4"),
    ("L4", "NVIDIA-L4"),
    ("NVIDIA-L40S", "NVIDIA-L40S"),
    ("NVIDIA-L40", "NVIDIA-L40"),
    ("Tesla-T4", "Tesla-T4"),
    ("T4", "Tesla-T4"),
    ("NVIDIA-A10G", "NVIDIA-A10G"),
    ("NVIDIA-A10G-SHARED", "NVIDIA-A10G"),  # GPU feature discovery with time-slicing
    ("Tesla-V100-SXM2-32GB", "Tesla-V100-SXM2-32GB"),
    ("NVIDIA-GeForce-RTX-4090", "NVIDIA-GeForce-RTX-4090"),
    ("RTX 3090", "NVIDIA-GeForce-RTX-3090"),
    ("NVIDIA-RTX-A6000", "NVIDIA-RTX-A6000"),
    ("NVIDIA-RTX-6000-Ada-Generation", "NVIDIA-RTX-6000-Ada-Generation"),
    ("Orin", "NVIDIA-Jetson-AGX-Orin-64GB"),
])
def test_gpu_lookup_normalises_labels(label, product):
    gpu = lookup_gpu(label)
    assert gpu is not None and gpu.product == product


def test_gpu_figures():
    assert lookup_gpu("NVIDIA-L4").memory_gib == pytest.approx(22.49, abs=0.01)
    assert lookup_gpu("Tesla-T4").capability == 75
    assert lookup_gpu("NVIDIA-L40S").capability == 89
    assert lookup_gpu("NVIDIA-H200").memory_gib > 140
    assert all(g.capability >= 70 for g in GPU_CATALOGUE)


def test_mig_slice_has_the_profile_memory_and_the_parent_capability():
    gpu = lookup_gpu("NVIDIA-A100-SXM4-40GB-MIG-3g.20gb")
    assert gpu.capability == 80
    assert gpu.memory_mib == 20000


def test_unknown_gpu_is_none():
    assert lookup_gpu("NVIDIA-B9000") is None
    assert lookup_gpu("") is None
