"""The replay's engine model against the simulator's timing model and vLLM's scheduling rules."""

from dataclasses import replace

import pytest

from llmops_sim import timing
from replay.engine import ReplicaEngine, Request, default_engine_config


def run(engine: ReplicaEngine, requests: list[Request], until: float = 10_000.0) -> None:
    for request in requests:
        engine.submit(request)
    engine.advance(until)


@pytest.mark.parametrize("prompt,output", [(1000, 250), (5000, 3), (1, 1), (2048, 2), (2049, 40), (300, 1000)])
def test_a_lone_request_matches_the_isolated_timeline(prompt, output):
    config = default_engine_config()
    engine = ReplicaEngine(config)
    request = Request(0.0, prompt, output)
    run(engine, [request])
    ttft, e2e = timing.isolated_request_timeline(config.costs, prompt, output, config.max_num_batched_tokens)
    assert request.first_token_at == pytest.approx(ttft, rel=1e-9)
    assert request.finished_at == pytest.approx(e2e, rel=1e-9)
    assert engine.finished_total == engine.served_total == 1
    assert engine.idle and engine.context_tokens == 0 and engine.running == 0


def test_a_request_arriving_later_starts_at_its_arrival():
    config = default_engine_config()
    engine = ReplicaEngine(config)
    request = Request(7.5, 1000, 10)
    run(engine, [request])
    ttft, e2e = timing.isolated_request_timeline(config.costs, 1000, 10, config.max_num_batched_tokens)
    assert request.first_token_at == pytest.approx(7.5 + ttft)
    assert request.finished_at == pytest.approx(7.5 + e2e)


def test_batching_slows_every_sequence_but_beats_running_them_one_after_another():
    config = default_engine_config()
    engine = ReplicaEngine(config)
    requests = [Request(0.0, 1000, 200) for _ in range(32)]
    run(engine, requests)
    _, alone = timing.isolated_request_timeline(config.costs, 1000, 200, config.max_num_batched_tokens)
    last = max(r.finished_at for r in requests)
    assert all(r.generated == 200 for r in requests)
    assert last > alone            # decode steps grow with the batch
    assert last < 4 * alone        # ... but 32 requests share them
    # the token budget (2048) lets two 1000-token prompts into the first step, not more
    first_tokens = sorted(r.first_token_at for r in requests)
    assert first_tokens[0] == first_tokens[1] < first_tokens[2]


def test_max_num_seqs_keeps_requests_waiting():
    config = replace(default_engine_config(), max_num_seqs=2)
    engine = ReplicaEngine(config)
    requests = [Request(0.0, 100, 50) for _ in range(3)]
    for r in requests:
        engine.submit(r)
    engine.advance(0.05)
    assert engine.running == 2 and engine.waiting_count(0.05) == 1
    engine.advance(100.0)
    assert requests[2].scheduled_at >= min(requests[0].finished_at, requests[1].finished_at)


def test_kv_exhaustion_preempts_and_recomputes_but_every_request_completes():
    config = replace(default_engine_config(), kv_capacity_tokens=4096)
    engine = ReplicaEngine(config)
    requests = [Request(0.0, 600, 400) for _ in range(6)]
    run(engine, requests)
    assert engine.preemptions > 0
    assert all(r.finished_at is not None and r.generated == 400 for r in requests)
    assert engine.context_tokens == 0 and not engine.admitted


def test_a_client_timeout_aborts_a_waiting_request_and_counts_it_as_finished_not_served():
    config = replace(default_engine_config(), max_num_seqs=1, timeout_seconds=5.0)
    engine = ReplicaEngine(config)
    long, starved = Request(0.0, 1000, 2000), Request(0.1, 1000, 10)
    run(engine, [long, starved])
    assert starved.timed_out and starved.first_token_at is None
    assert engine.timeouts == 1
    assert engine.finished_total == 2 and engine.served_total == 1
