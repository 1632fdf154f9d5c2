"""Request validation and response bodies in vLLM's OpenAI-compatible shapes.

Pure: takes parsed JSON and settings, returns values or raises ApiError. The HTTP layer
(server.py) only moves bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmops.sim import tokens as tok


class ApiError(Exception):
    def __init__(self, status: int, message: str, err_type: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type
        self.param = param


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "BadRequestError", param)


def error_body(error: ApiError, legacy: bool) -> dict[str, Any]:
    """Current vLLM nests the error ({"error": {...}}); 0.8-era vLLM returned it flat."""
    info = {"message": error.message, "type": error.err_type, "param": error.param, "code": error.status}
    return {"object": "error", **info} if legacy else {"error": info}


@dataclass(frozen=True)
class ParsedRequest:
    kind: str  # "chat" or "completion"
    model: str
    prompt_tokens: int
    max_tokens: int | None
    ignore_eos: bool
    stream: bool
    include_usage: bool
    seed: int | None


def parse_request(body: Any, kind: str, served_names: tuple[str, ...], max_model_len: int) -> ParsedRequest:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    model = body.get("model") or served_names[0]
    if model not in served_names:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    try:
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise bad_request("'messages' must be a non-empty list of messages", "messages")
            prompt_tokens = tok.count_chat_tokens(messages)
        else:
            if "prompt" not in body:
                raise bad_request("'prompt' is required", "prompt")
            prompt_tokens = tok.count_prompt_tokens(body["prompt"])
    except ValueError as exc:
        raise bad_request(str(exc), "messages" if kind == "chat" else "prompt") from None

    max_tokens = body.get("max_completion_tokens") if kind == "chat" else None
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise bad_request(f"max_tokens must be at least 1, got {max_tokens}.", "max_tokens")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise bad_request(f"{name} must be a non-negative number, got {value}.", name)
    n = body.get("n", 1)
    if n != 1:
        raise bad_request("the simulator supports only n=1", "n")
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

    # vLLM's context-length checks (serving_engine._validate_input), same wording.
    if max_tokens is None and prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens} tokens in the messages, Please reduce the length of the messages.")
    if max_tokens is not None and prompt_tokens + max_tokens > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.")
    return ParsedRequest(
        kind=kind, model=model, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
        ignore_eos=bool(body.get("ignore_eos", False)), stream=stream,
        include_usage=bool(options.get("include_usage", False)), seed=seed,
    )


def output_plan(parsed: ParsedRequest, max_model_len: int, seed: int) -> tuple[int, str]:
    """(tokens to generate, finish reason). The model 'wants' a seeded natural length and
    stops there ("stop") unless max_tokens cuts it first ("length"); ignore_eos makes it run
    to max_tokens, as vLLM's benchmarks do for predictable lengths."""
    room = max_model_len - parsed.prompt_tokens
    natural = tok.natural_output_length(seed, room)
    if parsed.max_tokens is None:
        return natural, "stop"
    if parsed.ignore_eos or natural >= parsed.max_tokens:
        return parsed.max_tokens, "length"
    return natural, "stop"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens, "prompt_tokens_details": None}


def full_response(kind: str, request_id: str, created: int, model: str, text: str,
                  finish_reason: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    if kind == "chat":
        choice = {"index": 0,
                  "message": {"role": "assistant", "reasoning_content": None, "content": text, "tool_calls": []},
                  "logprobs": None, "finish_reason": finish_reason, "stop_reason": None}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
                  "stop_reason": None, "prompt_logprobs": None}
        obj = "text_completion"
    return {"id": request_id, "object": obj, "created": created, "model": model, "choices": [choice],
            "usage": usage(prompt_tokens, completion_tokens), "prompt_logprobs": None}


class ChunkWriter:
    """Pre-renders the constant parts of streaming chunks: with hundreds of streams the
    per-token JSON work is the simulator's hottest path."""

    def __init__(self, kind: str, request_id: str, created: int, model: str):
        self.kind = kind
        head = json.dumps({"id": request_id, "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
                           "created": created, "model": model}, separators=(",", ":"))[:-1]
        self._head = "data: " + head + ',"choices":[{"index":0,'
        self._usage_head = "data: " + head + ',"choices":[],"usage":'

    def role(self) -> bytes:
        return (self._head + '"delta":{"role":"assistant","content":""},"logprobs":null,'
                '"finish_reason":null}]}\n\n').encode()

    def text(self, text: str, finish_reason: str | None) -> bytes:
        reason = "null" if finish_reason is None else json.dumps(finish_reason)
        if self.kind == "chat":
            body = f'"delta":{{"content":{json.dumps(text)}}},"logprobs":null,"finish_reason":{reason}}}]}}\n\n'
        else:
            body = (f'"text":{json.dumps(text)},"logprobs":null,"finish_reason":{reason},'
                    f'"stop_reason":null}}]}}\n\n')
        return (self._head + body).encode()

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
