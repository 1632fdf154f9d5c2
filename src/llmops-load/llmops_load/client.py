"""One OpenAI-compatible request, streamed and timed from the client's side."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from dataclasses import dataclass

import aiohttp

from llmops_load.images import ImageMix
from llmops_load.report import RequestResult


@dataclass(frozen=True)
class RequestSpec:
    api: str  # "chat" or "completions"
    model: str
    prompt: str
    prompt_tokens: int  # what we intended; the server's usage count wins when present
    max_tokens: int
    stream: bool = True
    ignore_eos: bool = True
    shared_prefix: str = ""  # the same system prompt in front of every request (prefix caching)
    sessions: int = 0  # multi-turn: requests cycle over this many conversations ...
    turns: int = 1  # ... of this many turns, each resending the conversation so far
    seed: int = 0  # runs with different seeds send different prompts (no prefix-cache hits between runs)
    images: ImageMix | None = None  # chat only: image parts in front of each request's own text

    def path(self) -> str:
        return "/v1/chat/completions" if self.api == "chat" else "/v1/completions"

    def messages(self, sequence: int) -> list[dict]:
        """The conversation for request `sequence`: [system] + earlier turns + this turn.
        Sessions are interleaved (request n is turn (n // sessions) % turns of session
        n % sessions), and replies are stand-ins of max_tokens length, so the history is
        the same whatever the server answered and concurrent turns need no shared state."""
        out: list[dict] = [{"role": "system", "content": self.shared_prefix}] if self.shared_prefix else []
        sequence += self.seed * 1_000_000
        if self.sessions <= 0:
            return out + [{"role": "user", "content": self._content(unique_prompt(self.prompt, sequence), sequence)}]
        session = sequence % self.sessions
        turn = (sequence // self.sessions) % self.turns
        conversation = sequence // (self.sessions * self.turns) * self.sessions + session  # unique per conversation
        for earlier in range(turn + 1):
            text = unique_prompt(self.prompt, conversation * 1000 + earlier)
            out.append({"role": "user", "content": self._content(text, conversation * 1000 + earlier)})
            if earlier < turn:
                out.append({"role": "assistant", "content": make_prompt(self.max_tokens)})
        return out

    def _content(self, text: str, sequence: int) -> str | list[dict]:
        if self.images is None:
            return text
        return [*self.images.parts(sequence), {"type": "text", "text": text}]

    def body(self, sequence: int = 0) -> dict:
        body: dict = {"model": self.model, "max_tokens": self.max_tokens, "stream": self.stream,
                      "ignore_eos": self.ignore_eos, "temperature": 0}
        messages = self.messages(sequence)
        if self.api == "chat":
            body["messages"] = messages
        else:
            body["prompt"] = "\n\n".join(m["content"] for m in messages)
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        return body


def make_prompt(tokens: int, text: str = "The quick brown fox jumps over the lazy dog. ") -> str:
    """~4 characters per token, the rule of thumb the simulator and most tokenizers share."""
    return (text * (tokens * 4 // len(text) + 1))[: tokens * 4]


def make_system_prompt(tokens: int) -> str:
    return make_prompt(tokens, "You are a careful assistant for the llmops fleet; answer briefly. ") if tokens else ""


def unique_prompt(prompt: str, sequence: int) -> str:
    """Start each prompt with its sequence number, same length every time: a real vLLM's
    prefix cache would otherwise serve the whole prompt from cache and flatter TTFT."""
    tag = f"{sequence % 10**8:08d} "
    return tag + prompt[len(tag):] if len(prompt) > len(tag) else prompt


async def send(session: aiohttp.ClientSession, base_url: str, spec: RequestSpec, timeout: float,
               sequence: int = 0, clock=time.perf_counter) -> RequestResult:
    start = clock()
    result = RequestResult(target=base_url, start=start, end=start, ok=False, prompt_tokens=spec.prompt_tokens)
    streaming = False
    try:
        async with asyncio.timeout(timeout):
            async with session.post(base_url + spec.path(), json=spec.body(sequence)) as response:
                streaming = spec.stream and response.status == 200
                if response.status != 200:
                    await response.read()
                    result.error = f"http_{response.status}"
                elif spec.stream:
                    await _read_stream(response, spec, result, clock)
                else:
                    data = await response.json(content_type=None)
                    usage = data.get("usage") or {}
                    result.output_tokens = usage.get("completion_tokens", 0)
                    result.prompt_tokens = usage.get("prompt_tokens", spec.prompt_tokens)
                    if any(c.get("finish_reason") == "abort" for c in data.get("choices") or []):
                        result.error = "aborted"  # vLLM's engine gave up on it (shutdown)
                    else:
                        result.ok = True
    except TimeoutError:
        result.error = "timeout"
    except aiohttp.ClientConnectorError as exc:
        # Refused: nothing listens (a stopped engine, a stale endpoint); other connect failures
        # (no route, DNS) are the network's.
        result.error = "connection_refused" if exc.os_error.errno == errno.ECONNREFUSED else "connect"
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError, ConnectionResetError):
        # After a 200 the stream was under way: cut before [DONE]; else the server hung up on the request.
        result.error = "truncated_stream" if streaming else "disconnect"
    except (aiohttp.ClientError, json.JSONDecodeError, ValueError) as exc:
        result.error = f"bad_response:{type(exc).__name__}"
    result.end = clock()
    return result


async def _read_stream(response: aiohttp.ClientResponse, spec: RequestSpec, result: RequestResult, clock) -> None:
    chat = spec.api == "chat"
    last_chunk_at: float | None = None
    chunks = 0
    done = False
    aborted = False
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            break
        now = clock()
        event = json.loads(payload)
        if "error" in event:
            result.error = "stream_error"
            return
        choices = event.get("choices") or []
        if any(c.get("finish_reason") == "abort" for c in choices):
            aborted = True  # vLLM's engine gave up on it (shutdown): [DONE] follows, the answer is cut
        if choices:
            choice = choices[0]
            text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
            if text:
                chunks += 1
                if last_chunk_at is None:
                    result.ttft = now - result.start
                else:
                    result.chunk_gaps.append(now - last_chunk_at)
                last_chunk_at = now
        usage = event.get("usage")
        if usage:
            result.output_tokens = usage.get("completion_tokens", chunks)
            result.prompt_tokens = usage.get("prompt_tokens", result.prompt_tokens)
    if not done:
        result.error = "truncated_stream"
        return
    if aborted:
        result.error = "aborted"
        return
    if not result.output_tokens:
        result.output_tokens = chunks  # server sent no usage: one token per chunk is the best guess
    result.ok = True
