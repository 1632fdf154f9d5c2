"""The official `openai` client against the simulator, per emulated release: every endpoint
parses into the client's types, streaming with include_usage ends with the usage chunk, n > 1
gives n choices, and errors arrive as the client's error classes, as with real vLLM."""

import json
import urllib.request

import openai
import pytest

from llmops_sim.process import start_sim
from llmops_sim.releases import RELEASES

EMULATED = sorted(v for v in RELEASES if v != "0.8.5")


@pytest.fixture(scope="module", params=EMULATED)
def client(request):
    process = start_sim(["Qwen/Qwen2.5-0.5B-Instruct", "--served-model-name", "qwen", "--max-model-len", "2048"],
                        env={"LLMOPS_SIM_VLLM_VERSION": request.param, "LLMOPS_SIM_SPEED": "20"})
    process.wait_ready()
    with openai.OpenAI(base_url=process.url + "/v1", api_key="unused", max_retries=0, timeout=20) as c:
        c.sim_url = process.url
        yield c
    process.stop()


def test_models_list(client):
    (model,) = client.models.list().data
    assert model.id == "qwen" and model.owned_by == "vllm" and model.model_extra["max_model_len"] == 2048


def test_completion_defaults_to_16_tokens(client):
    reply = client.completions.create(model="qwen", prompt="Once upon a time", extra_body={"ignore_eos": True})
    assert reply.object == "text_completion" and reply.usage.completion_tokens == 16
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].text


def test_chat_completion_with_n_choices(client):
    reply = client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}], n=3,
                                           max_tokens=5, extra_body={"ignore_eos": True})
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" and c.message.content for c in reply.choices)
    assert reply.usage.completion_tokens == 15


def test_chat_streaming_with_include_usage(client):
    stream = client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=6, stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 6
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_completion_streaming(client):
    chunks = list(client.completions.create(model="qwen", prompt="x", max_tokens=4, stream=True,
                                            extra_body={"ignore_eos": True}))
    assert len("".join(c.choices[0].text for c in chunks).split()) == 4


def post_json(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


def test_tokenize_and_detokenize(client):
    # Not OpenAI endpoints, so the client has no method for them.
    tokens = post_json(client.sim_url + "/tokenize", {"model": "qwen", "prompt": "hello world!",
                                                      "return_token_strs": True})
    assert tokens["count"] == len(tokens["tokens"]) == 3 and tokens["max_model_len"] == 2048
    assert tokens["token_strs"] == ["hell", "o wo", "rld!"]
    text = post_json(client.sim_url + "/detokenize", {"model": "qwen", "tokens": tokens["tokens"]})
    assert text == {"prompt": "hello world!"}


def test_errors_arrive_as_the_clients_error_classes(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="gpt-4", prompt="x")
    assert missing.value.status_code == 404 and "does not exist" in missing.value.message
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="qwen", prompt="x" * 9000, max_tokens=1)
    assert too_long.value.status_code == 400 and "maximum context length is 2048" in too_long.value.message
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "x"}], max_tokens=0)
