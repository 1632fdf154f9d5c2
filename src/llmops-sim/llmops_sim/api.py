"""Request validation and response bodies in vLLM's OpenAI-compatible shapes.

Pure: takes parsed JSON and settings, returns values or raises ApiError. The HTTP layer
(server.py) only moves bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmops_sim import tokens as tok
from llmops_sim.multimodal import ImageInput, MediaReader, RequestError
from llmops_sim.releases import Release


class ApiError(Exception):
    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "BadRequestError", param)


def validation_error(release: Release, message: str, parameter: str | None = None, value: Any = None) -> ApiError:
    """A request vLLM's validation refuses: 0.33's VLLMValidationError appends its parameter and
    value to the message (vllm/exceptions.py __str__); 0.11's ValueError carries neither."""
    if not release.validation_error_names_parameter:
        return bad_request(message)
    extras = [f"{k}={v}" for k, v in (("parameter", parameter), ("value", value)) if v is not None]
    return bad_request(f"{message} ({', '.join(extras)})" if extras else message, parameter)


def model_not_found(release: Release, model: str, served_names: tuple[str, ...]) -> ApiError:
    """vllm/entrypoints/openai/serving_engine.py _check_model (0.11);
    vllm/entrypoints/serve/engine/serving.py _check_model (0.33) lists the served names."""
    if release.not_found_lists_aliases:
        return ApiError(404, f"The model `{model}` does not exist. Valid aliases: {', '.join(served_names)}.",
                        "NotFoundError", "model")
    return ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")


def error_body(error: ApiError, legacy: bool) -> dict[str, Any]:
    """Current vLLM nests the error ({"error": {...}}); 0.8-era vLLM returned it flat."""
    info = {"message": error.message, "type": error.err_type, "param": error.param, "code": error.status}
    return {"object": "error", **info} if legacy else {"error": info}


# vllm/entrypoints/openai/protocol.py CompletionRequest.max_tokens (0.11),
# vllm/entrypoints/openai/completion/protocol.py (0.33): a completion without max_tokens gets 16.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True)
class ParsedRequest:
    kind: str  # "chat" or "completion"
    model: str
    prompt_tokens: int
    max_tokens: int | None  # what the client asked for (or the completions default)
    ignore_eos: bool
    stream: bool
    include_usage: bool
    seed: int | None
    token_ids: tuple[int, ...] = ()
    n: int = 1
    output_limit: int | None = None  # max_tokens after the release's context-length handling
    images: tuple[ImageInput, ...] = ()  # in prompt order; their tokens are in prompt_tokens


def _request_model(body: dict, served_names: tuple[str, ...], release: Release) -> str:
    model = body.get("model") or served_names[0]
    if model not in served_names:
        raise model_not_found(release, model, served_names)
    return model


