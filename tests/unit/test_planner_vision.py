"""Vision-language models: tower sizes and image tokens as each model's processor computes them,
their place in the memory estimate and the plan, and the admission refusals."""

from __future__ import annotations

import pytest

from llmops.cli import main
from llmops.planner import check_fit, plan_deployment
from llmops.planner.gpus import lookup_gpu
from llmops.planner.memory import engine_settings, estimate_memory
from llmops.planner.models import MODEL_CATALOGUE, lookup_model
from llmops.planner.vision import GEMMA3, MLLAMA, QWEN2_5_VL

from test_planner_fit import deployment

QWEN_VL_3B = "hf://Qwen/Qwen2.5-VL-3B-Instruct"
QWEN_VL_7B = "hf://Qwen/Qwen2.5-VL-7B-Instruct"
GEMMA3_4B = "hf://google/gemma-3-4b-it"
LLAMA_VISION = "hf://meta-llama/Llama-3.2-11B-Vision-Instruct"
VLMS = [m for m in MODEL_CATALOGUE if m.vision]


def test_catalogue_has_the_vlms_with_their_preprocessor_sources():
    assert {m.name for m in VLMS} >= {"Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct",
                                      "google/gemma-3-4b-it", "google/gemma-3-12b-it",
                                      "meta-llama/Llama-3.2-11B-Vision-Instruct"}
    for m in VLMS:
        assert m.vision.preprocessor == f"https://huggingface.co/{m.name}/blob/main/preprocessor_config.json"
        assert m.vision.output_size == m.hidden_size, m.name  # the projector feeds the language model


@pytest.mark.parametrize("source, published_billions", [
    # the Qwen2-VL report (arXiv 2409.12191) Table 1 gives its ViT as 675M at every size; Qwen2.5-VL keeps
    # its depth and width (32 x 1280) and moves to a gated MLP with a merger per size
    (QWEN_VL_3B, 0.675), (QWEN_VL_7B, 0.675),
    # Gemma 3 technical report (arXiv 2503.19786) Table 1: vision encoder 417M (SigLIP)
    (GEMMA3_4B, 0.417), ("hf://google/gemma-3-12b-it", 0.417),
])
def test_vision_tower_parameters_match_the_published_size(source, published_billions):
    assert lookup_model(source).vision.parameters_billions == pytest.approx(published_billions, rel=0.02)


@pytest.mark.parametrize("source, total_billions", [
    # Hugging Face safetensors metadata of each repo (model card "Model size")
    (QWEN_VL_3B, 3.75), (QWEN_VL_7B, 8.29), (GEMMA3_4B, 4.3), ("hf://google/gemma-3-12b-it", 12.2),
    (LLAMA_VISION, 10.6),
])
def test_language_model_plus_tower_is_the_card_total(source, total_billions):
    from test_planner_models import dense_parameters

    model = lookup_model(source)
    assert dense_parameters(model) + model.vision.parameters == pytest.approx(total_billions * 1e9, rel=0.01)


@pytest.mark.parametrize("width, height, tokens", [
    (1280, 720, 1196),    # 1288 x 728 after rounding to 28 px: 46 x 26 merged patches
    (448, 448, 256),      # 16 x 16
    (10, 10, 4),          # scaled up to min_pixels 3136 = 56 x 56
    (8000, 8000, 16384),  # scaled down to max_pixels 12845056: 128 x 128
    (1000, 10, 20),       # the 10-px side rounds to 0, so it is scaled up to min_pixels: 560 x 28 (aspect 100 is allowed)
])
def test_qwen2_5_vl_tokens_follow_smart_resize(width, height, tokens):
    assert lookup_model(QWEN_VL_7B).vision.image_tokens(width, height) == tokens


def test_qwen2_5_vl_max_pixels_lowers_the_tokens_of_large_images_only():
    vision = lookup_model(QWEN_VL_3B).vision
    assert vision.image_tokens(1920, 1080, max_pixels=1003520) <= 1003520 // 784 < vision.image_tokens(1920, 1080)
    assert vision.image_tokens(448, 448, max_pixels=1003520) == 256
    assert vision.max_image_tokens(1003520) == 1280
    with pytest.raises(ValueError, match="aspect ratio"):
        vision.image_tokens(10_000, 20)


@pytest.mark.parametrize("width, height, tokens", [
    (560, 560, 1601), (640, 480, 2 * 1601), (1120, 1120, 4 * 1601), (4000, 300, 4 * 1601), (100, 100, 1601),
])
def test_llama_3_2_vision_tiles_of_560_px_1601_tokens_each(width, height, tokens):
    assert lookup_model(LLAMA_VISION).vision.image_tokens(width, height) == tokens


def test_gemma3_is_256_tokens_whatever_the_size():
    vision = lookup_model(GEMMA3_4B).vision
    assert {vision.image_tokens(w, h) for w, h in [(16, 16), (896, 896), (4000, 3000)]} == {256}


def _memory(source, tp=1, gpu="NVIDIA-L4", **engine):
    d = deployment(source, gpu=gpu, tp=tp, **engine)
    model = lookup_model(source)
    product = lookup_gpu(gpu)
    return model, estimate_memory(model, product, engine_settings(d.spec, model, product), tp, 1)


def test_weights_include_the_tower_split_by_tp_unless_data_parallel():
    model, one = _memory(QWEN_VL_7B, maxModelLen=8192)
    assert one.weights_gib == pytest.approx(model.parameters * 2 / 2**30, rel=0.01)
    assert one.vision.weights_gib == pytest.approx(model.vision.parameters * 2 / 2**30)
    _, two = _memory(QWEN_VL_7B, tp=2, maxModelLen=8192)
    assert two.vision.sharded and two.vision.weights_gib == pytest.approx(one.vision.weights_gib / 2)
    _, data = _memory(QWEN_VL_7B, tp=2, maxModelLen=8192, multimodal={"encoderTensorParallelMode": "data"})
    assert not data.vision.sharded and data.vision.weights_gib == pytest.approx(one.vision.weights_gib)
    assert data.weights_gib == pytest.approx(two.weights_gib + one.vision.weights_gib / 2)


