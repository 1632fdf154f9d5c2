"""The work queue's guarantees: coalescing, one worker per key, no downgraded needs."""

from __future__ import annotations

import asyncio

from llmops.workqueue import FULL, STATUS, WorkQueue


def run(coro):
    return asyncio.run(coro)


def test_a_burst_for_one_key_costs_one_entry():
    async def scenario():
        q = WorkQueue()
        for _ in range(50):
            q.add(("ns", "a"), STATUS)
        q.add(("ns", "b"))
        assert q.pending() == 2
        assert await q.get() == (("ns", "a"), STATUS)
        assert await q.get() == (("ns", "b"), FULL)
        assert q.stats.coalesced == 49
    run(scenario())


def test_the_strongest_need_wins():
    async def scenario():
        q = WorkQueue()
        q.add("a", STATUS)
        q.add("a", FULL)
        q.add("a", STATUS)
        assert await q.get() == ("a", FULL)
    run(scenario())


def test_a_key_added_while_processing_runs_again_after_done_never_in_parallel():
    async def scenario():
        q = WorkQueue()
        q.add("a", STATUS)
        key, _ = await q.get()
        q.add("a", FULL)       # an event arrives mid-reconcile
        q.add("a", STATUS)
        assert q.pending() == 0, "a second worker could have taken the key"
        q.done(key)
        assert q.pending() == 1
        assert await q.get() == ("a", FULL)
        q.done("a")
        assert q.pending() == 0
    run(scenario())


def test_workers_never_overlap_on_one_key():
    async def scenario():
        q, active, overlaps, runs = WorkQueue(), set(), [], []

        async def worker():
            while True:
                key, _ = await q.get()
                if key in active:
                    overlaps.append(key)
                active.add(key)
                await asyncio.sleep(0.001)
                runs.append(key)
                active.discard(key)
                q.done(key)

        workers = [asyncio.create_task(worker()) for _ in range(4)]
        for i in range(200):
            q.add(f"k{i % 5}", STATUS)
            if i % 20 == 0:
                await asyncio.sleep(0.002)
        while q.pending() or q.busy():
            await asyncio.sleep(0.005)
        for w in workers:
            w.cancel()
        assert not overlaps
        assert set(runs) == {f"k{i}" for i in range(5)}
        assert len(runs) < 200 / 2, f"expected coalescing, got {len(runs)} runs for 200 adds"
    run(scenario())


def test_add_after_replaces_the_earlier_timer():
    async def scenario():
        q = WorkQueue()
        q.add_after("a", 0.01)
        q.add_after("a", 0.02)
        await asyncio.sleep(0.05)
        assert q.pending() == 1
        q.add_after("b", 0.01)
        q.forget("b")
        await asyncio.sleep(0.03)
        assert q.pending() == 1
    run(scenario())
