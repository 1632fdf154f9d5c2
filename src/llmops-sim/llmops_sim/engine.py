"""A continuous-batching engine that steps in real time on the asyncio loop.

Scheduling follows vLLM V1's scheduler in miniature: each step first serves running
requests in admission order (one token each when decoding, a chunk when prefilling),
then admits waiting requests FIFO while there is a sequence slot (max_num_seqs), token
budget (max_num_batched_tokens) and free KV blocks. An admitted request first looks up
its prompt's cached prefix blocks (kvcache.BlockPool: prefix caching) and only computes
the rest. A running request that needs a new block when none is free preempts the most
recently admitted request, which loses its KV and returns to the head of the queue to be
recomputed (vLLM's recompute preemption).

Two clocks. The *schedule* is the timing model: a step that starts at t lasts
timing.step_duration(...) and the next step starts exactly at its end, so the loop's
wake-up jitter does not accumulate. The *observations* written to the latency histograms
are the loop clock read when vLLM reads its clock (the request's arrival when the HTTP
request is received, the scheduled and token events when the step is applied), so a
stalled process shows in TTFT and inter-token latency as it does with vLLM.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from llmops_sim import timing
from llmops_sim.kvcache import BlockPool
from llmops_sim.metrics import EngineMetrics

# A short stall of the process (e.g. a burst of new HTTP requests to parse) is caught up
# by running the next steps without sleeping, so throughput and end-to-end times stay as
# modeled. If the loop falls further behind than this, re-anchor to now and count it:
# the process is overloaded and pretending otherwise would lie.
RESYNC_AFTER_S = 0.5
MAX_WAKE_BIAS_S = 0.002


@dataclass(eq=False)
class ParentRequest:
    """An `n > 1` request: vLLM fans it out into n child requests and records
    vllm:request_params_n / request_max_num_generation_tokens once all have finished
    (vllm/v1/engine/parallel_sampling.py)."""

    n: int
    unfinished: int
    max_generation_tokens: int = 0


@dataclass(eq=False)
class EngineRequest:
    request_id: str
    prompt_tokens: int
    max_output_tokens: int
    limit_reason: str  # finish reason when max_output_tokens is reached: "length" or "stop"
    max_tokens_param: int | None = None
    block_hashes: tuple[bytes, ...] = ()  # of the prompt's full blocks (kvcache.block_hashes)
    parent: ParentRequest | None = None
    received_at: float | None = None  # loop clock when the HTTP request arrived (vLLM's arrival_time)
    encoder_work: float = 0.0  # vision encoder compute still to run, in prompt-token equivalents
    arrival: float = 0.0  # loop clock when it joined the queue: the schedule's arrival
    computed: int = 0  # tokens whose KV is in the cache
    generated: int = 0
    block_ids: list[int] = field(default_factory=list)
    cached_tokens: int = 0  # prefix-cache hit at the first admission
    preemptions: int = 0
    queued_seen: float | None = None
    scheduled_seen: float | None = None  # observed clock at the first scheduling
    first_token_seen: float | None = None
    last_token_seen: float | None = None
    scheduled_at: float | None = None  # the schedule's (modeled) times
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
    modeled_itl_sum: float = 0.0  # the schedule's gaps between a request's tokens (what the
    modeled_itl_count: int = 0  # histograms would show on an idle, punctual host)


class Engine:
    def __init__(
        self,
        costs: timing.StepCosts,
        kv_capacity_tokens: int,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        metrics: EngineMetrics,
        enable_prefix_caching: bool = True,
        enable_chunked_prefill: bool = True,
    ):
        self.costs = costs
        self.pool = BlockPool(kv_capacity_tokens // timing.BLOCK_SIZE, enable_prefix_caching)
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.chunked_prefill = enable_chunked_prefill
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
        request.queued_seen = now
        if request.received_at is None:
            request.received_at = now
        self.waiting.append(request)
        self._publish_gauges()
        self._work.set()

    def abort(self, request: EngineRequest) -> None:
        """Client went away: free its slot and KV now, as vLLM does on disconnect. vLLM's
        frontend drops the request's state before any stats are recorded
        (OutputProcessor.abort_requests), so no histogram or request_success sample."""
        if request.done:
            return
        request.aborted = True
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.pool.free(request.block_ids)
        request.block_ids = []
        self._publish_gauges()
        request.wakeup.set()

    def abort_all(self, now: float) -> None:
        """Shutdown (0.33, --shutdown-timeout 0): the engine core finishes every unfinished
        request as aborted and sends the outputs, so the frontend records them with
        finished_reason="abort" (vllm/v1/engine/core.py _handle_shutdown)."""
        for request in [*self.running, *self.waiting]:
            request.limit_reason = "abort"
            self._finish(request, now, now)
            request.wakeup.set()
        self.running.clear()
        self.waiting.clear()
        self._publish_gauges()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._work.set()

    def set_costs(self, costs: timing.StepCosts) -> None:
        self.costs = costs

    @property
    def total_blocks(self) -> int:
        return self.pool.num_blocks

    @property
    def free_blocks(self) -> int:
        return self.pool.free_blocks

    @property
    def kv_usage(self) -> float:
        return self.pool.usage

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    @property
    def load_score(self) -> int:
        """vLLM's data-parallel balancing score: waiting x 4 + running (vllm/v1/engine/core_client.py)."""
        return len(self.waiting) * 4 + len(self.running)

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
            plan = self.schedule(step_start, observed=now)
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
            duration = timing.step_duration(self.costs, len(plan), tokens + self.take_encoder_work(plan), context)
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
            woke = loop.time()
            error = woke - end  # > 0 late, < 0 early
            self.stats.steps += 1
            self.stats.modeled_seconds += duration
            self.stats.total_abs_error += abs(error)
            self.stats.max_lateness = max(self.stats.max_lateness, error)
            self.complete(plan, end, observed=woke)
            step_start = end

    @staticmethod
    def take_encoder_work(plan: list[tuple[EngineRequest, int]]) -> float:
        """The vision encoder runs in the step that first schedules a request's prompt (vLLM
        schedules encoder inputs with the chunk that holds their placeholders)."""
        work = sum(request.encoder_work for request, _ in plan)
        for request, _ in plan:
            request.encoder_work = 0.0
        return work

    # --- one step, split so tests can drive it without a clock ---------------------
    def schedule(self, now: float, observed: float | None = None) -> list[tuple[EngineRequest, int]]:
        """Choose this step's work: [(request, tokens to process)], allocating KV blocks.
        `now` is the schedule's time, `observed` the clock reading for the histograms."""
        seen = now if observed is None else observed
        budget = self.max_num_batched_tokens
        plan: list[tuple[EngineRequest, int]] = []
        preempted = False
        index = 0
        while index < len(self.running) and budget > 0:
            request = self.running[index]
            tokens = min(request.prompt_tokens + request.generated - request.computed, budget)
            needed = timing.blocks_for(request.computed + tokens) - len(request.block_ids)
            while needed > self.pool.free_blocks and request in self.running:
                self._preempt(self.running[-1])
                preempted = True
            if request not in self.running:
                break
            if needed > 0:
                request.block_ids.extend(self.pool.allocate(needed))
            plan.append((request, tokens))
            budget -= tokens
            index += 1
        # Like vLLM, admit nobody in a step that had to preempt: memory is short.
        while not preempted and self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
            request = self.waiting[0]
            if request.arrival > now:
                break  # arrived after this (virtual) step began; it joins a later one
            if not self._admit(request, budget, now, seen):
                break
            self.waiting.popleft()
            self.running.append(request)
            tokens = min(request.prompt_tokens + request.generated - request.computed, budget)
            plan.append((request, tokens))
            budget -= tokens
        self._publish_gauges()
        return plan

    def _admit(self, request: EngineRequest, budget: int, now: float, seen: float) -> bool:
        """Look up the cached prefix and allocate blocks for the first chunk; False if it does not fit."""
        hit_blocks = self.pool.cached_prefix(request.block_hashes, request.prompt_tokens)
        hit_tokens = len(hit_blocks) * timing.BLOCK_SIZE
        m = self.metrics
        m.prefix_queries.inc(request.prompt_tokens)
        m.prefix_hits.inc(hit_tokens)
        remaining = request.prompt_tokens + request.generated - hit_tokens
        tokens = min(remaining, budget)
        if not self.chunked_prefill and tokens < remaining:
            return False  # without chunked prefill the whole prompt goes in one step
        needed = timing.blocks_for(hit_tokens + tokens) - len(hit_blocks)
        if needed + self.pool.evictable_among(hit_blocks) > self.pool.free_blocks:
            return False
        self.pool.touch(hit_blocks)
        request.block_ids = hit_blocks + self.pool.allocate(needed)
        request.computed = hit_tokens
        if request.scheduled_at is None:
            request.scheduled_at = now
            request.scheduled_seen = seen
            request.cached_tokens = hit_tokens
            if m.prompt_tokens_cached is not None:
                m.prompt_tokens_cached.inc(hit_tokens)
                m.prompt_tokens_cached_device.inc(hit_tokens)
        return True

    def complete(self, plan: list[tuple[EngineRequest, int]], now: float, observed: float | None = None) -> None:
        """Apply a finished step: `now` is its modeled end, `observed` the clock when it is
        applied (vLLM's engine-core and output-processor timestamps)."""
        seen = now if observed is None else observed
        metrics = self.metrics
        new_tokens = 0
        prompt_tokens = 0
        any_finished = False
        for request, tokens in plan:
            if request.aborted:
                continue
            request.computed += tokens
            self.pool.cache_full_blocks(request.block_ids, request.block_hashes, request.computed)
            if request.computed < request.prompt_tokens + request.generated:
                continue  # prefill chunk, no token yet
            request.generated += 1
            new_tokens += 1
            if request.generated == 1:
                request.first_token_at = now
                request.first_token_seen = seen
                prompt_tokens += request.prompt_tokens
                metrics.ttft.observe(seen - request.received_at)
                if metrics.prompt_tokens_computed is not None:
                    metrics.prompt_tokens_computed.inc(request.prompt_tokens - request.cached_tokens)
                    metrics.prompt_tokens_hit.inc(request.cached_tokens)
            else:
                self.stats.modeled_itl_sum += now - request.last_token_at
                self.stats.modeled_itl_count += 1
                metrics.itl.observe(seen - request.last_token_seen)
                if metrics.tpot_deprecated is not None:
                    metrics.tpot_deprecated.observe(seen - request.last_token_seen)
            request.last_token_at = now
            request.last_token_seen = seen
            if request.generated >= request.max_output_tokens:
                self._finish(request, now, seen)
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
    def _preempt(self, victim: EngineRequest) -> None:
        self.running.remove(victim)
        self.pool.free(victim.block_ids)
        victim.block_ids = []
        victim.computed = 0
        victim.preemptions += 1
        self.waiting.appendleft(victim)
        self.metrics.preemptions.inc()

    def _finish(self, request: EngineRequest, now: float, seen: float) -> None:
        """Record vLLM's per-request stats (vllm/v1/metrics/stats.py update_from_finished_request)."""
        request.finish_reason = request.limit_reason
        request.finished_at = now
        self.pool.free(request.block_ids)
        request.block_ids = []
        m = self.metrics
        scheduled = request.scheduled_seen if request.scheduled_seen is not None else request.queued_seen
        first = request.first_token_seen if request.first_token_seen is not None else seen
        m.request_success[request.finish_reason].inc()
        m.e2e.observe(seen - request.received_at)
        m.queue_time.observe(scheduled - request.queued_seen)
        m.inference_time.observe(seen - scheduled)
        m.prefill_time.observe(first - scheduled)
        m.decode_time.observe(seen - first)
        m.request_prompt_tokens.observe(request.prompt_tokens)
        m.request_generation_tokens.observe(request.generated)
        if request.max_tokens_param:
            m.request_max_tokens.observe(request.max_tokens_param)
        if m.request_tpot is not None:
            m.request_tpot.observe((seen - first) / (request.generated - 1) if request.generated > 1 else 0.0)
        if m.request_preemptions is not None:
            m.request_preemptions.observe(request.preemptions)
            m.request_prefill_computed.observe(request.prompt_tokens - request.cached_tokens)
        self._observe_parent(request)

    def _observe_parent(self, request: EngineRequest) -> None:
        m = self.metrics
        if m.request_n is None:
            return
        parent = request.parent
        if parent is None:
            m.request_max_generation_tokens.observe(request.generated)
            m.request_n.observe(1)
            return
        parent.unfinished -= 1
        parent.max_generation_tokens = max(parent.max_generation_tokens, request.generated)
        if parent.unfinished == 0:
            m.request_max_generation_tokens.observe(parent.max_generation_tokens)
            m.request_n.observe(parent.n)

    def _publish_gauges(self) -> None:
        m = self.metrics
        m.running.set(len(self.running))
        m.waiting.set(len(self.waiting))
        if m.waiting_capacity is not None:
            m.waiting_capacity.set(len(self.waiting))
        m.kv_usage.set(self.kv_usage)
