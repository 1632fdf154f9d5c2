"""The activator's view of the deployments it holds for: LLMDeployments with
spec.activator.enabled, refreshed from the API server (through kube.py), and per deployment
the Ready serving pods it may forward to. It never forwards anywhere else (no open proxy)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from llmops.activator import policy, routing
from llmops.api.v1alpha1 import VLLM_PORT
from llmops.autoscale.actuator import WAKE_ANNOTATION
from llmops.kube import Kube
from llmops.render.meta import label_selector, selector_labels
from llmops.api.v1alpha1 import LLMDeployment

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5        # pod readiness while requests are held (one LIST per waking deployment)
READY_CACHE_SECONDS = 2.0  # how long a known Ready list is trusted for requests that are not held


@dataclass
class Held:
    """One deployment the activator holds for."""

    namespace: str
    name: str
    served_name: str
    queue_size: int
    hold_seconds: int
    multi_node: bool
    replicas: int
    selector: str
    cold_start: Optional[float] = None
    held: int = 0
    urls: list[str] = field(default_factory=list)
    urls_at: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    waking_since: Optional[float] = None
    last_wake_at: Optional[float] = None
    watcher: Optional[asyncio.Task] = None
    _cycle: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def set_urls(self, urls: list[str], now: float) -> None:
        if urls != self.urls:
            self._cycle = itertools.cycle(urls) if urls else None
        self.urls, self.urls_at = urls, now
        if urls:
            self.ready.set()
        else:
            self.ready.clear()

    def next_url(self) -> Optional[str]:
        return next(self._cycle) if self._cycle else None


def held_from_body(body: dict[str, Any]) -> Optional[Held]:
    try:
        d = LLMDeployment.model_validate({k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec")})
    except ValueError:
        return None  # the operator reports invalid specs; we hold for nothing we cannot read
    if not d.spec.activator.enabled:
        return None
    status = body.get("status") or {}
    return Held(
        namespace=d.namespace, name=d.name, served_name=d.spec.model.served_name or d.name,
        queue_size=d.spec.activator.queue_size, hold_seconds=d.spec.activator.hold_seconds,
        multi_node=int(status.get("nodesPerReplica") or 1) > 1, replicas=d.spec.replicas,
        selector=label_selector(selector_labels(d)),
        cold_start=policy.cold_start_seconds((status.get("autoscaling") or {}).get("coldStarts")),
    )


class Registry:
    def __init__(self, kube: Kube, refresh_seconds: float = 2.0, upstream_port: int = VLLM_PORT):
        self.kube, self.refresh_seconds = kube, refresh_seconds
        self.upstream_port = upstream_port  # vLLM's port in every serving pod (a benchmark moves it)
        self.deployments: dict[tuple[str, str], Held] = {}
        self.synced = asyncio.Event()
        self.refreshed_at = 0.0
        self._refreshing: Optional[asyncio.Task] = None

    async def refresh_since(self, since: float) -> None:
        """Make sure the view comes from a LIST started after `since` (monotonic); concurrent
        callers share one LIST, so a burst of misses costs one at a time."""
        while self.refreshed_at < since:
            if self._refreshing is None or self._refreshing.done():
                self._refreshing = asyncio.ensure_future(self.refresh())
            try:
                await asyncio.shield(self._refreshing)
            except Exception as exc:
                log.warning("refreshing LLMDeployments failed: %s", exc)
                return

    async def refresh(self) -> None:
        started = time.monotonic()
        bodies = await asyncio.to_thread(self.kube.list_llmdeployments)
        seen = set()
        for body in bodies:
            fresh = held_from_body(body)
            if fresh is None:
                continue
            seen.add(fresh.key)
            current = self.deployments.get(fresh.key)
            if current is None:
                self.deployments[fresh.key] = fresh
            else:  # keep the live state (held count, events, watcher), take the new spec
                for attr in ("served_name", "queue_size", "hold_seconds", "multi_node", "replicas", "selector",
                             "cold_start"):
                    setattr(current, attr, getattr(fresh, attr))
        for key in set(self.deployments) - seen:
            gone = self.deployments.pop(key)
            gone.ready.set()  # held requests re-check and are refused (the deployment went)
        self.refreshed_at = started
        self.synced.set()

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # API server blips: keep the last view
                log.warning("refreshing LLMDeployments failed: %s", exc)
            await asyncio.sleep(self.refresh_seconds)

    def find(self, host: Optional[str], model: Optional[str]) -> Optional[Held]:
        """The deployment a request is for: its Service name in Host (NAME.NAMESPACE[.svc...]),
        else the one held deployment serving `model`; None if neither names one unambiguously."""
        if host:
            parts = host.rsplit(":", 1)[0].split(".")
            if len(parts) >= 2 and (parts[1], parts[0]) in self.deployments:
                return self.deployments[(parts[1], parts[0])]
        if model:
            matches = [h for h in self.deployments.values() if h.served_name == model]
            if len(matches) == 1:
                return matches[0]
        return None

    async def ready_urls(self, h: Held, max_age: float = READY_CACHE_SECONDS) -> list[str]:
        now = time.monotonic()
        if now - h.urls_at > max_age:
            pods = await asyncio.to_thread(self.kube.list_pods, h.namespace, h.selector)
            ready = routing.ready_serving_pods(pods, h.multi_node)
            h.set_urls(sorted(f"http://{p['status']['podIP']}:{self.upstream_port}" for p in ready), time.monotonic())
        return h.urls

    def watch(self, h: Held) -> None:
        """While requests are held: poll readiness, wake the deployment, release the waiters."""
        if h.watcher is None or h.watcher.done():
            h.watcher = asyncio.create_task(self._watch(h))

    async def _watch(self, h: Held) -> None:
        h.waking_since = time.monotonic()
        try:
            while h.held > 0 and h.key in self.deployments:
                try:
                    if await self.ready_urls(h, max_age=0):
                        await asyncio.sleep(POLL_SECONDS)  # waiters are running; keep the list fresh
                        continue
                    now = time.monotonic()
                    if policy.should_wake(h.replicas, h.last_wake_at, now):
                        await asyncio.to_thread(self.kube.annotate_llmdeployment, h.name, h.namespace,
                                                {WAKE_ANNOTATION: f"activator-{time.time():.3f}"})
                        h.last_wake_at = now
                        log.info("woke %s/%s (%d held)", h.namespace, h.name, h.held)
                except Exception as exc:
                    log.warning("%s/%s: readiness poll or wake failed: %s", h.namespace, h.name, exc)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            h.waking_since = None

    def waking_for(self, h: Held) -> Optional[float]:
        return None if h.waking_since is None else time.monotonic() - h.waking_since
