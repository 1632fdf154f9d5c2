"""Cheap deterministic stand-ins for a tokenizer and a sampler.

Token count of text = ceil(characters / 4) (at least 1 for non-empty text), the usual
rule of thumb for English BPE vocabularies. Each token's id is a hash of its 4-character
chunk, so equal text gives equal ids (and shares prefix-cache blocks) and different text
does not. A chat request adds the chat template's overhead: 4 tokens per message (ids
derived from the role) plus 3 for the assistant prompt, about what Llama-3's template adds.
Generated text is built from a fixed word list, one word per token, chosen by a seeded
hash, so equal seeds give equal text."""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from typing import Any, Callable, Sequence

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


VOCAB_SIZE = 128256  # Llama-3's; ids are hashes modulo this


def count_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def text_token_ids(text: str) -> list[int]:
    """One id per 4-character chunk: crc32 of the chunk, modulo the vocabulary."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) == len(text):  # ASCII: byte offsets are character offsets
        return [zlib.crc32(data[i:i + CHARS_PER_TOKEN]) % VOCAB_SIZE for i in range(0, len(data), CHARS_PER_TOKEN)]
    return [zlib.crc32(text[i:i + CHARS_PER_TOKEN].encode("utf-8", "surrogatepass")) % VOCAB_SIZE
            for i in range(0, len(text), CHARS_PER_TOKEN)]


def prompt_token_ids(prompt: Any) -> list[int]:
    """Completions `prompt`: a string, a list with one string, or token ids."""
    if isinstance(prompt, str):
        return text_token_ids(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return list(prompt)
    if isinstance(prompt, list) and len(prompt) == 1:
        return prompt_token_ids(prompt[0])
    raise ValueError("prompt must be a string or a list of token ids")


def count_prompt_tokens(prompt: Any) -> int:
    return len(prompt_token_ids(prompt))


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise ValueError("message content must be a string or a list of content parts")


def _is_text_part(part: Any) -> bool:
    return not isinstance(part, dict) or part.get("type") in (None, "text")


def chat_token_ids(messages: Sequence[Any], media_ids: Callable[[dict], list[int]] | None = None) -> list[int]:
    """media_ids: the ids of a non-text content part (an image), in place; without it (or for
    content that is all text) non-text parts count nothing."""
    ids: list[int] = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError("each message must be an object with a 'role'")
        role = str(message["role"])
        ids.extend(zlib.crc32(f"<{role}:{i}>".encode()) % VOCAB_SIZE for i in range(CHAT_TOKENS_PER_MESSAGE))
        content = message.get("content")
        if media_ids is not None and isinstance(content, list) and not all(map(_is_text_part, content)):
            for part in content:
                ids.extend(text_token_ids(_content_text([part])) if _is_text_part(part) else media_ids(part))
            continue
        ids.extend(text_token_ids(_content_text(content)))
    ids.extend(zlib.crc32(f"<reply:{i}>".encode()) % VOCAB_SIZE for i in range(CHAT_TOKENS_FOR_REPLY))
    return ids


def count_chat_tokens(messages: Sequence[Any]) -> int:
    return len(chat_token_ids(messages))


def token_strings(text: str) -> list[str]:
    """The 4-character pieces text_token_ids hashes: /tokenize's token_strs."""
    return [text[i:i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]


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


class TokenMemory:
    """/detokenize needs text for ids, but the ids are hashes: remember the chunks /tokenize
    saw (bounded, oldest forgotten) and spell any other id as a word from the output list."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._chunks: dict[int, str] = {}

    def remember(self, text: str) -> None:
        for token_id, chunk in zip(text_token_ids(text), token_strings(text)):
            self._chunks.pop(token_id, None)
            self._chunks[token_id] = chunk
        while len(self._chunks) > self.limit:
            del self._chunks[next(iter(self._chunks))]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._chunks.get(i) or " " + _WORDS[i % len(_WORDS)] for i in ids)
