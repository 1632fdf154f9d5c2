"""The engine's scheduler driven step by step with explicit times (no loop, no clock)."""

import pytest
from prometheus_client import generate_latest

from llmops_sim import timing
from llmops_sim.engine import Engine, EngineRequest
from llmops_sim.metrics import VllmMetrics
from llmops_sim.releases import RELEASES

COSTS = timing.StepCosts(fixed_s=0.001, per_sequence_s=0.0, weight_read_s=0.01, kv_read_s_per_token=0.0,
                         compute_s_per_token=0.0)


def make_engine(kv_tokens=100_000, max_num_seqs=4, batched=8192, version="0.11.0", prefix_caching=True):
    metrics = VllmMetrics("m", 4096, RELEASES[version], cache_info={})
    return Engine(COSTS, kv_tokens, max_num_seqs, batched, metrics.engines[0], prefix_caching), metrics


def request(prompt=32, output=4, name="r", hashes=()):
    return EngineRequest(name, prompt, output, "length", block_hashes=tuple(hashes))


def run_step(engine, now):
    plan = engine.schedule(now)
    end = now + timing.step_duration(engine.costs, len(plan), sum(n for _, n in plan),
                                     sum(r.computed + n for r, n in plan))
    engine.complete(plan, end)
    return plan, end


def sample(metrics, name, **labels):
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError(name)


def test_at_most_max_num_seqs_run_and_the_rest_wait_fifo():
    engine, metrics = make_engine(max_num_seqs=4)
    reqs = [request(name=f"r{i}") for i in range(8)]
    for r in reqs:
        engine.enqueue(r, 0.0)
    run_step(engine, 0.0)
    assert engine.running == reqs[:4] and list(engine.waiting) == reqs[4:]
    assert sample(metrics, "vllm:num_requests_running") == 4
    assert sample(metrics, "vllm:num_requests_waiting") == 4


