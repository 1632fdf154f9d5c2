"""Request validation and response shapes (vLLM's OpenAI-compatible protocol)."""

import json

import pytest

from llmops_sim import api
from llmops_sim import tokens as tok
from llmops_sim.releases import RELEASES

NAMES = ("llama",)
V011, V033 = RELEASES["0.11.0"], RELEASES["0.33.0"]


def parse(body, kind="chat", max_len=1000, release=V011):
    return api.parse_request(body, kind, NAMES, max_len, release)


def test_chat_request_counts_template_overhead():
    p = parse({"model": "llama", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 5})
    assert p.prompt_tokens == 10 + tok.CHAT_TOKENS_PER_MESSAGE + tok.CHAT_TOKENS_FOR_REPLY
    assert (p.max_tokens, p.stream, p.include_usage) == (5, False, False)


def test_completion_prompt_forms():
    assert parse({"prompt": "abcdefgh"}, "completion").prompt_tokens == 2
    assert parse({"prompt": [1, 2, 3]}, "completion").prompt_tokens == 3
    assert parse({"prompt": [tok.prompt_text_for_tokens(37)]}, "completion").prompt_tokens == 37


def test_max_completion_tokens_wins_for_chat_and_model_defaults():
    p = parse({"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 7, "max_tokens": 9})
    assert p.max_tokens == 7 and p.model == "llama"


@pytest.mark.parametrize("body,kind,status,param", [
    ([], "chat", 400, None),
    ({"messages": []}, "chat", 400, "messages"),
    ({"messages": [{"content": "no role"}]}, "chat", 400, "messages"),
    ({"prompt": {"a": 1}}, "completion", 400, "prompt"),
    ({}, "completion", 400, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "completion", 400, "max_tokens"),
    ({"prompt": "x", "max_tokens": "5"}, "completion", 400, "max_tokens"),
    ({"prompt": "x", "temperature": -1}, "completion", 400, "temperature"),
    ({"prompt": "x", "stream": "yes"}, "completion", 400, "stream"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "completion", 400, "stream_options"),
    ({"prompt": "x", "n": 0}, "completion", 400, "n"),
    ({"prompt": "x", "n": 2, "temperature": 0}, "completion", 400, None),
    ({"model": "other", "prompt": "x"}, "completion", 404, "model"),
])
def test_malformed_requests_are_rejected_like_vllm(body, kind, status, param):
    with pytest.raises(api.ApiError) as info:
        parse(body, kind, release=V033)
    assert info.value.status == status and info.value.param == param
    assert info.value.err_type == ("NotFoundError" if status == 404 else "BadRequestError")


def test_completions_default_to_16_tokens_and_n_fans_out():
    assert parse({"prompt": "x"}, "completion").max_tokens == api.COMPLETIONS_DEFAULT_MAX_TOKENS == 16
    assert parse({"prompt": "x", "max_tokens": None}, "completion").max_tokens is None
    assert parse({"messages": [{"role": "user", "content": "x"}]}).max_tokens is None
    assert parse({"prompt": "x", "n": 3}, "completion").n == 3


def test_error_body_shapes():
    error = api.ApiError(404, "The model `x` does not exist.", "NotFoundError", "model")
    assert api.error_body(error, legacy=False) == {"error": {
        "message": "The model `x` does not exist.", "type": "NotFoundError", "param": "model", "code": 404}}
    assert api.error_body(error, legacy=True)["object"] == "error"


def test_output_plan():
    base = parse({"prompt": "x", "max_tokens": 10_000 - 2}, "completion", max_len=10_000)
    tokens, reason = api.output_plan(base, 10_000, seed=1)
    assert reason == "stop" and tokens < 10_000 - 1  # the natural length ends it
    eos = parse({"prompt": "x", "max_tokens": 900, "ignore_eos": True}, "completion", max_len=10_000)
    assert api.output_plan(eos, 10_000, seed=1) == (900, "length")
    short = parse({"prompt": "x", "max_tokens": 1}, "completion")
    assert api.output_plan(short, 1000, seed=1) == (1, "length")
    unbounded = parse({"prompt": "x", "max_tokens": None}, "completion")
    assert api.output_plan(unbounded, 1000, 5) == api.output_plan(unbounded, 1000, 5)  # deterministic


def test_stream_chunks_are_valid_sse_json():
    w = api.ChunkWriter("chat", "chatcmpl-1", 123, "llama")
    role = json.loads(w.role().decode()[len("data: "):])
    assert role["object"] == "chat.completion.chunk"
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    last = json.loads(w.text(' "q"', "length").decode()[len("data: "):])
    assert last["choices"][0] == {"index": 0, "delta": {"content": ' "q"'}, "logprobs": None,
                                  "finish_reason": "length"}
    usage = json.loads(w.usage(3, 4).decode()[len("data: "):])
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 7
    c = api.ChunkWriter("completion", "cmpl-1", 123, "llama")
    chunk = json.loads(c.text("a", None).decode()[len("data: "):])
    assert chunk["object"] == "text_completion" and chunk["choices"][0]["text"] == "a"
    assert w.done() == b"data: [DONE]\n\n"
    assert w.text("x", None).endswith(b"\n\n")


def test_models_and_full_response_shapes():
    models = api.models_response(("a", "b"), "org/a", 4096, 1)
    assert [m["id"] for m in models["data"]] == ["a", "b"]
    assert models["data"][0]["owned_by"] == "vllm" and models["data"][0]["max_model_len"] == 4096
    assert models["data"][0]["root"] == "org/a"
    full = api.full_response("chat", "id", 1, "a", [("t", "stop"), ("u", "length")], 3, 2)
    assert full["choices"][0]["message"]["content"] == "t"
    assert [(c["index"], c["finish_reason"]) for c in full["choices"]] == [(0, "stop"), (1, "length")]
    assert full["usage"] == {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2,
                             "prompt_tokens_details": None}


def test_generated_text_is_deterministic_and_one_word_per_token():
    text = api.generated_text(42, 0, 5)
    assert text == api.generated_text(42, 0, 5)
    assert len(text.split()) == 5
    assert api.generated_text(42, 0, 2) + api.generated_text(42, 2, 5) == text
