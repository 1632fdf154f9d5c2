"""Cheap deterministic stand-ins for a tokenizer and a sampler.

Token count of text = ceil(characters / 4) (at least 1 for non-empty text), the usual
rule of thumb for English BPE vocabularies. A chat request adds the chat template's
overhead: 4 tokens per message plus 3 for the assistant prompt, about what Llama-3's
template adds. Generated text is built from a fixed word list, one word per token,
chosen by a seeded hash, so equal seeds give equal text."""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Sequence

CHARS_PER_TOKEN = 4
CHAT_TOKENS_PER_MESSAGE = 4
CHAT_TOKENS_FOR_REPLY = 3

# Each word with its leading space is 4-8 characters, i.e. roughly one token apiece.
_WORDS = (
    "the", "model", "serves", "tokens", "fast", "queue", "cache", "engine", "batch",
    "prompt", "reply", "stream", "kernel", "memory", "tensor", "layer", "graph", "node",
    "pod", "scale", "load", "time", "first", "token", "latency", "steady", "state",
    "data", "plane", "route", "ready", "value",
)


def count_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def count_prompt_tokens(prompt: Any) -> int:
    """Completions `prompt`: a string, a list with one string, or token ids."""
    if isinstance(prompt, str):
        return count_text_tokens(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        return count_prompt_tokens(prompt[0])
    raise ValueError("prompt must be a string or a list of token ids")


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise ValueError("message content must be a string or a list of content parts")


def count_chat_tokens(messages: Sequence[Any]) -> int:
    total = CHAT_TOKENS_FOR_REPLY
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError("each message must be an object with a 'role'")
        total += CHAT_TOKENS_PER_MESSAGE + count_text_tokens(_content_text(message.get("content")))
    return total


def prompt_text_for_tokens(tokens: int) -> str:
    """A prompt that counts as exactly `tokens` tokens for the completions API."""
    return ("lorem ipsum dolor sit amet " * (tokens * CHARS_PER_TOKEN // 27 + 1))[: tokens * CHARS_PER_TOKEN]


def request_seed(global_seed: int, request_seed: int | None, sequence_number: int) -> int:
    material = f"{global_seed}:{request_seed if request_seed is not None else sequence_number}"
    return int.from_bytes(hashlib.blake2b(material.encode(), digest_size=8).digest(), "big")


def natural_output_length(seed: int, limit: int) -> int:
    """Output length when the client gives no max_tokens: log-normal around 200 tokens
    (chat answers are typically one to a few hundred tokens), clipped to [1, limit]."""
    length = int(random.Random(seed).lognormvariate(math.log(200), 0.6))
    return max(1, min(limit, length))


def token_text(seed: int, index: int) -> str:
    return " " + _WORDS[(seed + index * 2654435761) % len(_WORDS)]
