"""vLLM release facts shared by the planner, the renderer and the simulator."""

import pytest

from llmops.planner.vllm_release import batch_defaults, image_release


@pytest.mark.parametrize("image, release", [
    ("vllm/vllm-openai:v0.33.0", (0, 33)), ("docker.io/vllm/vllm-openai:0.11.2", (0, 11)),
    ("vllm/vllm-openai:latest", None), ("vllm/vllm-openai@sha256:abc", None),
])
def test_image_release_reads_the_tag(image, release):
    assert image_release(image) == release


@pytest.mark.parametrize("memory, name, release, expected", [
    (80, "NVIDIA-A100-SXM4-80GB", (0, 33), (2048, 256)),
    (79.6, "NVIDIA-H100-80GB-HBM3", (0, 11), (8192, 1024)),
    (180, "NVIDIA-B200", (0, 11), (8192, 1024)),
    (180, "NVIDIA-B200", (0, 33), (16384, 1024)),
    (22.5, "NVIDIA-L4", None, (2048, 256)),
])
def test_batch_defaults_follow_the_gpu_and_the_release(memory, name, release, expected):
    assert batch_defaults(memory, name, release) == expected
