"""A continuous-batching engine that steps in real time on the asyncio loop.

Scheduling follows vLLM V1's scheduler in miniature: each step first serves running
requests in admission order (one token each when decoding, a chunk when prefilling),
then admits waiting requests FIFO while there is a sequence slot (max_num_seqs), token
budget (max_num_batched_tokens) and free KV blocks. A running request that needs a new
block when none is free preempts the most recently admitted request, which loses its KV
and returns to the head of the queue to be recomputed (vLLM's recompute preemption).

Time is virtual but anchored to the loop clock: a step that starts at t lasts
timing.step_duration(...) and the next step starts exactly at its end, so the loop's
wake-up jitter does not accumulate. Timestamps written to metrics are these step ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from llmops.sim import timing
from llmops.sim.metrics import VllmMetrics

# A short stall of the process (e.g. a burst of new HTTP requests to parse) is caught up
# by running the next steps without sleeping, so throughput and end-to-end times stay as
# modeled. If the loop falls further behind than this, re-anchor to now and count it:
# the process is overloaded and pretending otherwise would lie.
RESYNC_AFTER_S = 0.5
MAX_WAKE_BIAS_S = 0.002


@dataclass(eq=False)
class EngineRequest:
    request_id: str
    prompt_tokens: int
    max_output_tokens: int
    limit_reason: str  # finish reason when max_output_tokens is reached: "length" or "stop"
    max_tokens_param: int | None = None
    arrival: float = 0.0
    computed: int = 0  # tokens whose KV is in the cache
    generated: int = 0
    blocks: int = 0
    scheduled_at: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    aborted: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.aborted


@dataclass
class StepStats:
    """How faithfully the loop kept the timing model (for benchmarks and /sim/state)."""

    steps: int = 0
    modeled_seconds: float = 0.0
    total_abs_error: float = 0.0  # sum over steps of |actual wake - modeled end|, seconds
    max_lateness: float = 0.0
    resyncs: int = 0


class Engine:
    def __init__(
        self,
        costs: timing.StepCosts,
        kv_capacity_tokens: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        metrics: VllmMetrics,
    ):
        self.costs = costs
        self.total_blocks = kv_capacity_tokens // timing.BLOCK_SIZE
        self.free_blocks = self.total_blocks
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.metrics = metrics
        self.waiting: deque[EngineRequest] = deque()
        self.running: list[EngineRequest] = []
        self.paused = False
        self.stats = StepStats()
        self._work = asyncio.Event()
        self._wake_bias = 0.0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0

    # --- called by the HTTP layer -------------------------------------------------
    def add(self, request: EngineRequest) -> None:
        self.enqueue(request, asyncio.get_running_loop().time())

    def enqueue(self, request: EngineRequest, now: float) -> None:
        request.arrival = now
        self.waiting.append(request)
        self._publish_gauges()
        self._work.set()

    def abort(self, request: EngineRequest) -> None:
        """Client went away: free its slot and KV now, as vLLM does on disconnect."""
        if request.done:
            return
        request.aborted = True
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.free_blocks += request.blocks
        request.blocks = 0
        self._publish_gauges()
        request.wakeup.set()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._work.set()

    def set_costs(self, costs: timing.StepCosts) -> None:
        self.costs = costs

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.free_blocks / self.total_blocks if self.total_blocks else 0.0

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    # --- the loop -----------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        step_start: float | None = None
        while True:
            if self.paused or self.idle:
                self._work.clear()
                await self._work.wait()
                step_start = None
                continue
            now = loop.time()
            if step_start is None or now - step_start > RESYNC_AFTER_S:
                if step_start is not None:
                    self.stats.resyncs += 1
                step_start = now
            plan = self.schedule(step_start)
            if not plan and self.waiting and self.waiting[0].arrival > step_start:
                step_start = None  # catching up on an idle engine: nothing to catch up
                continue
            if not plan:  # only possible while nothing fits; wait for an abort/finish
                self._work.clear()
                await self._work.wait()
                step_start = None
                continue
            tokens = sum(n for _, n in plan)
            context = sum(req.computed + n for req, n in plan)
            duration = timing.step_duration(self.costs, len(plan), tokens, context)
            end = step_start + duration
            delay = end - loop.time() - self._wake_bias
            if delay > 0:
                await asyncio.sleep(delay)
                # The selector rounds timeouts up to whole milliseconds; learn the usual
                # overshoot and ask to wake that much earlier next time.
                overshoot = loop.time() - (end - self._wake_bias)
                self._wake_bias = min(MAX_WAKE_BIAS_S, max(0.0, 0.9 * self._wake_bias + 0.1 * overshoot))
            else:
                await asyncio.sleep(0)  # catching up: still let the HTTP side deliver tokens
            error = loop.time() - end  # > 0 late, < 0 early
            self.stats.steps += 1
            self.stats.modeled_seconds += duration
            self.stats.total_abs_error += abs(error)
            self.stats.max_lateness = max(self.stats.max_lateness, error)
            self.complete(plan, end)
            step_start = end

    # --- one step, split so tests can drive it without a clock ---------------------
    def schedule(self, now: float) -> list[tuple[EngineRequest, int]]:
        """Choose this step's work: [(request, tokens to process)], allocating KV blocks."""
        budget = self.max_num_batched_tokens
        plan: list[tuple[EngineRequest, int]] = []
        preempted = False
        index = 0
        while index < len(self.running) and budget > 0:
            request = self.running[index]
            tokens = min(request.prompt_tokens + request.generated - request.computed, budget)
            needed = timing.blocks_for(request.computed + tokens) - request.blocks
            while needed > self.free_blocks and request in self.running:
                self._preempt(self.running[-1])
                preempted = True
            if request not in self.running:
                break
            self._allocate(request, needed)
            plan.append((request, tokens))
            budget -= tokens
            index += 1
        # Like vLLM, admit nobody in a step that had to preempt: memory is short.
        while not preempted and self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            request = self.waiting[0]
            if request.arrival > now:
                break  # arrived after this (virtual) step began; it joins a later one
            tokens = min(request.prompt_tokens + request.generated - request.computed, budget)
            needed = timing.blocks_for(request.computed + tokens) - request.blocks
            if needed > self.free_blocks:
                break
            self.waiting.popleft()
            self.running.append(request)
            self._allocate(request, needed)
            if request.scheduled_at is None:
                request.scheduled_at = now
                self.metrics.prefix_queries.inc(request.prompt_tokens)
            plan.append((request, tokens))
            budget -= tokens
        self._publish_gauges()
        return plan

    def complete(self, plan: list[tuple[EngineRequest, int]], now: float) -> None:
        """Apply a finished step at time `now`: advance KV, emit tokens, finish requests."""
        metrics = self.metrics
        new_tokens = 0
        prompt_tokens = 0
        any_finished = False
        for request, tokens in plan:
            if request.aborted:
                continue
            request.computed += tokens
            if request.computed < request.prompt_tokens + request.generated:
                continue  # prefill chunk, no token yet
            request.generated += 1
            new_tokens += 1
            if request.generated == 1:
                request.first_token_at = now
                prompt_tokens += request.prompt_tokens
                metrics.ttft.observe(now - request.arrival)
            else:
                metrics.itl.observe(now - request.last_token_at)
            request.last_token_at = now
            if request.generated >= request.max_output_tokens:
                self._finish(request, now)
                any_finished = True
            request.wakeup.set()
        if any_finished:
            self.running = [r for r in self.running if not r.done]
        metrics.iteration_tokens.observe(sum(t for _, t in plan))
        metrics.generation_tokens.inc(new_tokens)
        metrics.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens_total += new_tokens
        self.prompt_tokens_total += prompt_tokens
        self._publish_gauges()

    # --- internals ----------------------------------------------------------------
    def _allocate(self, request: EngineRequest, blocks: int) -> None:
        if blocks > 0:
            self.free_blocks -= blocks
            request.blocks += blocks

    def _preempt(self, victim: EngineRequest) -> None:
        self.running.remove(victim)
        self.free_blocks += victim.blocks
        victim.blocks = 0
        victim.computed = 0
        self.waiting.appendleft(victim)
        self.metrics.preemptions.inc()

    def _finish(self, request: EngineRequest, now: float) -> None:
        request.finish_reason = request.limit_reason
        request.finished_at = now
        self.free_blocks += request.blocks
        request.blocks = 0
        m = self.metrics
        scheduled = request.scheduled_at if request.scheduled_at is not None else request.arrival
        first = request.first_token_at if request.first_token_at is not None else now
        m.request_success[request.finish_reason].inc()
        m.e2e.observe(now - request.arrival)
        m.queue_time.observe(scheduled - request.arrival)
        m.inference_time.observe(now - scheduled)
        m.prefill_time.observe(first - scheduled)
        m.decode_time.observe(now - first)
        m.request_prompt_tokens.observe(request.prompt_tokens)
        m.request_generation_tokens.observe(request.generated)
        if request.max_tokens_param:
            m.request_max_tokens.observe(request.max_tokens_param)
        if m.request_tpot is not None and request.generated > 1:
            m.request_tpot.observe((now - first) / (request.generated - 1))

    def _publish_gauges(self) -> None:
        self.metrics.running.set(len(self.running))
        self.metrics.waiting.set(len(self.waiting))
        self.metrics.kv_usage.set(self.kv_usage)
