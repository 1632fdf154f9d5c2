"""The simulator's HTTP server: vLLM's endpoints on aiohttp, backed by the Engine.

Lifecycle: listen at once; answer 503 while "loading the model" (LLMOPS_SIM_STARTUP_SECONDS);
then serve. On SIGTERM: stop taking requests (503, /health not ready), let in-flight ones
finish for up to LLMOPS_SIM_DRAIN_SECONDS, exit 0."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
import uuid
from typing import Any

import functools
import gc

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from llmops_sim import api
from llmops_sim import tokens as tok
from llmops_sim.config import SimConfig
from llmops_sim.engine import Engine, EngineRequest, ParentRequest
from llmops_sim.kvcache import block_hashes
from llmops_sim.images import DEFAULT_REMOTE_SIZE
from llmops_sim.metrics import VllmMetrics
from llmops_sim.multimodal import MediaReader, ProcessorCache
from llmops_sim.profiles import GIB

log = logging.getLogger("vllm.entrypoints.openai.api_server")
engine_log = logging.getLogger("vllm.v1.engine.async_llm")

STATS_LOG_INTERVAL_S = 10.0


_compact = functools.partial(json.dumps, separators=(",", ":"))


def _json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_compact)


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))


def configure_logging() -> None:
    """vLLM's log line format: 'INFO 11-25 17:55:01 [api_server.py:123] message'."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s",
                        datefmt="%m-%d %H:%M:%S")


