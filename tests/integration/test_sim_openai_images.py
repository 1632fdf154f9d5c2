"""Image chat requests from the official `openai` client to the simulator, per emulated release:
image tokens as the model's processor counts them in the usage, vLLM's limit and data-URL errors,
its multimodal cache metrics where the release has them, and text requests unchanged."""

import urllib.request

import openai
import pytest

from llmops_load.images import image_part
from llmops.planner.models import lookup_model
from llmops_sim.process import start_sim
from llmops_sim.releases import RELEASES

EMULATED = sorted(v for v in RELEASES if v != "0.8.5")
QWEN_VL = lookup_model("Qwen/Qwen2.5-VL-3B-Instruct").vision
QUESTION = "What is in this picture?"


@pytest.fixture(scope="module", params=EMULATED)
def vlm(request):
    process = start_sim(["Qwen/Qwen2.5-VL-3B-Instruct", "--served-model-name", "vl", "--max-model-len", "16384",
                         "--limit-mm-per-prompt", '{"image": 2}', "--mm-processor-kwargs", '{"max_pixels": 1003520}'],
                        env={"LLMOPS_SIM_VLLM_VERSION": request.param, "LLMOPS_SIM_SPEED": "20",
                             "LLMOPS_SIM_GPU": "NVIDIA-L4"})
    process.wait_ready()
    with openai.OpenAI(base_url=process.url + "/v1", api_key="unused", max_retries=0, timeout=20) as client:
        client.sim_url, client.release = process.url, request.param
        yield client
    process.stop()


def ask(client, *parts, model="vl"):
    content = [{"type": "text", "text": QUESTION}, *parts]
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                          max_tokens=4, extra_body={"ignore_eos": True})


def test_image_tokens_are_counted_as_the_processor_does(vlm):
    text_only = vlm.chat.completions.create(model="vl", messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=4, extra_body={"ignore_eos": True})
    reply = ask(vlm, image_part(1280, 720), image_part(640, 480, variant=1))
    assert reply.object == "chat.completion" and reply.choices[0].message.content
    assert reply.usage.completion_tokens == 4
    expected = QWEN_VL.image_tokens(1280, 720, 1003520) + QWEN_VL.image_tokens(640, 480, 1003520)
    assert expected == 1196 + 391
    assert reply.usage.prompt_tokens - text_only.usage.prompt_tokens == expected


def test_max_pixels_from_the_processor_kwargs_bounds_large_images(vlm):
    reply = ask(vlm, image_part(3840, 2160))
    base = ask(vlm).usage.prompt_tokens
    assert reply.usage.prompt_tokens - base == QWEN_VL.image_tokens(3840, 2160, 1003520) <= 1280


def test_http_images_are_not_fetched_and_get_the_default_size(vlm):
    remote = {"type": "image_url", "image_url": {"url": "https://example.invalid/camera.jpg"}}
    assert ask(vlm, remote).usage.prompt_tokens - ask(vlm).usage.prompt_tokens == 1196  # 1280x720


def test_over_the_limit_is_vllms_error(vlm):
    with pytest.raises(openai.BadRequestError) as refused:
        ask(vlm, *(image_part(64, 64, variant=i) for i in range(3)))
    error = refused.value  # the client's .body is vLLM's {"message", "type", "param", "code"}
    assert error.status_code == 400 and error.body["type"] == "BadRequestError"
    if vlm.release == "0.33.0":
        assert error.body["message"] == "At most 2 image(s) may be provided in one prompt. (parameter=image)"
        assert error.param == "image"
    else:
        assert error.body["message"] == "At most 2 image(s) may be provided in one prompt."
        assert error.param is None


@pytest.mark.parametrize("url, message", [
    ("data:image/png;base64", "Invalid data URL 'data:image/png;base64': missing ',' separator."),
    ("data:image/png,abc", "Only base64 data URLs are supported for now."),
    ("data:image/png;base64,aGVsbG8gd29ybGQ=", "Failed to load image: cannot identify image file"),
    ("ftp://host/x.png", "The URL must be either a HTTP, data or file URL."),
])
def test_bad_image_urls_get_vllms_message(vlm, url, message):
    with pytest.raises(openai.BadRequestError) as refused:
        ask(vlm, {"type": "image_url", "image_url": {"url": url}})
    assert refused.value.status_code == 400 and refused.value.body["message"] == message


def test_multimodal_cache_metrics_where_the_release_has_them(vlm):
    ask(vlm, image_part(320, 240, variant=7))
    ask(vlm, image_part(320, 240, variant=7))
    with urllib.request.urlopen(vlm.sim_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vllm:mm_cache")}
    if vlm.release == "0.33.0":
        assert samples["vllm:mm_cache_hits_total"] >= 1
        assert samples["vllm:mm_cache_queries_total"] > samples["vllm:mm_cache_hits_total"]
    else:
        assert samples == {}


def test_text_only_model_refuses_images_as_vllm_does():
    process = start_sim(["Qwen/Qwen2.5-0.5B-Instruct", "--served-model-name", "qwen", "--max-model-len", "2048"],
                        env={"LLMOPS_SIM_SPEED": "20"})
    try:
        process.wait_ready()
        with openai.OpenAI(base_url=process.url + "/v1", api_key="unused", max_retries=0, timeout=20) as client:
            with pytest.raises(openai.BadRequestError) as refused:
                ask(client, image_part(64, 64), model="qwen")
            assert refused.value.body["message"] == "qwen is not a multimodal model"
            # text content parts alone are still text
            assert client.chat.completions.create(
                model="qwen", messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                max_tokens=2).usage.prompt_tokens == 8
    finally:
        process.stop()
