"""The load generator: runs a scenario's phases against the targets and returns a Report.

Python API (async):  report = await run_load(LoadConfig(url="http://127.0.0.1:8000", rate=5, duration=30))
Blocking wrapper:    report = run_load_sync(LoadConfig(...))
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Callable

import aiohttp

from llmops_load import scenario as sc
from llmops_load.client import RequestSpec, make_prompt, make_system_prompt, send
from llmops_load.images import ImageMix
from llmops_load.report import Report, RequestResult, build_report
from llmops_load.targets import ServiceTargets, TargetError, Targets, parse_service_ref


@dataclass
class LoadConfig:
    url: str | None = None  # base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000
    service: str | None = None  # NAMESPACE/NAME of a Kubernetes Service (client-side balancing)
    kubeconfig: str | None = None
    port: str | None = None  # Service endpoint port name or number (default: the only / 'http')
    api: str = "chat"  # or "completions"
    model: str | None = None  # default: the first model /v1/models lists
    prompt_tokens: int = 128
    max_tokens: int = 64
    stream: bool = True
    ignore_eos: bool = True  # fixed output lengths, as vLLM's own benchmarks do
    duration: float = 30.0
    rate: float | None = None  # open loop, requests/s
    concurrency: int | None = None  # closed loop, users
    arrival: str = "poisson"  # or "constant"
    scenario: sc.Scenario | None = None  # overrides duration/rate/concurrency/arrival
    max_requests: int | None = None
    timeout: float = 60.0  # per request, and for the final drain
    seed: int = 0
    progress_interval: float = 5.0  # seconds between progress lines; 0 = silent
    progress: Callable[[str], None] | None = None  # default: print to stderr
    max_in_flight: int = 5000  # open loop: arrivals beyond this count as 'overload' errors
    endpoint_refresh: float = 2.0  # within the preStop drain's endpoint-propagation delay (5 s)
    shared_prefix_tokens: int = 0  # a system prompt every request shares (measures prefix caching)
    sessions: int = 0  # multi-turn conversations the requests cycle over (0: independent requests)
    turns: int = 1  # turns per conversation; each turn resends the conversation so far
    images: ImageMix | None = None  # chat requests with images (a scenario's `images` wins)


def plan_scenario(config: LoadConfig) -> sc.Scenario:
    """The phases to run, from a scenario or from --rate/--concurrency and --duration. Pure."""
    if config.scenario is not None:
        if config.rate is not None or config.concurrency is not None:
            raise sc.ScenarioError("give either a scenario or --rate/--concurrency, not both")
        return config.scenario
    if config.shared_prefix_tokens < 0 or config.sessions < 0:
        raise sc.ScenarioError("--shared-prefix-tokens and --sessions must be >= 0")
    if config.turns < 1 or (config.turns > 1 and config.sessions < 1):
        raise sc.ScenarioError("--turns must be >= 1 and needs --sessions N (conversations to cycle over)")
    if (config.rate is None) == (config.concurrency is None):
        raise sc.ScenarioError("choose one mode: --rate R (open loop), --concurrency N (closed loop) "
                               "or --scenario FILE")
    if config.duration <= 0:
        raise sc.ScenarioError("--duration must be positive")
    if config.concurrency is not None:
        if config.concurrency < 1:
            raise sc.ScenarioError("--concurrency must be >= 1")
        return sc.Scenario((sc.Phase(config.duration, concurrency=config.concurrency),), config.arrival)
    if config.rate <= 0:
        raise sc.ScenarioError("--rate must be positive")
    return sc.Scenario((sc.Phase(config.duration, config.rate, config.rate),), config.arrival)


def _make_targets(config: LoadConfig) -> Targets:
    if (config.url is None) == (config.service is None):
        raise TargetError("give exactly one of --url URL or --service NAMESPACE/NAME")
    if config.url:
        return Targets([config.url.rstrip("/")])
    namespace, name = parse_service_ref(config.service)
    return ServiceTargets(namespace, name, config.kubeconfig, config.port, config.endpoint_refresh)


async def _discover_model(session: aiohttp.ClientSession, base_url: str, timeout: float) -> str:
    try:
        async with asyncio.timeout(timeout):
            async with session.get(base_url + "/v1/models") as response:
                data = await response.json(content_type=None)
                return data["data"][0]["id"]
    except (aiohttp.ClientError, TimeoutError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise TargetError(f"cannot list models at {base_url}/v1/models ({type(exc).__name__}); "
                          "fix: check the URL or pass --model") from None


class _Run:
    """State of one run: launched tasks, finished results, counters for progress."""

    def __init__(self, config: LoadConfig, targets: Targets, session: aiohttp.ClientSession, spec: RequestSpec,
                 arrival: str):
        self.config, self.targets, self.session, self.spec = config, targets, session, spec
        self.arrival = arrival
        self.results: list[RequestResult] = []
        self.in_flight: set[asyncio.Task] = set()
        self.launched = 0
        self.start = time.perf_counter()
        self.phase = 0

    def budget_left(self) -> bool:
        return self.config.max_requests is None or self.launched < self.config.max_requests

    def _failed_now(self, error: str, target: str = "") -> None:
        now = time.perf_counter()
        self.results.append(RequestResult(target, now, now, False, error, phase=self.phase))

    async def one(self) -> RequestResult | None:
        target = self.targets.next()
        self.launched += 1
        sequence = self.launched
        if target is None:
            self._failed_now("no_ready_endpoints")
            return None
        result = await send(self.session, target, self.spec, self.config.timeout, sequence)
        result.phase = self.phase
        self.results.append(result)
        return result

    def launch(self) -> None:
        if len(self.in_flight) >= self.config.max_in_flight:
            self.launched += 1
            self._failed_now("overload")
            return
        task = asyncio.create_task(self.one())
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def open_phase(self, phase: sc.Phase, rng: random.Random) -> None:
        phase_start = time.perf_counter()
        limit = None if self.config.max_requests is None else self.config.max_requests - self.launched
        for offset in sc.arrival_times(phase, self.arrival, rng, limit):
            delay = phase_start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.budget_left():
                return
            self.launch()
        remaining = phase_start + phase.duration - time.perf_counter()
        if remaining > 0 and self.budget_left():
            await asyncio.sleep(remaining)

    async def closed_phase(self, phase: sc.Phase) -> None:
        phase_end = time.perf_counter() + phase.duration

        async def user() -> None:
            while time.perf_counter() < phase_end and self.budget_left():
                if await self.one() is None:
                    await asyncio.sleep(0.5)  # no endpoints yet; do not spin

        await asyncio.gather(*(user() for _ in range(phase.concurrency)))

    async def drain(self) -> None:
        if self.in_flight:
            done, pending = await asyncio.wait(set(self.in_flight), timeout=self.config.timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                for _ in pending:
                    self._failed_now("timeout")

    async def progress_loop(self, emit: Callable[[str], None]) -> None:
        interval = self.config.progress_interval
        seen = 0
        while True:
            await asyncio.sleep(interval)
            recent = self.results[seen:]
            seen = len(self.results)
            ok = [r for r in recent if r.ok]
            ttfts = sorted(r.ttft for r in ok if r.ttft is not None)
            ttft = f"{ttfts[len(ttfts) // 2]:.3f}s" if ttfts else "-"
            failed = sum(1 for r in self.results if not r.ok)
            emit(f"[{time.perf_counter() - self.start:6.1f}s] phase {self.phase + 1} sent {self.launched} "
                 f"done {len(self.results)} failed {failed} in-flight {len(self.in_flight)} | "
                 f"{len(ok) / interval:.1f} req/s {sum(r.output_tokens for r in ok) / interval:.0f} tok/s "
                 f"ttft p50 {ttft} | targets {len(self.targets.urls)}")


async def run_load(config: LoadConfig) -> Report:
    """Run the whole scenario and return the report; stops by itself after the last phase
    (plus at most `timeout` for in-flight requests) or after `max_requests`."""
    scenario = plan_scenario(config)
    targets = _make_targets(config)
    if isinstance(targets, ServiceTargets):
        await targets.resolve()
    api = scenario.api or config.api
    images = scenario.images or config.images
    if images is not None and api != "chat":
        raise sc.ScenarioError("images need the chat API; fix: drop --api completions or the images")
    prompt_tokens = scenario.prompt_tokens or config.prompt_tokens
    max_tokens = scenario.max_tokens or config.max_tokens
    emit = config.progress or (lambda line: print(line, file=sys.stderr, flush=True))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        first = targets.next()
        if config.model:
            model = config.model
        elif first is None:
            raise TargetError(f"service {config.service} has no ready endpoints; fix: wait for pods or pass --model")
        else:
            model = await _discover_model(session, first, min(config.timeout, 10.0))
        spec = RequestSpec(api, model, make_prompt(prompt_tokens), prompt_tokens + config.shared_prefix_tokens,
                           max_tokens, config.stream, config.ignore_eos,
                           shared_prefix=make_system_prompt(config.shared_prefix_tokens),
                           sessions=config.sessions, turns=config.turns, seed=config.seed, images=images)
        run = _Run(config, targets, session, spec, scenario.arrival)
        helpers = [asyncio.create_task(targets.refresh_forever())]
        if config.progress_interval > 0:
            helpers.append(asyncio.create_task(run.progress_loop(emit)))
        rng = random.Random(config.seed)
        try:
            for index, phase in enumerate(scenario.phases):
                run.phase = index
                if config.progress_interval > 0:
                    emit(f"phase {index + 1}/{len(scenario.phases)}: {phase.describe()}")
                if not run.budget_left():
                    break
                if phase.closed_loop:
                    await run.closed_phase(phase)
                else:
                    await run.open_phase(phase, rng)
            await run.drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    ends = [r.end for r in run.results]
    elapsed = (max(ends) - run.start) if ends else time.perf_counter() - run.start
    return build_report(run.results, elapsed if not math.isnan(elapsed) else 0.0)


def run_load_sync(config: LoadConfig) -> Report:
    return asyncio.run(run_load(config))