def test_first_token_after_prefill_then_one_token_per_step():
    engine, metrics = make_engine()
    r = request(prompt=32, output=3)
    engine.enqueue(r, 0.0)
    _, t1 = run_step(engine, 0.0)
    assert r.generated == 1 and r.first_token_at == t1 and r.computed == 32
    _, t2 = run_step(engine, t1)
    _, t3 = run_step(engine, t2)
    assert r.generated == 3 and r.finish_reason == "length" and r.finished_at == t3
    assert engine.running == [] and engine.free_blocks == engine.total_blocks
    assert sample(metrics, "vllm:request_success_total", finished_reason="length") == 1
    assert sample(metrics, "vllm:generation_tokens_total") == 3
    assert sample(metrics, "vllm:prompt_tokens_total") == 32
    assert sample(metrics, "vllm:time_to_first_token_seconds_sum") == pytest.approx(t1)
    assert sample(metrics, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(t3)
    assert sample(metrics, "vllm:inter_token_latency_seconds_count") == 2


def test_queue_time_is_recorded_for_requests_that_waited():
    engine, metrics = make_engine(max_num_seqs=1)
    first, second = request(output=2, name="a"), request(output=2, name="b")
    engine.enqueue(first, 0.0)
    engine.enqueue(second, 0.0)
    now = 0.0
    while engine.running or engine.waiting:
        _, now = run_step(engine, now)
    assert second.scheduled_at == first.finished_at
    assert sample(metrics, "vllm:request_queue_time_seconds_sum") == pytest.approx(first.finished_at)


def test_long_prompts_are_prefilled_in_chunks_of_the_token_budget():
    engine, _ = make_engine(batched=100)
    r = request(prompt=250, output=1)
    engine.enqueue(r, 0.0)
    plans = []
    now = 0.0
    while not r.done:
        plan, now = run_step(engine, now)
        plans.append([n for _, n in plan])
    assert plans == [[100], [100], [50]]


def test_kv_usage_tracks_blocks_held():
    engine, metrics = make_engine(kv_tokens=160)  # 10 blocks
    engine.enqueue(request(prompt=40, output=10), 0.0)  # 3 blocks for 40 tokens
    run_step(engine, 0.0)
    assert engine.kv_usage == pytest.approx(0.3)
    assert sample(metrics, "vllm:kv_cache_usage_perc") == pytest.approx(0.3)


def test_request_waits_when_kv_blocks_run_out():
    engine, _ = make_engine(kv_tokens=64, max_num_seqs=8)  # 4 blocks
    a, b = request(prompt=48, output=2, name="a"), request(prompt=32, output=2, name="b")
    engine.enqueue(a, 0.0)
    engine.enqueue(b, 0.0)
    run_step(engine, 0.0)
    assert engine.running == [a] and list(engine.waiting) == [b]  # b needs 2 blocks, 1 is free


def test_decode_growth_without_free_blocks_preempts_the_newest_request():
    engine, metrics = make_engine(kv_tokens=64, max_num_seqs=8)  # 4 blocks
    a, b = request(prompt=32, output=20, name="a"), request(prompt=32, output=20, name="b")
    engine.enqueue(a, 0.0)
    engine.enqueue(b, 0.0)
    _, now = run_step(engine, 0.0)  # both prefilled: 2 blocks each, 0 free
    assert engine.free_blocks == 0
    run_step(engine, now)  # a needs a 3rd block -> b is preempted and requeued
    assert engine.running == [a] and list(engine.waiting) == [b]
    assert b.computed == 0 and b.generated == 1
    assert sample(metrics, "vllm:num_preemptions_total") == 1


def test_abort_frees_slot_and_blocks():
    engine, _ = make_engine(max_num_seqs=1)
    a, b = request(name="a", output=50), request(name="b")
    engine.enqueue(a, 0.0)
    engine.enqueue(b, 0.0)
    run_step(engine, 0.0)
    engine.abort(a)
    assert a.aborted and engine.running == [] and engine.free_blocks == engine.total_blocks
    plan, _ = run_step(engine, 1.0)
    assert [r for r, _ in plan] == [b]


def test_legacy_metric_names_replace_current_ones():
    legacy = generate_latest(VllmMetrics("m", 1024, RELEASES["0.8.5"], cache_info={}).registry).decode()
    current = generate_latest(VllmMetrics("m", 1024, RELEASES["0.11.0"], cache_info={}).registry).decode()
    assert "vllm:gpu_cache_usage_perc" in legacy and "vllm:kv_cache_usage_perc" not in legacy
    assert "vllm:time_per_output_token_seconds" in legacy and "vllm:inter_token_latency_seconds" not in legacy
    assert "vllm:kv_cache_usage_perc" in current and "vllm:gpu_cache_usage_perc" not in current


def test_a_request_arriving_after_a_step_began_joins_a_later_step():
    engine, _ = make_engine()
    early, late = request(name="early"), request(name="late")
    engine.enqueue(early, 0.0)
    engine.enqueue(late, 0.5)
    plan, _ = run_step(engine, 0.2)  # a step that (virtually) began before `late` arrived
    assert [r for r, _ in plan] == [early] and list(engine.waiting) == [late]
    plan, _ = run_step(engine, 0.5)
    assert late in [r for r, _ in plan]


# --- prefix caching --------------------------------------------------------------------------

def prompt_request(ids, output=2, name="p"):
    from llmops_sim.kvcache import block_hashes
    return EngineRequest(name, len(ids), output, "length", block_hashes=tuple(block_hashes(ids)))


def drain(engine, now=0.0):
    while not engine.idle:
        _, now = run_step(engine, now)
    return now


def test_a_shared_prefix_is_computed_once_and_counted_as_hits():
    engine, metrics = make_engine()
    system = list(range(1000, 1160))  # 160 tokens = 10 full blocks
    first = prompt_request(system + [1, 2, 3], name="first")
    engine.enqueue(first, 0.0)
    now = drain(engine)
    second = prompt_request(system + [7, 8, 9], name="second")
    engine.enqueue(second, now)
    plan = engine.schedule(now)
    assert plan == [(second, 3)]  # only the tokens after the cached 160 are computed
    assert sample(metrics, "vllm:prefix_cache_queries_total") == 163 * 2
    assert sample(metrics, "vllm:prefix_cache_hits_total") == 160


def test_a_different_prefix_misses_and_the_last_token_is_always_recomputed():
    engine, metrics = make_engine()
    engine.enqueue(prompt_request(list(range(32)), name="a"), 0.0)
    now = drain(engine)
    other = prompt_request(list(range(100, 132)), name="b")
    same = prompt_request(list(range(32)), name="c")
    engine.enqueue(other, now)
    engine.enqueue(same, now)
    plan = dict((r.request_id, n) for r, n in engine.schedule(now))
    # 32 tokens = 2 full blocks, but a full hit would leave no token to compute: only 1 block hits.
    assert plan == {"b": 32, "c": 16}
    assert sample(metrics, "vllm:prefix_cache_hits_total") == 16


def test_without_prefix_caching_nothing_hits():
    engine, metrics = make_engine(prefix_caching=False)
    for name in ("a", "b"):
        engine.enqueue(prompt_request(list(range(64)), name=name), 0.0)
        drain(engine)
    assert sample(metrics, "vllm:prefix_cache_hits_total") == 0


def test_free_cached_blocks_are_evicted_least_recently_used_first():
    from llmops_sim.kvcache import BlockPool, block_hashes
    pool = BlockPool(4)
    old, new = block_hashes(list(range(32))), block_hashes(list(range(50, 82)))
    for hashes in (old, new):
        blocks = pool.allocate(2)
        pool.cache_full_blocks(blocks, hashes, 32)
        pool.free(blocks)
    assert len(pool.cached_prefix(old, 33)) == 2 and len(pool.cached_prefix(new, 33)) == 2
    pool.allocate(2)  # needs two blocks: the least recently freed ones (old) go
    assert pool.cached_prefix(old, 33) == [] and len(pool.cached_prefix(new, 33)) == 2


def test_histograms_use_the_observed_clock_not_the_schedule():
    engine, metrics = make_engine()
    r = request(prompt=16, output=2)
    r.received_at = -0.5  # the HTTP request arrived half a second before it was queued
    engine.enqueue(r, 0.0)
    plan = engine.schedule(0.0, observed=0.0)
    engine.complete(plan, 0.011, observed=1.011)  # the loop woke a second late (a stalled host)
    plan = engine.schedule(0.011, observed=1.011)
    engine.complete(plan, 0.022, observed=1.022)
    assert sample(metrics, "vllm:time_to_first_token_seconds_sum") == pytest.approx(1.511)
    assert sample(metrics, "vllm:inter_token_latency_seconds_sum") == pytest.approx(0.011)
    assert sample(metrics, "vllm:time_per_output_token_seconds_sum") == pytest.approx(0.011)  # 0.11 still has it
    assert sample(metrics, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(1.522)
    assert r.first_token_at == 0.011  # the schedule itself is the model's


def test_n_children_record_the_parent_once():
    from llmops_sim.engine import ParentRequest
    engine, metrics = make_engine()
    parent = ParentRequest(2, 2)
    for name, output in (("c0", 2), ("c1", 3)):
        engine.enqueue(EngineRequest(name, 8, output, "length", parent=parent), 0.0)
    drain(engine)
    assert sample(metrics, "vllm:request_params_n_count") == 1
    assert sample(metrics, "vllm:request_params_n_sum") == 2
    assert sample(metrics, "vllm:request_max_num_generation_tokens_sum") == 3


def test_requests_sharing_a_prefix_hold_its_blocks_once():
    engine, _ = make_engine()
    system = list(range(2000, 2160))  # 10 full blocks
    first = prompt_request(system + [1] * 16, output=50, name="first")
    engine.enqueue(first, 0.0)
    _, now = run_step(engine, 0.0)  # first is prefilled and decoding: its prompt blocks are cached
    second = prompt_request(system + [2] * 16, output=50, name="second")
    engine.enqueue(second, now)
    run_step(engine, now)
    shared = set(first.block_ids) & set(second.block_ids)
    assert len(shared) == 10  # the system prompt's blocks, once in the cache
    assert engine.total_blocks - engine.free_blocks == len(set(first.block_ids) | set(second.block_ids))