def parse_request(body: Any, kind: str, served_names: tuple[str, ...], max_model_len: int,
                  release: Release, media: MediaReader | None = None) -> ParsedRequest:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    model = _request_model(body, served_names, release)
    try:
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise bad_request("'messages' must be a non-empty list of messages", "messages")
            part_ids = (lambda part: media.part_token_ids(part, tok.VOCAB_SIZE)) if media else None
            token_ids = tok.chat_token_ids(messages, part_ids)
        else:
            if "prompt" not in body:
                raise bad_request("'prompt' is required", "prompt")
            token_ids = tok.prompt_token_ids(body["prompt"])
    except RequestError as exc:
        # over a per-prompt limit: 0.33's VLLMValidationError names the modality
        raise (validation_error(release, str(exc), exc.parameter) if exc.parameter else bad_request(str(exc))) from None
    except ValueError as exc:
        raise bad_request(str(exc), "messages" if kind == "chat" else "prompt") from None
    prompt_tokens = len(token_ids)

    if kind == "chat":
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
    else:
        max_tokens = body.get("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise validation_error(release, f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens", max_tokens)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise bad_request(f"{name} must be a non-negative number, got {value}.", name)
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int):
        raise validation_error(release, f"n must be an int, but is of type {type(n)}", "n")
    if n < 1:
        raise validation_error(release, f"n must be at least 1, got {n}.", "n", n)
    if n > 1 and body.get("temperature") == 0:
        # vllm/sampling_params.py _verify_greedy_sampling
        raise validation_error(release, f"n must be 1 when using greedy sampling, got {n}.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    if options and not stream:
        raise bad_request("Stream options can only be defined when `stream=True`.", "stream_options")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request("'seed' must be an integer", "seed")

    output_limit = context_limit(release, prompt_tokens, max_tokens, max_model_len,
                                 "max_completion_tokens" if kind == "chat" and body.get("max_completion_tokens")
                                 is not None else "max_tokens")
    return ParsedRequest(
        kind=kind, model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
        ignore_eos=bool(body.get("ignore_eos", False)), stream=stream,
        include_usage=bool(options.get("include_usage", False)), seed=seed, token_ids=tuple(token_ids), n=n,
        output_limit=output_limit, images=tuple(media.images) if media else (),
    )


def context_limit(release: Release, prompt_tokens: int, max_tokens: int | None, max_model_len: int,
                  max_tokens_name: str = "max_tokens") -> int:
    """The output tokens a request may generate, or the release's context-length error."""
    if release.context_policy == "reject":
        # vllm/entrypoints/openai/serving_engine.py _validate_input (0.11)
        if prompt_tokens >= max_model_len:
            raise bad_request(
                f"This model's maximum context length is {max_model_len} tokens. However, your request has "
                f"{prompt_tokens} input tokens. Please reduce the length of the input messages.")
        if max_tokens is not None and prompt_tokens + max_tokens > max_model_len:
            raise bad_request(
                "'max_tokens' or 'max_completion_tokens' is too large: "
                f"{max_tokens}. This model's maximum context length is {max_model_len} tokens and your request "
                f"has {prompt_tokens} input tokens ({max_tokens} > {max_model_len} - {prompt_tokens}).")
        return max_tokens if max_tokens is not None else max_model_len - prompt_tokens
    # 0.33: vllm/renderers/params.py TokenizeParams (__post_init__, _token_len_check), then
    # vllm/entrypoints/serve/utils/api_utils.py get_max_tokens clamps max_tokens to the room
    # left and serves; no room left gives SamplingParams(max_tokens=0), which
    # vllm/sampling_params.py refuses.
    if max_tokens is not None and max_tokens > max_model_len:
        raise validation_error(
            release, f"{max_tokens_name}={max_tokens} cannot be greater than max_model_len={max_model_len}. "
            "Please request fewer output tokens.", max_tokens_name, max_tokens)
    if prompt_tokens > max_model_len:
        raise validation_error(
            release, f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
            f"contains {prompt_tokens} input tokens, which exceeds this limit even without any output tokens. "
            "Please reduce the length of the input prompt.", "input_tokens", prompt_tokens)
    if prompt_tokens == max_model_len:
        raise validation_error(release, "max_tokens must be at least 1, got 0.", "max_tokens", 0)
    room = max_model_len - prompt_tokens
    return room if max_tokens is None else min(room, max_tokens)


def output_plan(parsed: ParsedRequest, max_model_len: int, seed: int) -> tuple[int, str]:
    """(tokens to generate, finish reason). The model 'wants' a seeded natural length and
    stops there ("stop") unless the output limit (max_tokens, clamped to the context by
    0.33) cuts it first ("length"); ignore_eos makes it run to the limit, as vLLM's
    benchmarks do for predictable lengths."""
    limit = parsed.output_limit if parsed.output_limit is not None else max_model_len - parsed.prompt_tokens
    natural = tok.natural_output_length(seed, max_model_len - parsed.prompt_tokens)
    if parsed.ignore_eos or natural >= limit:
        return limit, "length"
    return natural, "stop"


def tokenize_request(body: Any, served_names: tuple[str, ...], release: Release) -> tuple[list[int], list[str]]:
    """POST /tokenize (vllm/entrypoints/openai/serving_tokenization.py): `prompt` or `messages`;
    (token ids, token strings)."""
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    _request_model(body, served_names, release)
    try:
        if "messages" in body:
            messages = body["messages"]
            if not isinstance(messages, list):
                raise ValueError("'messages' must be a list of messages")
            ids = tok.chat_token_ids(messages)
            return ids, [f"<{i}>" for i in ids]
        if "prompt" not in body or not isinstance(body["prompt"], str):
            raise ValueError("'prompt' (a string) or 'messages' is required")
        return tok.text_token_ids(body["prompt"]), tok.token_strings(body["prompt"])
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def detokenize_request(body: Any, served_names: tuple[str, ...], release: Release) -> list[int]:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    _request_model(body, served_names, release)
    ids = body.get("tokens")
    if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
        raise bad_request("'tokens' must be a list of token ids", "tokens")
    return ids


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": None}


def full_response(kind: str, request_id: str, created: int, model: str, choices: list[tuple[str, str]],
                  prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """`choices`: (text, finish reason) per choice index (n of them)."""
    rendered = []
    for index, (text, finish_reason) in enumerate(choices):
        if kind == "chat":
            rendered.append({"index": index, "message": {"role": "assistant", "reasoning_content": None,
                                                         "content": text, "tool_calls": []},
                             "logprobs": None, "finish_reason": finish_reason, "stop_reason": None})
        else:
            rendered.append({"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason,
                             "stop_reason": None, "prompt_logprobs": None})
    obj = "chat.completion" if kind == "chat" else "text_completion"
    return {"id": request_id, "object": obj, "created": created, "model": model, "choices": rendered,
            "usage": usage(prompt_tokens, completion_tokens), "prompt_logprobs": None}


class ChunkWriter:
    """Pre-renders the constant parts of streaming chunks: with hundreds of streams the
    per-token JSON work is the simulator's hottest path."""

    def __init__(self, kind: str, request_id: str, created: int, model: str):
        self.kind = kind
        head = json.dumps({"id": request_id, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                           "created": created, "model": model}, separators=(",", ":"))[:-1]
        self._head = "data: " + head + ',"choices":[{"index":'
        self._usage_head = "data: " + head + ',"choices":[],"usage":'

    def role(self, index: int = 0) -> bytes:
        return (f'{self._head}{index},"delta":{{"role":"assistant","content":""}},"logprobs":null,'
                '"finish_reason":null}]}\n\n').encode()

    def text(self, text: str, finish_reason: str | None, index: int = 0) -> bytes:
        reason = "null" if finish_reason is None else json.dumps(finish_reason)
        if self.kind == "chat":
            body = f'"delta":{{"content":{json.dumps(text)}}},"logprobs":null,"finish_reason":{reason}}}]}}\n\n'
        else:
            body = (f'"text":{json.dumps(text)},"logprobs":null,"finish_reason":{reason},'
                    f'"stop_reason":null}}]}}\n\n')
        return f"{self._head}{index},{body}".encode()

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return (self._usage_head + json.dumps(usage(prompt_tokens, completion_tokens), separators=(",", ":")) + "}\n\n").encode()

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"


def models_response(served_names: tuple[str, ...], root: str, max_model_len: int, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": root, "parent": None,
         "max_model_len": max_model_len,
         "permission": [{"id": f"modelperm-{i:032x}", "object": "model_permission", "created": created,
                         "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                         "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                         "organization": "*", "group": None, "is_blocking": False}]}
        for i, name in enumerate(served_names)]}


def generated_text(seed: int, start: int, end: int) -> str:
    return "".join(tok.token_text(seed, i) for i in range(start, end))
