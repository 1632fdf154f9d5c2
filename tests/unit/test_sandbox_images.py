import pytest

from llmops.sandbox.images import (
    ImageFileError, UnknownImage, container_argv, default_images_text, normalize_image, parse_images,
)

RULES = parse_images(default_images_text())
PY = "/venv/bin/python"


def test_vllm_image_runs_the_simulator_with_vllm_args():
    argv = container_argv("vllm/vllm-openai:v0.6.3", None, ["--model", "m", "--port", "8000"], RULES, PY)
    assert argv == [PY, "-m", "llmops.cli", "sim", "serve", "--model", "m", "--port", "8000"]


def test_the_images_own_entrypoint_is_stripped():
    argv = container_argv("docker.io/vllm/vllm-openai:latest", ["vllm", "serve"], ["m", "--port", "8000"], RULES, PY)
    assert argv[5:] == ["m", "--port", "8000"]
    argv = container_argv("vllm/vllm-openai:x", ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                          ["--model", "m"], RULES, PY)
    assert argv[5:] == ["--model", "m"]


def test_operator_and_sim_images():
    assert container_argv("llmops/operator:0.1", None, ["run", "--namespace", "x"], RULES, PY) == \
        [PY, "-m", "llmops.cli", "run", "--namespace", "x"]
    assert container_argv("llmops/vllm-sim", None, ["--model", "m"], RULES, PY)[:5] == [PY, "-m", "llmops.cli", "sim", "serve"]


def test_host_image_runs_the_container_command_as_is():
    assert container_argv("llmops/host:1", ["sh", "-c"], ["exit 3"], RULES, PY) == ["sh", "-c", "exit 3"]
    with pytest.raises(UnknownImage, match="has none"):
        container_argv("llmops/host:1", None, None, RULES, PY)


def test_unknown_image_has_an_actionable_message():
    with pytest.raises(UnknownImage, match="not known to the llmops sandbox.*images.yaml"):
        container_argv("nginx:1.25", None, None, RULES, PY)


def test_normalize_image():
    assert normalize_image("vllm/vllm-openai") == "vllm/vllm-openai:latest"
    assert normalize_image("docker.io/library/busybox") == "busybox:latest"
    assert normalize_image("reg:5000/a/b@sha256:abc") == "reg:5000/a/b:latest"
    assert normalize_image("reg:5000/a/b:1") == "reg:5000/a/b:1"


@pytest.mark.parametrize("text, match", [
    ("images: []", "non-empty list"),
    ("images: [{command: [x]}]", r"images\[0\].image"),
    ("images: [{image: 'a:*'}]", r"images\[0\].command"),
])
def test_bad_image_files(text, match):
    with pytest.raises(ImageFileError, match=match):
        parse_images(text)