class SimServer:
    def __init__(self, config: SimConfig):
        self.config = config
        dp = config.data_parallel_size
        # Each data-parallel engine has its own TP x PP GPUs and so its own share of the KV cache.
        kv_per_engine = max(0, config.kv_capacity_tokens)
        self.metrics = VllmMetrics(
            config.served_model_name, config.max_model_len, config.release,
            cache_info={"block_size": "16", "cache_dtype": config.kv_cache_dtype,
                        "gpu_memory_utilization": str(config.gpu_memory_utilization),
                        "num_gpu_blocks": str(kv_per_engine // 16),
                        "enable_prefix_caching": str(config.enable_prefix_caching)},
            engines=dp)
        self.engines = [Engine(config.step_costs(), kv_per_engine, config.max_num_seqs, config.max_num_batched_tokens,
                               self.metrics.engines[i], config.enable_prefix_caching, config.enable_chunked_prefill)
                        for i in range(dp)]
        self.engine = self.engines[0]
        self.token_memory = tok.TokenMemory()
        self.ready = False
        self.draining = False
        self.speed = config.speed
        self.created = int(time.time())
        self.sequence = 0
        self.processor_cache = ProcessorCache(config.multimodal.cache_gb)
        self.remote_image_logged = False
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
        app = web.Application(middlewares=[self._http_metrics, self._availability], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ping", self.health)
        app.router.add_post("/ping", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics_endpoint)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_post("/detokenize", self.detokenize)
        if self.config.control_enabled:
            app.router.add_post("/sim/control", self.control)
            app.router.add_get("/sim/state", self.state)
        return app

    @web.middleware
    async def _http_metrics(self, request: web.Request, handler):
        """prometheus-fastapi-instrumentator's middleware, timed around the whole response
        (streaming included, as vLLM's Instrumentator().add() does)."""
        started = asyncio.get_running_loop().time()
        request["received_at"] = started  # vLLM's arrival_time for this request
        status = 500
        response = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            handler_name = resource.canonical if resource is not None else "none"
            response_bytes = response.content_length if response is not None and response.content_length else 0
            self.metrics.http.observe(request.method, status, handler_name, request.content_length or 0,
                                      response_bytes, asyncio.get_running_loop().time() - started)

    @web.middleware
    async def _availability(self, request: web.Request, handler):
        if request.path.startswith("/sim/"):
            return await handler(request)
        if not self.ready or self.draining:
            reason = "model is loading" if not self.ready else "server is shutting down"
            return self._error(api.ApiError(503, f"Service unavailable: {reason}", "ServiceUnavailableError"))
        return await handler(request)

    def _error(self, error: api.ApiError) -> web.Response:
        return _json_response(api.error_body(error, self.config.release.flat_error_body), status=error.status)

    # --- simple endpoints ---------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def version(self, request: web.Request) -> web.Response:
        return _json_response({"version": self.config.release.version})

    async def models(self, request: web.Request) -> web.Response:
        c = self.config
        return _json_response(api.models_response(c.served_model_names, c.model, c.max_model_len, self.created))

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        # Always the classic text format: prometheus_client's OpenMetrics encoder rewrites
        # 'vllm:x' sample names to 'vllm_x', which would break every vLLM query.
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def tokenize(self, request: web.Request) -> web.Response:
        c = self.config
        try:
            body = await self._json_body(request)
            ids, strings = api.tokenize_request(body, c.served_model_names, c.release)
        except api.ApiError as exc:
            return self._error(exc)
        if isinstance(body.get("prompt"), str):
            self.token_memory.remember(body["prompt"])
        return _json_response({"count": len(ids), "max_model_len": c.max_model_len, "tokens": ids,
                               "token_strs": strings if body.get("return_token_strs") else None})

    async def detokenize(self, request: web.Request) -> web.Response:
        c = self.config
        try:
            ids = api.detokenize_request(await self._json_body(request), c.served_model_names, c.release)
        except api.ApiError as exc:
            return self._error(exc)
        return _json_response({"prompt": self.token_memory.decode(ids)})

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        try:
            return await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise api.bad_request("request body is not valid JSON") from None

    async def control(self, request: web.Request) -> web.Response:
        """Test-only: {"speed_factor": float, "pause": bool, "hog_seconds": float}; hog_seconds
        starts a thread that spins that long in Python, competing with the event loop for the
        interpreter like a CPU-heavy tokenizer or a noisy neighbour would."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
            if "speed_factor" in body:
                speed = float(body["speed_factor"])
                if speed <= 0:
                    raise ValueError("speed_factor must be positive")
                self.speed = speed
                for engine in self.engines:
                    engine.set_costs(self.config.step_costs(speed))
            if "pause" in body:
                for engine in self.engines:
                    engine.set_paused(bool(body["pause"]))
            if "hog_seconds" in body:
                threading.Thread(target=_spin, args=(float(body["hog_seconds"]),), daemon=True).start()
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            return self._error(api.bad_request(str(exc)))
        return await self.state(request)

    async def state(self, request: web.Request) -> web.Response:
        engines = self.engines
        stats = [e.stats for e in engines]
        return _json_response({
            "speed_factor": self.speed, "paused": engines[0].paused,
            "running": sum(len(e.running) for e in engines), "waiting": sum(len(e.waiting) for e in engines),
            "kv_cache_usage": max(e.kv_usage for e in engines), "kv_blocks_total": sum(e.total_blocks for e in engines),
            "prefix_cache_queries": sum(e.pool.stats.queries for e in engines),
            "prefix_cache_hits": sum(e.pool.stats.hits for e in engines),
            "steps": sum(s.steps for s in stats), "modeled_seconds": sum(s.modeled_seconds for s in stats),
            "total_abs_error_s": sum(s.total_abs_error for s in stats),
            "max_lateness_s": max(s.max_lateness for s in stats), "resyncs": sum(s.resyncs for s in stats),
            "modeled_itl_sum_s": sum(s.modeled_itl_sum for s in stats),
            "modeled_itl_count": sum(s.modeled_itl_count for s in stats),
            "gc_max_pause_s": self.gc_max_pause,
        })

    # --- generation ---------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completion")

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        c = self.config
        try:
            body = await self._json_body(request)
            media = MediaReader(c.multimodal, c.served_model_name, self._remote_image) if kind == "chat" else None
            parsed = api.parse_request(body, kind, c.served_model_names, c.max_model_len, c.release, media)
        except api.ApiError as exc:
            return self._error(exc)
        request_id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        hashes = tuple(block_hashes(parsed.token_ids)) if c.enable_prefix_caching else ()
        parent = ParentRequest(parsed.n, parsed.n) if parsed.n > 1 else None
        wakeup = asyncio.Event()  # shared by the n choices, so one waiter sees them all
        children: list[tuple[EngineRequest, int]] = []
        for index in range(parsed.n):
            self.sequence += 1
            seed = tok.request_seed(c.seed, None if parsed.seed is None else parsed.seed + index, self.sequence)
            output_tokens, reason = api.output_plan(parsed, c.max_model_len, seed)
            child = EngineRequest(request_id if parent is None else f"{index}_{request_id}", parsed.prompt_tokens,
                                  output_tokens, reason, parsed.max_tokens, block_hashes=hashes, parent=parent,
                                  received_at=request.get("received_at"), wakeup=wakeup)
            children.append((child, seed))
        engine = min(self.engines, key=lambda e: e.load_score)
        if parsed.images:
            self._count_images(engine, parsed.images)
            children[0][0].encoder_work = sum(image.encoder_work for image in parsed.images)
        self.in_flight += 1
        try:
            for child, _ in children:
                engine.add(child)
            if parsed.stream:
                return await self._stream(request, parsed, engine, request_id, children, wakeup)
            while not all(child.done for child, _ in children):
                await wakeup.wait()
                wakeup.clear()
            choices = [(api.generated_text(seed, 0, child.generated), child.finish_reason or "abort")
                       for child, seed in children]
            return _json_response(api.full_response(
                kind, request_id, int(time.time()), parsed.model, choices, parsed.prompt_tokens,
                sum(child.generated for child, _ in children)))
        finally:
            for child, _ in children:
                engine.abort(child)  # no-op when finished
            self.in_flight -= 1

    def _remote_image(self, url: str) -> None:
        if not self.remote_image_logged:
            self.remote_image_logged = True
            log.warning("Not fetching image URL %s (and any other http(s) image URL): the simulator assumes "
                               "%dx%d images for them; send data: URLs for exact sizes.", url[:80], *DEFAULT_REMOTE_SIZE)

    def _count_images(self, engine: Engine, images: tuple) -> None:
        queries, hits = self.processor_cache.lookup(list(images))
        metrics = self.metrics.engines[self.engines.index(engine)]
        if getattr(metrics, "mm_cache_queries", None) is not None:  # 0.33's counters; 0.11 has none
            metrics.mm_cache_queries.inc(queries)
            metrics.mm_cache_hits.inc(hits)

    async def _stream(self, request: web.Request, parsed: api.ParsedRequest, engine: Engine, request_id: str,
                      children: list[tuple[EngineRequest, int]], wakeup: asyncio.Event) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        chunks = api.ChunkWriter(parsed.kind, request_id, int(time.time()), parsed.model)
        delivered = [0] * len(children)
        aborted: set[int] = set()
        try:
            await response.prepare(request)
            if parsed.kind == "chat":
                for index in range(len(children)):
                    await response.write(chunks.role(index))
            while True:
                await wakeup.wait()
                wakeup.clear()
                for index, (child, seed) in enumerate(children):
                    if child.generated > delivered[index] and not child.aborted:
                        # Tokens produced while we were not scheduled go out as one chunk, as in vLLM.
                        text = api.generated_text(seed, delivered[index], child.generated)
                        delivered[index] = child.generated
                        await response.write(chunks.text(text, child.finish_reason, index))
                    elif child.finish_reason == "abort" and index not in aborted:
                        aborted.add(index)  # the engine aborted it (shutdown): say so once
                        await response.write(chunks.text("", "abort", index))
                if all(child.done for child, _ in children):
                    break
            if parsed.include_usage:
                await response.write(chunks.usage(parsed.prompt_tokens, sum(c.generated for c, _ in children)))
            await response.write(chunks.done())
            await response.write_eof()
        except ConnectionResetError:
            # The client went away mid-stream: vLLM aborts the request and logs one INFO line.
            self._abort(engine, request_id, children)
        except asyncio.CancelledError:
            self._abort(engine, request_id, children)
            raise
        return response

    def _abort(self, engine: Engine, request_id: str, children: list[tuple[EngineRequest, int]]) -> None:
        if any(not child.done for child, _ in children):
            for child, _ in children:
                engine.abort(child)
            engine_log.info("Aborted request(s) %s.", request_id)

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
        if c.data_parallel_size > 1:
            log.info("Data parallel: %d engines, each on %d GPUs", c.data_parallel_size, c.num_gpus)
        log.info("Maximum concurrency for %d tokens per request: %.2fx", c.max_model_len,
                 c.kv_capacity_tokens / c.max_model_len)
        for index, engine in enumerate(self.engines):
            self._tasks.append(asyncio.create_task(engine.run(), name=f"engine-{index}"))
        self._tasks.append(asyncio.create_task(self._log_stats(), name="stats-log"))
        self.ready = True
        log.info("Application startup complete.")

    async def _log_stats(self) -> None:
        """vLLM's periodic 'Engine 000: ...' throughput line (debug-quiet when idle)."""
        last = [(0, 0, 0, 0)] * len(self.engines)
        while True:
            await asyncio.sleep(STATS_LOG_INTERVAL_S)
            for index, e in enumerate(self.engines):
                prompt, gen, queries, hits = last[index]
                prompt_rate = (e.prompt_tokens_total - prompt) / STATS_LOG_INTERVAL_S
                gen_rate = (e.generation_tokens_total - gen) / STATS_LOG_INTERVAL_S
                new_queries, new_hits = e.pool.stats.queries - queries, e.pool.stats.hits - hits
                last[index] = (e.prompt_tokens_total, e.generation_tokens_total, e.pool.stats.queries, e.pool.stats.hits)
                if prompt_rate or gen_rate or not e.idle:
                    log.info("Engine %03d: Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f "
                             "tokens/s, Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, "
                             "Prefix cache hit rate: %.1f%%", index, prompt_rate, gen_rate, len(e.running),
                             len(e.waiting), e.kv_usage * 100, 100 * new_hits / new_queries if new_queries else 0.0)

    async def drain(self) -> None:
        """SIGTERM: new requests get 503; in-flight ones may finish for drain_seconds; then
        0.33 aborts them (each gets finish_reason "abort") and 0.11 cuts their connections
        (its HTTP server task is cancelled) when the runner closes."""
        loop = asyncio.get_running_loop()
        self.draining = True
        deadline = loop.time() + self.config.drain_seconds
        log.info("Shutting down: draining %d in-flight requests (up to %.0f s)", self.in_flight,
                 self.config.drain_seconds)
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.in_flight and self.config.release.shutdown_timeout_flag:
            log.info("[shutdown] EngineCore: aborting in-flight requests count=%d", self.in_flight)
            for engine in self.engines:
                engine.abort_all(loop.time())
            answered = loop.time() + 2.0  # the handlers write their last chunks
            while self.in_flight and loop.time() < answered:
                await asyncio.sleep(0.01)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def serve(config: SimConfig, started: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (drain, then 0) or a simulated startup failure (1)."""
    server = SimServer(config)
    log.info("vLLM API server version %s (llmops simulator)", config.release.version)
    log.info("args: model=%s served_model_name=%s tp=%d pp=%d dp=%d quantization=%s max_model_len=%d max_num_seqs=%d "
             "max_num_batched_tokens=%d enable_prefix_caching=%s enable_chunked_prefill=%s gpu_memory_utilization=%.2f",
             config.model, list(config.served_model_names), config.tensor_parallel_size,
             config.pipeline_parallel_size, config.data_parallel_size, config.quantization, config.max_model_len,
             config.max_num_seqs, config.max_num_batched_tokens, config.enable_prefix_caching,
             config.enable_chunked_prefill, config.gpu_memory_utilization)
    for flag in config.ignored_flags:
        log.info("simulator ignores flag: %s", flag)
    for note in config.notes:
        log.info("%s", note)
    # Handlers still running at cleanup (0.11 after SIGTERM) are cancelled after this long.
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
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