def test_image_tokens_cost_kv_and_the_encoder_costs_activation_memory():
    model, full = _memory(QWEN_VL_7B, maxModelLen=8192)
    assert full.vision.largest_image_tokens == 16384
    # 16384 tokens x 28 layers x 2 x 4 KV heads x 128 x 2 bytes
    assert full.vision.kv_gib_per_largest_image == pytest.approx(16384 * 57344 / 2**30)
    _, bounded = _memory(QWEN_VL_7B, maxModelLen=8192, multimodal={"maxImagePixels": 1003520})
    assert bounded.vision.largest_image_tokens == 1280
    assert bounded.activation_gib < full.activation_gib and bounded.kv_cache_gib > full.kv_cache_gib
    _, gemma = _memory(GEMMA3_4B, maxModelLen=8192)
    assert gemma.vision.largest_image_tokens == 256


def test_text_models_are_unchanged():
    _, text = _memory("hf://meta-llama/Meta-Llama-3-8B-Instruct", maxModelLen=8192)
    assert text.vision is None and "vision" not in text.to_dict()


def _problems(source, **engine):
    return {p.path: p.message for p in check_fit(deployment(source, tp=1, maxModelLen=8192, **engine))}


def test_multimodal_on_a_text_only_model_is_refused_naming_the_field():
    problems = _problems("hf://meta-llama/Meta-Llama-3-8B-Instruct", multimodal={"imagesPerPrompt": 2})
    assert "text-only" in problems["spec.engine.multimodal"]
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in problems["spec.engine.multimodal"]  # the fix names VLMs


def test_vlm_specific_limits_are_checked_against_the_model():
    problems = _problems(GEMMA3_4B, multimodal={"videosPerPrompt": 1, "maxImagePixels": 500000})
    assert "images only" in problems["spec.engine.multimodal.videosPerPrompt"]
    assert "896x896" in problems["spec.engine.multimodal.maxImagePixels"]
    assert _problems(QWEN_VL_3B, multimodal={"imagesPerPrompt": 4, "videosPerPrompt": 1,
                                             "maxImagePixels": 1003520}) == {}


def test_llama_3_2_vision_is_refused_on_releases_without_mllama():
    problems = _problems(LLAMA_VISION)
    assert "0.10.2" in problems["spec.model.source"] and "Qwen/Qwen2.5-VL" in problems["spec.model.source"]
    assert "spec.model.source" not in _problems(LLAMA_VISION, image="vllm/vllm-openai:v0.10.1")


@pytest.mark.parametrize("field", ["imagesPerPrompt", "videosPerPrompt", "maxImagePixels"])
@pytest.mark.parametrize("value", [0, -1])
def test_zero_or_negative_limits_are_refused_naming_the_field(field, value):
    from llmops.validation import InvalidManifest, validate_manifest

    document = {"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "m"},
                "spec": {"model": {"source": QWEN_VL_3B}, "engine": {"multimodal": {field: value}}}}
    with pytest.raises(InvalidManifest) as caught:
        validate_manifest(document)
    assert [p.path for p in caught.value.problems] == [f"spec.engine.multimodal.{field}"]


def test_plan_prints_the_vision_part_on_its_own_lines(tmp_path, capsys):
    manifest = tmp_path / "vlm.yaml"
    manifest.write_text(f"""
apiVersion: llmops.io/v1alpha1
kind: LLMDeployment
metadata: {{name: camera}}
spec:
  model: {{source: {QWEN_VL_3B}}}
  engine: {{maxModelLen: 8192, multimodal: {{imagesPerPrompt: 4}}}}
  sharding: {{tensorParallelSize: 1}}
  resources: {{gpu: {{type: NVIDIA-L4}}}}
""")
    assert main(["plan", "-f", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "vision    qwen2.5-vl tower: 0.669B parameters" in out
    assert "of which vision tower (16-bit)" in out
    assert "largest image: 16,384 tokens = 576.0 MiB of KV cache" in out  # 36 layers x 2 KV heads x 128 x 2 x 2


def test_plan_json_has_the_vision_block():
    report = plan_deployment(deployment(GEMMA3_4B, tp=1, maxModelLen=8192)).to_dict()
    vision = report["plan"]["memory"]["vision"]
    assert vision["largestImageTokens"] == 256 and vision["shardedByTensorParallel"] is False
    assert vision["parametersBillions"] == pytest.approx(0.42, abs=0.005)


def test_tower_is_whole_on_each_gpu_when_its_heads_do_not_divide_by_tp():
    vision = lookup_model(QWEN_VL_7B).vision  # 16 heads
    assert vision.sharded(4) and not vision.sharded(32) and not vision.sharded(1)
    assert not vision.sharded(4, encoder_tp_mode="data")


@pytest.mark.parametrize("source, expected", [
    ("hf://Qwen/Qwen2.5-VL-7B-Instruct-AWQ", "Qwen/Qwen2.5-VL-7B-Instruct"),
    ("hf://RedHatAI/Qwen2.5-VL-3B-Instruct-FP8-Dynamic", "Qwen/Qwen2.5-VL-3B-Instruct"),
    ("hf://unsloth/gemma-3-4b-it-bnb-4bit", "google/gemma-3-4b-it"),
    ("hf://Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),  # the text model stays text
])
def test_quantized_vlm_uploads_find_their_vlm(source, expected):
    assert lookup_model(source).name == expected
