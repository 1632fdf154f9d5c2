"""The simulator's HTTP server: vLLM's endpoints on aiohttp, backed by the Engine.

Lifecycle: listen at once; answer 503 while "loading the model" (LLMOPS_SIM_STARTUP_SECONDS);
then serve. On SIGTERM: stop taking requests (503, /health not ready), let in-flight ones
finish for up to LLMOPS_SIM_DRAIN_SECONDS, exit 0."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import uuid
from typing import Any

import functools
import gc

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from llmops.sim import api
from llmops.sim import tokens as tok
from llmops.sim.config import SimConfig
from llmops.sim.engine import Engine, EngineRequest
from llmops.sim.metrics import VllmMetrics
from llmops.sim.profiles import GIB

log = logging.getLogger("vllm.entrypoints.openai.api_server")

VLLM_VERSION = "0.11.0"
LEGACY_VLLM_VERSION = "0.8.5"
STATS_LOG_INTERVAL_S = 10.0


_compact = functools.partial(json.dumps, separators=(",", ":"))


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_compact)


def configure_logging() -> None:
    """vLLM's log line format: 'INFO 11-25 17:55:01 [api_server.py:123] message'."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s",
                        datefmt="%m-%d %H:%M:%S")


class SimServer:
    def __init__(self, config: SimConfig):
        self.config = config
        self.metrics = VllmMetrics(
            config.served_model_name, config.max_model_len, config.legacy_metrics,
            cache_info={"block_size": "16", "cache_dtype": config.kv_cache_dtype,
                        "gpu_memory_utilization": str(config.gpu_memory_utilization),
                        "num_gpu_blocks": str(max(0, config.kv_capacity_tokens) // 16),
                        "enable_prefix_caching": str(config.enable_prefix_caching)})
        self.engine = Engine(config.step_costs(), max(0, config.kv_capacity_tokens), config.max_num_seqs,
                             config.max_num_batched_tokens, self.metrics)
        self.ready = False
        self.draining = False
        self.speed = config.speed
        self.created = int(time.time())
        self.sequence = 0
        self.in_flight = 0
        self.failed: str | None = None
        self._tasks: list[asyncio.Task] = []
        self.gc_max_pause = 0.0  # diagnosing timing stalls: is it the collector?
        self._gc_started = 0.0
        if config.control_enabled:
            gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_max_pause = max(self.gc_max_pause, time.perf_counter() - self._gc_started)

    # --- app ----------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._availability], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ping", self.health)
        app.router.add_post("/ping", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        if self.config.control_enabled:
            app.router.add_post("/sim/control", self.control)
            app.router.add_get("/sim/state", self.state)
        return app

    @web.middleware
    async def _availability(self, request: web.Request, handler):
        if request.path.startswith("/sim/"):
            return await handler(request)
        if not self.ready or self.draining:
            reason = "model is loading" if not self.ready else "server is shutting down"
            return self._error(api.ApiError(503, f"Service unavailable: {reason}", "ServiceUnavailableError"))
        return await handler(request)

    def _error(self, error: api.ApiError) -> web.Response:
        return _json_response(api.error_body(error, self.config.legacy_metrics), status=error.status)

    # --- simple endpoints ---------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        return _json_response({"version": LEGACY_VLLM_VERSION if self.config.legacy_metrics else VLLM_VERSION})

    async def models(self, request: web.Request) -> web.Response:
        c = self.config
        return _json_response(api.models_response(c.served_model_names, c.model, c.max_model_len, self.created))

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        # Always the classic text format: prometheus_client's OpenMetrics encoder rewrites
        # 'vllm:x' sample names to 'vllm_x', which would break every vLLM query.
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def control(self, request: web.Request) -> web.Response:
        """Test-only: {"speed_factor": float, "pause": bool}."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
            if "speed_factor" in body:
                speed = float(body["speed_factor"])
                if speed <= 0:
                    raise ValueError("speed_factor must be positive")
                self.speed = speed
                self.engine.set_costs(self.config.step_costs(speed))
            if "pause" in body:
                self.engine.set_paused(bool(body["pause"]))
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            return self._error(api.bad_request(str(exc)))
        return await self.state(request)

    async def state(self, request: web.Request) -> web.Response:
        e = self.engine
        s = e.stats
        return _json_response({
            "speed_factor": self.speed, "paused": e.paused, "running": len(e.running), "waiting": len(e.waiting),
            "kv_cache_usage": e.kv_usage, "kv_blocks_total": e.total_blocks, "steps": s.steps,
            "modeled_seconds": s.modeled_seconds, "total_abs_error_s": s.total_abs_error,
            "max_lateness_s": s.max_lateness, "resyncs": s.resyncs, "gc_max_pause_s": self.gc_max_pause,
        })

    # --- generation ---------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completion")

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        c = self.config
        try:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise api.bad_request("request body is not valid JSON") from None
            parsed = api.parse_request(body, kind, c.served_model_names, c.max_model_len)
        except api.ApiError as exc:
            return self._error(exc)
        self.sequence += 1
        seed = tok.request_seed(c.seed, parsed.seed, self.sequence)
        output_tokens, reason = api.output_plan(parsed, c.max_model_len, seed)
        request_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        engine_request = EngineRequest(request_id, parsed.prompt_tokens, output_tokens, reason, parsed.max_tokens)
        self.in_flight += 1
        try:
            self.engine.add(engine_request)
            if parsed.stream:
                return await self._stream(request, parsed, engine_request, seed)
            while not engine_request.done:
                await engine_request.wakeup.wait()
                engine_request.wakeup.clear()
            text = api.generated_text(seed, 0, engine_request.generated)
            return _json_response(api.full_response(
                kind, request_id, int(time.time()), parsed.model, text, engine_request.finish_reason or "abort",
                parsed.prompt_tokens, engine_request.generated))
        finally:
            self.engine.abort(engine_request)  # no-op when finished
            self.in_flight -= 1

    async def _stream(self, request: web.Request, parsed: api.ParsedRequest, er: EngineRequest,
                      seed: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        chunks = api.ChunkWriter(parsed.kind, er.request_id, int(time.time()), parsed.model)
        try:
            if parsed.kind == "chat":
                await response.write(chunks.role())
            delivered = 0
            while True:
                await er.wakeup.wait()
                er.wakeup.clear()
                if er.aborted:
                    break
                if er.generated > delivered:
                    # Tokens produced while we were not scheduled go out as one chunk, as in vLLM.
                    text = api.generated_text(seed, delivered, er.generated)
                    delivered = er.generated
                    await response.write(chunks.text(text, er.finish_reason))
                if er.finish_reason is not None:
                    break
            if parsed.include_usage:
                await response.write(chunks.usage(parsed.prompt_tokens, delivered))
            await response.write(chunks.done())
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.engine.abort(er)
            raise
        return response

    # --- lifecycle ----------------------------------------------------------------
    async def load_model(self) -> None:
        c = self.config
        log.info("Loading model %s (simulated: %.1fB params on %d x %s, %.1f s)", c.model, c.params_b,
                 c.num_gpus, c.gpu_name, c.startup_seconds)
        await asyncio.sleep(c.startup_seconds)
        problem = c.fit_error()
        if problem:
            log.error("%s", problem)
            self.failed = problem
            return
        log.info("Loading weights took %.2f GiB per GPU", c.weight_bytes / c.num_gpus / GIB)
        log.info("# GPU blocks: %d, KV cache size: %d tokens", self.engine.total_blocks, c.kv_capacity_tokens)
        log.info("Maximum concurrency for %d tokens per request: %.2fx", c.max_model_len,
                 c.kv_capacity_tokens / c.max_model_len)
        self._tasks.append(asyncio.create_task(self.engine.run(), name="engine"))
        self._tasks.append(asyncio.create_task(self._log_stats(), name="stats-log"))
        self.ready = True
        log.info("Application startup complete.")

    async def _log_stats(self) -> None:
        """vLLM's periodic 'Engine 000: ...' throughput line (debug-quiet when idle)."""
        last_prompt, last_gen = 0, 0
        while True:
            await asyncio.sleep(STATS_LOG_INTERVAL_S)
            e = self.engine
            prompt_rate = (e.prompt_tokens_total - last_prompt) / STATS_LOG_INTERVAL_S
            gen_rate = (e.generation_tokens_total - last_gen) / STATS_LOG_INTERVAL_S
            last_prompt, last_gen = e.prompt_tokens_total, e.generation_tokens_total
            if prompt_rate or gen_rate or not e.idle:
                log.info("Engine 000: Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f "
                         "tokens/s, Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, "
                         "Prefix cache hit rate: 0.0%%", prompt_rate, gen_rate, len(e.running), len(e.waiting),
                         e.kv_usage * 100)

    async def drain(self) -> None:
        self.draining = True
        deadline = asyncio.get_running_loop().time() + self.config.drain_seconds
        log.info("Shutting down: draining %d in-flight requests (up to %.0f s)", self.in_flight,
                 self.config.drain_seconds)
        while self.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def serve(config: SimConfig, started: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (drain, then 0) or a simulated startup failure (1)."""
    server = SimServer(config)
    log.info("vLLM API server version %s (llmops simulator)", LEGACY_VLLM_VERSION if config.legacy_metrics
             else VLLM_VERSION)
    log.info("args: model=%s served_model_name=%s tp=%d pp=%d quantization=%s max_model_len=%d max_num_seqs=%d "
             "gpu_memory_utilization=%.2f", config.model, list(config.served_model_names),
             config.tensor_parallel_size, config.pipeline_parallel_size, config.quantization,
             config.max_model_len, config.max_num_seqs, config.gpu_memory_utilization)
    for flag in config.ignored_flags:
        log.info("simulator ignores flag: %s", flag)
    for note in config.notes:
        log.info("%s", note)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024)
    await site.start()
    port = runner.addresses[0][1] if config.port == 0 else config.port  # port 0: the OS picked one
    log.info("Starting vLLM API server on http://%s:%d", config.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if started is not None:
        started.set()
    loader = asyncio.create_task(server.load_model())
    stop_wait = asyncio.create_task(stop.wait())
    await asyncio.wait({loader, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if server.failed:
        code = 1
    else:
        await stop_wait
        await server.drain()
    stop_wait.cancel()
    loader.cancel()
    await server.close()
    await runner.cleanup()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return code


def run(config: SimConfig) -> int:
    configure_logging()
    return asyncio.run(serve(config))
