"""The activator's HTTP front (aiohttp): hold, wake, forward with streams intact.

Every request is for one LLMDeployment with spec.activator.enabled (its Service name in
Host, else its served model name); anything else gets 404 (no open proxy). A request is
forwarded to a Ready serving pod of that deployment; while there is none it is held (bounded
by spec.activator.queueSize and holdSeconds, see policy.py) and the deployment is woken. The
response is relayed chunk by chunk as it arrives, so an SSE stream reaches the client token by
token and ends with the replica's own `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Optional

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from llmops.activator import metrics, policy
from llmops.activator.registry import Held, Registry

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) and those aiohttp sets itself for the new connection.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
HELD_HEADER = "X-Llmops-Held-Seconds"
CONNECT_RETRY_PAUSE = 0.2  # a replica that went away between the readiness check and the connect


def _error(status: int, message: str, retry_after: Optional[int] = None, kind: str = "activator") -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"message": message, "type": kind, "code": status}}  # OpenAI's error shape
    return web.json_response(body, status=status, headers=headers)


def _model_of(body: bytes) -> Optional[str]:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None
    return model if isinstance(model, str) else None


class Activator:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.session: Optional[aiohttp.ClientSession] = None

    async def start(self) -> None:
        # No connection limit: each held stream is one upstream connection once forwarded.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        body = await request.read()
        await self.registry.synced.wait()
        host, model = request.headers.get("Host"), _model_of(body)
        h = self.registry.find(host, model)
        if h is None:  # created a moment ago, and routed here before our next periodic refresh?
            await self.registry.refresh_since(arrived)
            h = self.registry.find(host, model)
        if h is None:
            metrics.REFUSED.labels("", "", "unknown-deployment").inc()
            return _error(404, "the llmops activator holds requests only for LLMDeployments with "
                               "spec.activator.enabled; none matches this request's Host (NAME.NAMESPACE) or its "
                               "model; fix: call the deployment's Service, or send the served model name",
                          kind="not_found")
        labels = (h.namespace, h.name)
        urls = await self.registry.ready_urls(h)
        verdict = policy.admit(h.held, h.queue_size, bool(urls), h.cold_start, self.registry.waking_for(h))
        if not verdict.hold:
            metrics.REFUSED.labels(*labels, verdict.reason).inc()
            return _error(verdict.status, verdict.message, verdict.retry_after, kind="rate_limit_exceeded")
        held = not urls
        if held:
            metrics.HELD.labels(*labels).inc()
        return await self._serve(request, h, body, arrived, held)

    async def _serve(self, request: web.Request, h: Held, body: bytes, arrived: float, held: bool) -> web.StreamResponse:
        labels = (h.namespace, h.name)
        deadline = arrived + h.hold_seconds
        holding = False  # counted in h.held and the holding gauge right now

        def hold(on: bool) -> None:
            nonlocal holding
            if on != holding:
                h.held += 1 if on else -1
                metrics.HOLDING.labels(*labels).inc(1 if on else -1)
                holding = on
            if on:
                self.registry.watch(h)

        hold(held)
        try:
            while True:
                url = await self._ready_url(h, deadline)
                if url is None:
                    verdict = policy.hold_timeout(h.hold_seconds, h.cold_start, self.registry.waking_for(h))
                    if h.key not in self.registry.deployments:
                        verdict = policy.Verdict(False, 503, "hold-timeout", policy.RETRY_AFTER_UNKNOWN,
                                                 "the LLMDeployment was deleted or its activator turned off")
                    metrics.REFUSED.labels(*labels, verdict.reason).inc()
                    return _error(verdict.status, verdict.message, verdict.retry_after, kind="service_unavailable")
                waited = time.monotonic() - arrived  # the hold ends when a Ready replica is there
                hold(False)
                try:
                    upstream = await self.session.request(
                        request.method, url + request.rel_url.raw_path_qs, data=body,
                        headers={k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP})
                except aiohttp.ClientConnectionError as exc:
                    # The replica went between our readiness check and the connect: wait for another.
                    log.info("%s/%s: %s not reachable (%s); waiting for a Ready replica", *labels, url, exc)
                    h.set_urls([u for u in h.urls if u != url], time.monotonic())
                    if not held:
                        held = True
                        metrics.HELD.labels(*labels).inc()
                    hold(True)
                    await asyncio.sleep(CONNECT_RETRY_PAUSE)
                    continue
                break
        except asyncio.CancelledError:  # aiohttp cancels the handler when the client disconnects
            if holding:
                metrics.ABANDONED.labels(*labels).inc()
            raise
        finally:
            hold(False)
        if held:
            metrics.HOLD_SECONDS.labels(*labels).observe(waited)
        metrics.FORWARDED.labels(*labels).inc()
        return await self._relay(request, upstream, labels, waited if held else None)

    async def _ready_url(self, h: Held, deadline: float) -> Optional[str]:
        """A Ready replica's URL, waiting for one until `deadline` (monotonic). While requests
        are held the registry's watcher keeps h.urls current and sets h.ready."""
        while h.key in self.registry.deployments:
            if h.urls:
                return h.next_url()
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(h.ready.wait(), timeout=left)
            except asyncio.TimeoutError:
                return None
        return None

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, labels: tuple[str, str],
                     held_seconds: Optional[float]) -> web.StreamResponse:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        if held_seconds is not None:  # how long this request waited for a replica (clients, tests, logs)
            headers[HELD_HEADER] = f"{held_seconds:.3f}"
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            # The replica cut the stream (or died): the client sees the cut; it is counted.
            metrics.REFUSED.labels(*labels, "upstream-error").inc()
            log.warning("%s/%s: upstream stream cut: %s", *labels, exc)
            raise
        finally:
            upstream.release()
        return response


async def metrics_handler(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health_handler(request: web.Request) -> web.Response:
    registry: Registry = request.app["registry"]
    if not registry.synced.is_set():
        return web.Response(status=503, text="LLMDeployments not listed yet\n")
    return web.Response(text="ok\n")


def build_apps(registry: Registry) -> tuple[web.Application, web.Application, Activator]:
    activator = Activator(registry)
    proxy = web.Application(client_max_size=64 * 1024 * 1024)  # multimodal prompts carry images
    proxy.router.add_route("*", "/{tail:.*}", activator.handle)
    admin = web.Application()
    admin["registry"] = registry
    admin.router.add_get("/metrics", metrics_handler)
    admin.router.add_get("/healthz", health_handler)
    return proxy, admin, activator


async def serve(registry: Registry, host: str, port: int, metrics_port: int) -> None:
    proxy, admin, activator = build_apps(registry)
    await activator.start()
    refresher = asyncio.create_task(registry.refresh_forever())
    runners = []
    try:
        for app, p in ((proxy, port), (admin, metrics_port)):
            # handler_cancellation: a client that goes away while held frees its queue slot now
            # (aiohttp >= 3.8 no longer cancels handlers of closed connections by default).
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            await web.TCPSite(runner, host, p).start()
            runners.append(runner)
        log.info("activator serving on %s:%d (metrics and /healthz on %d)", host, port, metrics_port)
        await asyncio.Event().wait()
    finally:
        refresher.cancel()
        for runner in runners:
            await runner.cleanup()
        await activator.close()
