"""One vLLM replica as a continuous-batching engine, timed by the simulator's own model.

Setup (fixed): Llama-3.1-8B in bf16 on one NVIDIA-A100-SXM4-80GB with vLLM's defaults for
that GPU behind the OpenAI server (max_num_seqs 256, max_num_batched_tokens 2048, chunked
prefill, gpu_memory_utilization 0.9). Step durations are `llmops_sim.timing.step_duration`,
the KV capacity is `llmops_sim.timing.kv_capacity_tokens`, both from `llmops_sim.profiles`.

Scheduling follows vLLM V1 (and `llmops_sim.engine`): every step serves running requests
first (one token per decoding sequence, then the next chunk of prompts still prefilling),
then admits waiting requests FIFO while there is a sequence slot, token budget and KV.
The step that finishes a prompt emits the first token. When decoding needs KV that is not
free, the most recently admitted request is preempted: it loses its KV and goes back to
the head of the queue to be recomputed (prompt + tokens so far); nobody is admitted in
that step. A waiting request whose client gave up (no first token within the timeout) is
aborted.

Why it is fast and still step-exact: a step with prefill work is simulated one by one (a
prompt takes one or two such steps), but a run of decode-only steps has a constant batch
until the next event (a request finishing, an arrival, KV running out), so its length is
found in closed form: each step adds one token per sequence to the context, the step
durations form an arithmetic series, and finishes are kept in a heap keyed by the
replica's decode-step counter at which each request emits its last token.

KV is accounted in tokens with one block of slack per running sequence (vLLM allocates
whole 16-token blocks), which is conservative by at most half a block per sequence.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from llmops_sim import profiles, timing

MODEL_PARAMS_B = 8.0          # Llama-3.1-8B
GPU = "NVIDIA-A100-SXM4-80GB"
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default


@dataclass(frozen=True)
class EngineConfig:
    costs: timing.StepCosts
    kv_capacity_tokens: int
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    timeout_seconds: float = 60.0  # client gives up without a first token


@lru_cache(maxsize=None)
def default_engine_config(timeout_seconds: float = 60.0) -> EngineConfig:
    gpu = profiles.DEFAULT_GPUS[GPU]
    shape = profiles.shape_for(MODEL_PARAMS_B)
    weights = timing.weights_bytes(MODEL_PARAMS_B, profiles.bytes_per_param("bfloat16", None))
    kv_token = timing.kv_bytes_per_token(shape, profiles.kv_bytes_per_element("auto", "bfloat16"))
    efficiency = profiles.Efficiency()
    return EngineConfig(
        costs=timing.step_costs(gpu, 1, MODEL_PARAMS_B, weights, kv_token, efficiency),
        kv_capacity_tokens=timing.kv_capacity_tokens(
            gpu, 1, GPU_MEMORY_UTILIZATION, weights, kv_token, efficiency.activation_reserve_gib
        ),
        timeout_seconds=timeout_seconds,
    )


class Request:
    """One client request; the engine fills in its timestamps."""

    __slots__ = (
        "arrival", "prompt", "output", "generated", "computed", "target", "scheduled_at",
        "first_token_at", "finished_at", "timed_out", "join_step", "join_generated", "epoch",
    )

    def __init__(self, arrival: float, prompt: int, output: int):
        self.arrival = arrival
        self.prompt = prompt
        self.output = max(1, output)
        self.generated = 0
        self.computed = 0                 # prefill progress towards target
        self.target = prompt              # tokens to (re)compute before the next token
        self.scheduled_at: Optional[float] = None
        self.first_token_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self.timed_out = False
        self.join_step = 0                # decode-step counter when it started decoding
        self.join_generated = 0
        self.epoch = 0                    # bumped on preemption: stale heap entries are skipped


class ReplicaEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.clock = 0.0
        self.pending: deque[Request] = deque()   # dispatched, arrival still ahead of the clock
        self.waiting: deque[Request] = deque()
        self.prefilling: list[Request] = []       # admitted, prompt not fully computed
        self.admitted: dict[int, Request] = {}    # running, in admission order (preemption: newest)
        self.finishes: list[tuple[int, int, Request, int]] = []  # (last-token step, id, req, epoch)
        self.decoding = 0
        self.step_counter = 0                     # decode steps taken (one token per decoder each)
        self.context_tokens = 0                   # KV tokens of running requests before a step
        # vLLM's counters, as scraped from /metrics
        self.finished_total = 0                   # vllm:request_success_total (aborts included)
        self.served_total = 0                     # vllm:request_inference_time_seconds_count
        self.inference_seconds_sum = 0.0          # vllm:request_inference_time_seconds_sum
        self.preemptions = 0                      # vllm:num_preemptions_total
        self.timeouts = 0

    # --- what /metrics and the proxy see ---------------------------------------------
    @property
    def running(self) -> int:
        return self.decoding + len(self.prefilling)

    def waiting_count(self, now: float) -> int:
        """vllm:num_requests_waiting after aborting requests whose client gave up by `now`."""
        self._abort_expired(now)
        return len(self.waiting) + sum(1 for r in self.pending if r.arrival <= now)

    @property
    def kv_usage(self) -> float:
        """vllm:kv_cache_usage_perc (0..1)."""
        return self.context_tokens / self.config.kv_capacity_tokens

    @property
    def idle(self) -> bool:
        return not (self.pending or self.waiting or self.prefilling or self.decoding)

    def submit(self, request: Request) -> None:
        """Requests must be submitted in arrival order."""
        self.pending.append(request)

    # --- the loop -----------------------------------------------------------------------
    def advance(self, until: float) -> None:
        """Run steps that start before `until` (the last may end after it)."""
        pending, waiting = self.pending, self.waiting
        while True:
            while pending and pending[0].arrival <= self.clock:
                waiting.append(pending.popleft())
            if not (waiting or self.prefilling or self.decoding):
                if pending and pending[0].arrival < until:
                    self.clock = pending[0].arrival
                    continue
                self.clock = max(self.clock, until)
                return
            if self.clock >= until:
                return
            self._step(until)

    def _kv_free(self) -> int:
        return self.config.kv_capacity_tokens - self.context_tokens - timing.BLOCK_SIZE * (
            self.decoding + len(self.prefilling)
        )

    def _step(self, until: float) -> None:
        config = self.config
        # 1. decoding sequences each need one more token of KV; preempt the newest until they fit
        preempted = False
        while self.decoding and self._kv_free() < self.decoding:
            self._preempt_newest()
            preempted = True
        decoders = self.decoding
        budget = config.max_num_batched_tokens - decoders
        free = self._kv_free() - decoders
        plan: list[tuple[Request, int]] = []
        prefill_tokens = 0
        memory_short = preempted
        # 2. prompts already admitted continue in admission order
        for request in self.prefilling:
            if budget <= 0:
                break
            tokens = min(request.target - request.computed, budget, free - prefill_tokens)
            if tokens <= 0:
                memory_short = True
                break
            plan.append((request, tokens))
            prefill_tokens += tokens
            budget -= tokens
        # 3. admit from the queue, like vLLM not in a step that is short of memory
        waiting = self.waiting
        while not memory_short and waiting and budget > 0 and self.running < config.max_num_seqs:
            request = waiting[0]
            if request.first_token_at is None and self.clock - request.arrival > config.timeout_seconds:
                waiting.popleft()
                self._time_out(request)
                continue
            tokens = min(request.target, budget)
            if tokens > free - prefill_tokens:
                break
            waiting.popleft()
            request.computed = 0
            if request.scheduled_at is None:
                request.scheduled_at = self.clock
            self.prefilling.append(request)
            self.admitted[id(request)] = request
            plan.append((request, tokens))
            prefill_tokens += tokens
            budget -= tokens
        if plan:
            self._mixed_step(plan, prefill_tokens)
        elif decoders:
            admission_blocked = bool(waiting)
            event = until
            if not admission_blocked and self.pending:
                event = min(event, self.pending[0].arrival)
            self._decode_run(event)
        else:
            self.clock = max(self.clock, until)  # nothing can run (cannot happen with sane KV)

    def _mixed_step(self, plan: list[tuple[Request, int]], prefill_tokens: int) -> None:
        decoders = self.decoding
        tokens = decoders + prefill_tokens
        self.clock += timing.step_duration(
            self.config.costs, decoders + len(plan), tokens, self.context_tokens + tokens
        )
        self.context_tokens += tokens
        if decoders:
            self.step_counter += 1
        completed = False
        for request, chunk in plan:
            request.computed += chunk
            if request.computed < request.target:
                continue
            completed = True
            request.generated += 1
            if request.first_token_at is None:
                request.first_token_at = self.clock
            remaining = request.output - request.generated
            self.decoding += 1
            if remaining <= 0:
                self._finish(request)
                continue
            request.join_step = self.step_counter
            request.join_generated = request.generated
            heapq.heappush(
                self.finishes, (self.step_counter + remaining, id(request), request, request.epoch)
            )
        if completed:
            self.prefilling = [r for r in self.prefilling if r.computed < r.target]
        self._pop_finishes()

    def _decode_run(self, event: float) -> None:
        """Decode-only steps with a constant batch, as many as start before `event`, the
        next finish or the KV limit."""
        self._drop_stale()
        batch = self.decoding
        costs = self.config.costs
        limit = self.finishes[0][0] - self.step_counter
        limit = min(limit, max(1, self._kv_free() // batch))
        fixed = costs.fixed_s + batch * costs.per_sequence_s
        compute = batch * costs.compute_s_per_token
        memory0 = costs.weight_read_s + (self.context_tokens + batch) * costs.kv_read_s_per_token
        memory_slope = batch * costs.kv_read_s_per_token
        if memory0 >= compute:
            compute_bound_steps = 0
        else:
            compute_bound_steps = -(-(compute - memory0) // memory_slope) if memory_slope > 0 else limit
            compute_bound_steps = int(min(compute_bound_steps, limit))

        def elapsed(k: int) -> float:
            """Duration of the first k steps of the run."""
            early = min(k, compute_bound_steps)
            late = k - early
            total = k * fixed + early * compute
            if late:
                first, last = compute_bound_steps, k - 1
                total += late * memory0 + memory_slope * (first + last) * late / 2
            return total

        room = event - self.clock
        steps = limit
        if elapsed(limit) >= room:
            low, high = 1, limit  # smallest k with elapsed(k) >= room
            while low < high:
                mid = (low + high) // 2
                if elapsed(mid) >= room:
                    high = mid
                else:
                    low = mid + 1
            steps = low
        self.clock += elapsed(steps)
        self.step_counter += steps
        self.context_tokens += steps * batch
        self._pop_finishes()

    def _drop_stale(self) -> None:
        finishes = self.finishes
        while finishes and finishes[0][3] != finishes[0][2].epoch:
            heapq.heappop(finishes)

    def _pop_finishes(self) -> None:
        finishes = self.finishes
        while finishes:
            step, _, request, epoch = finishes[0]
            if epoch != request.epoch:
                heapq.heappop(finishes)
                continue
            if step > self.step_counter:
                return
            heapq.heappop(finishes)
            request.generated = request.output
            self._finish(request)

    def _finish(self, request: Request) -> None:
        request.finished_at = self.clock
        self.decoding -= 1
        self.context_tokens -= request.prompt + request.generated - 1
        del self.admitted[id(request)]
        self.finished_total += 1
        self.served_total += 1
        self.inference_seconds_sum += self.clock - request.scheduled_at

    def _preempt_newest(self) -> None:
        _, victim = self.admitted.popitem()
        if victim in self.prefilling:
            self.prefilling.remove(victim)
            self.context_tokens -= victim.computed
        else:
            victim.generated = victim.join_generated + (self.step_counter - victim.join_step)
            self.context_tokens -= victim.prompt + victim.generated - 1
            self.decoding -= 1
            victim.epoch += 1
        victim.computed = 0
        victim.target = victim.prompt + victim.generated
        self.waiting.appendleft(victim)
        self.preemptions += 1

    def _time_out(self, request: Request) -> None:
        request.timed_out = True
        self.timeouts += 1
        self.finished_total += 1  # vLLM counts aborts with finished_reason="abort"

    def _abort_expired(self, now: float) -> None:
        """The queue is in arrival order except for preempted requests (already streaming,
        so never timed out) put back at its head: expired requests are found from the head."""
        cutoff = now - self.config.timeout_seconds
        waiting, index = self.waiting, 0
        while index < len(waiting):
            request = waiting[index]
            if request.first_token_at is not None:
                index += 1
            elif request.arrival < cutoff:
                del waiting[index]
                self._time_out(request)
            else:
                return
