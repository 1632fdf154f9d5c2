"""spec.engine.multimodal becomes vLLM's own flags, spelled as both pinned releases parse them."""

from __future__ import annotations

import json

import pytest

from llmops.api.v1alpha1 import MultimodalSpec
from llmops.render.multimodal import multimodal_args
from llmops.validation import InvalidManifest, validate_manifest


def test_no_block_no_flags():
    assert multimodal_args(None) == [] and multimodal_args(MultimodalSpec()) == []


def test_limits_are_one_json_object_per_modality():
    args = multimodal_args(MultimodalSpec(images_per_prompt=4, videos_per_prompt=1))
    assert args[0] == "--limit-mm-per-prompt" and json.loads(args[1]) == {"image": 4, "video": 1}
    assert multimodal_args(MultimodalSpec(images_per_prompt=2)) == ["--limit-mm-per-prompt", '{"image":2}']


def test_pixels_cache_and_encoder_mode():
    args = multimodal_args(MultimodalSpec(max_image_pixels=1003520, processor_cache_gib=0,
                                          encoder_tensor_parallel_mode="data"))
    assert args == ["--mm-processor-kwargs", '{"max_pixels":1003520}', "--mm-processor-cache-gb", "0",
                    "--mm-encoder-tp-mode", "data"]


@pytest.mark.parametrize("flag", ["--limit-mm-per-prompt", "--mm-processor-kwargs", "--mm-encoder-tp-mode"])
def test_the_flags_are_refused_in_extra_args(flag):
    document = {"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "m"},
                "spec": {"model": {"source": "hf://Qwen/Qwen2.5-VL-3B-Instruct"},
                         "engine": {"extraArgs": [f"{flag}=x"]}}}
    with pytest.raises(InvalidManifest) as caught:
        validate_manifest(document)
    assert "spec.engine.multimodal" in str(caught.value.problems[0])


def test_unknown_encoder_mode_is_refused_naming_the_field():
    document = {"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "m"},
                "spec": {"model": {"source": "hf://Qwen/Qwen2.5-VL-3B-Instruct"},
                         "engine": {"multimodal": {"encoderTensorParallelMode": "pipeline"}}}}
    with pytest.raises(InvalidManifest) as caught:
        validate_manifest(document)
    assert caught.value.problems[0].path == "spec.engine.multimodal.encoderTensorParallelMode"
