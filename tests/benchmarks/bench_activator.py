"""The activator's costs: the latency it adds when it is in the path (p50/p99 against calling
the replica directly), its memory with 1,000 held streams, and the hold time of a burst
released by one cold start (p99, and how much of it is the activator's own release delay).

The replica is the vLLM simulator (a fast engine, so the hop is not lost in engine time). The
activator is the real server (llmops.activator.server) in its own process; only its view of
the cluster is static (one LLMDeployment with spec.activator.enabled, and a pod whose
readiness the benchmark switches), since the Kubernetes path is the e2e's job
(e2e/test_activator.py). RSS is read from /proc of the activator process.

Run: .venv/bin/python tests/benchmarks/bench_activator.py [--requests 400] [--held 1000]
     [--cold-start 10] [--repeats 3] [--json] [--png FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
MODEL = "bench"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticKube:
    """The activator's three Kubernetes calls, answered from fixed values; the pod is Ready
    while `ready_file` exists (the parent flips it to end a simulated cold start)."""

    def __init__(self, queue_size: int, ready_file: str):
        self.ready_file = ready_file
        self.body = {
            "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment",
            "metadata": {"name": MODEL, "namespace": "bench", "uid": "u"},
            "spec": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "servedName": MODEL}, "replicas": 0,
                     "activator": {"enabled": True, "queueSize": queue_size, "holdSeconds": 600}},
        }

    def list_llmdeployments(self):
        return [self.body]

    def list_pods(self, namespace, selector):
        if not os.path.exists(self.ready_file):
            return []
        return [{"metadata": {"name": "p", "labels": {}},
                 "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}]

    def annotate_llmdeployment(self, name, namespace, annotations):
        pass


def activator_child(port: int, metrics_port: int, upstream_port: int, queue_size: int, ready_file: str) -> None:
    _raise_fd_limit()
    from llmops.activator.registry import Registry
    from llmops.activator.server import serve

    registry = Registry(StaticKube(queue_size, ready_file), refresh_seconds=5.0, upstream_port=upstream_port)
    asyncio.run(serve(registry, "127.0.0.1", port, metrics_port))


def start_activator(ctx, port: int, metrics_port: int, upstream_port: int, queue_size: int, ready_file: str):
    child = ctx.Process(target=activator_child, args=(port, metrics_port, upstream_port, queue_size, ready_file),
                        daemon=True)
    child.start()
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", metrics_port), timeout=1).close()
            return child
        except OSError:
            assert time.time() < deadline and child.is_alive(), "the activator did not start"
            time.sleep(0.2)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def one(session: aiohttp.ClientSession, url: str, max_tokens: int = 8, held: list | None = None
              ) -> tuple[float, float, bool]:
    """(time to first byte, total, completed with [DONE]) of one streaming completion; the
    activator's own hold (its X-Llmops-Held-Seconds header) is appended to `held`."""
    from llmops.activator.server import HELD_HEADER

    t0 = time.perf_counter()
    first, done = None, False
    body = {"model": MODEL, "prompt": "hi", "max_tokens": max_tokens, "stream": True}
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        if held is not None and HELD_HEADER in resp.headers:
            held.append(float(resp.headers[HELD_HEADER]))
        async for line in resp.content:
            first = first or time.perf_counter()
            done = done or line.strip() == b"data: [DONE]"
    return (first or time.perf_counter()) - t0, time.perf_counter() - t0, done and resp.status == 200


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


async def latency(direct: str, via: str, requests: int, concurrency: int) -> dict:
    """Interleaved direct / via-activator requests, so both see the same engine and host load."""
    out = {"direct": {"ttfb": [], "total": []}, "activator": {"ttfb": [], "total": []}}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for url in (direct, via):  # warm connections and code paths
            await asyncio.gather(*(one(session, url) for _ in range(concurrency)))
        sem = asyncio.Semaphore(concurrency)

        async def run(kind: str, url: str) -> None:
            async with sem:
                ttfb, total, ok = await one(session, url)
                assert ok, f"{kind} request failed"
                out[kind]["ttfb"].append(ttfb)
                out[kind]["total"].append(total)

        await asyncio.gather(*(run(k, u) for _ in range(requests) for k, u in (("direct", direct), ("activator", via))))
    return out


async def held_streams(via: str, metrics_url: str, count: int, ready_file: str, cold_start: float, pid: int,
                       progress) -> dict:
    """`count` streams held at zero; RSS while held; then the 'cold start' ends and all go."""
    from llmops.activator.registry import READY_CACHE_SECONDS

    Path(ready_file).unlink(missing_ok=True)
    await asyncio.sleep(READY_CACHE_SECONDS + 0.5)  # the activator's last Ready list expires: at zero now
    idle = rss_mib(pid)
    timeout = aiohttp.ClientTimeout(total=cold_start + 300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        started = time.perf_counter()
        activator_holds: list[float] = []
        tasks = [asyncio.create_task(one(session, via, max_tokens=4, held=activator_holds)) for _ in range(count)]

        timeline: list[tuple[float, float]] = []  # (seconds since the burst, requests held)

        async def holding() -> float:
            async with session.get(metrics_url) as r:
                text = await r.text()
            value = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                        if line.startswith("llmops_activator_holding_requests{"))
            timeline.append((time.perf_counter() - started, value))
            return value

        while await holding() < count:
            assert time.perf_counter() - started < 120, "the activator did not hold every stream within 120 s"
            assert not any(t.done() for t in tasks), "a stream finished although no replica was Ready"
            await asyncio.sleep(0.2)
        held_at = time.perf_counter()
        progress(f"  {count} streams held after {held_at - started:.1f}s")
        await asyncio.sleep(1.0)  # let allocations settle
        rss_held = rss_mib(pid)
        while time.perf_counter() - started < cold_start:
            await holding()
            await asyncio.sleep(0.25)
        Path(ready_file).touch()
        ready_at = time.perf_counter()
        while await holding() > 0:  # the activator's own release: every held request gets its replica
            assert time.perf_counter() - ready_at < 60, "held requests not released within 60 s of Ready"
            await asyncio.sleep(0.01)
        released_ms = 1000 * (time.perf_counter() - ready_at)
        results = await asyncio.gather(*tasks)
    assert all(ok for _, _, ok in results), f"{sum(not ok for *_, ok in results)} held streams failed"
    assert len(activator_holds) == count, "some held responses lack the activator's hold header"
    cold_start = ready_at - started
    first_bytes = [ttfb for ttfb, _, _ in results]  # all sent together at `started`
    return {"rss_idle_mib": idle, "rss_held_mib": rss_held, "rss_per_stream_kib": 1024 * (rss_held - idle) / count,
            "cold_start_s": cold_start,
            # The activator's hold: arrival -> a Ready replica chosen (arrivals spread over the first second).
            "hold_p50_s": pct(activator_holds, 0.5), "hold_p99_s": pct(activator_holds, 0.99),
            "all_released_ms": released_ms,  # Ready -> the last held request has its replica
            # What clients saw: hold + the replica's time to first token for a 1,000-request burst.
            "first_byte_p50_s": pct(first_bytes, 0.5), "first_byte_p99_s": pct(first_bytes, 0.99),
            "holds": activator_holds, "timeline": timeline}


def summarize(samples: list[float]) -> dict:
    return {"p50_ms": 1000 * pct(samples, 0.5), "p99_ms": 1000 * pct(samples, 0.99)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per path per repeat")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--held", type=int, default=1000)
    parser.add_argument("--cold-start", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--png", default=str(HERE / "figures" / "activator.png"))
    args = parser.parse_args()
    _raise_fd_limit()
    from llmops_sim.process import start_sim

    progress = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    sim = start_sim(["Qwen/Qwen2.5-0.5B-Instruct", "--served-model-name", MODEL, "--max-num-seqs", "1024"],
                    env={"LLMOPS_SIM_GPU": "NVIDIA-H100-80GB-HBM3", "LLMOPS_SIM_SPEED": "20"})
    ready_file = f"/tmp/llmops-bench-activator-{os.getpid()}.ready"
    port, metrics_port = free_port(), free_port()
    child = None
    try:
        sim.wait_ready()
        upstream_port = int(sim.url.rsplit(":", 1)[1].split("/")[0])
        ctx = multiprocessing.get_context("spawn")
        Path(ready_file).touch()
        child = start_activator(ctx, port, metrics_port, upstream_port, args.held * 2, ready_file)
        via, direct = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{upstream_port}"
        runs = []
        for r in range(args.repeats):
            progress(f"latency repeat {r + 1}/{args.repeats}: {args.requests} streaming requests per path, "
                     f"{args.concurrency} at a time")
            runs.append(asyncio.run(latency(direct, via, args.requests, args.concurrency)))
        held = []
        for r in range(args.repeats):
            progress(f"held streams repeat {r + 1}/{args.repeats}: {args.held} streams, cold start {args.cold_start:g}s "
                     "(a fresh activator process)")
            child.terminate()
            child.join(10)
            port, metrics_port = free_port(), free_port()
            child = start_activator(ctx, port, metrics_port, upstream_port, args.held * 2, ready_file)
            via = f"http://127.0.0.1:{port}"
            held.append(asyncio.run(held_streams(via, f"http://127.0.0.1:{metrics_port}/metrics", args.held,
                                                 ready_file, args.cold_start, child.pid, progress)))
    finally:
        if child is not None and child.is_alive():
            child.terminate()
            child.join(10)
        sim.stop()
        Path(ready_file).unlink(missing_ok=True)

    def spread(values: list[float]) -> dict:
        return {"mean": statistics.mean(values), "min": min(values), "max": max(values)}

    added = {}
    for metric in ("ttfb", "total"):
        for q in ("p50_ms", "p99_ms"):
            added[f"{metric}_{q}"] = spread([summarize(run["activator"][metric])[q] - summarize(run["direct"][metric])[q]
                                            for run in runs])
    direct_figures = {f"{m}_{q}": spread([summarize(run["direct"][m])[q] for run in runs])
                      for m in ("ttfb", "total") for q in ("p50_ms", "p99_ms")}
    held_figures = {k: spread([h[k] for h in held]) for k in held[0] if k not in ("holds", "timeline")}
    result = {"requests_per_path": args.requests * args.repeats, "concurrency": args.concurrency,
              "direct": direct_figures, "added_by_activator": added, "held_streams": args.held,
              "held": held_figures, "repeats": args.repeats}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"\nactivator in the path, {args.requests * args.repeats} streaming requests per path "
              f"(mean [min..max] over {args.repeats} repeats):")
        for key, value in added.items():
            base = direct_figures[key]
            print(f"  {key:14s} direct {base['mean']:7.2f} ms   added {value['mean']:+6.2f} ms "
                  f"[{value['min']:+.2f}..{value['max']:+.2f}]")
        h = held_figures
        print(f"\n{args.held} held streams: RSS {h['rss_idle_mib']['mean']:.1f} MiB idle -> "
              f"{h['rss_held_mib']['mean']:.1f} MiB [{h['rss_held_mib']['min']:.1f}..{h['rss_held_mib']['max']:.1f}] "
              f"({h['rss_per_stream_kib']['mean']:.1f} KiB per held stream)")
        print(f"  hold p50 {h['hold_p50_s']['mean']:.2f}s, p99 {h['hold_p99_s']['mean']:.2f}s "
              f"[{h['hold_p99_s']['min']:.2f}..{h['hold_p99_s']['max']:.2f}] for a {h['cold_start_s']['mean']:.2f}s "
              f"cold start;\n  all {args.held} released {h['all_released_ms']['mean']:.0f} ms "
              f"[{h['all_released_ms']['min']:.0f}..{h['all_released_ms']['max']:.0f}] after the replica was Ready "
              f"(readiness is polled every 0.5 s); clients' first byte p99 {h['first_byte_p99_s']['mean']:.2f}s "
              f"(+ the replica's TTFT for a {args.held}-request burst)")
    _plot(args.png, runs, held, args, progress)
    return 0


def _plot(path: str, runs: list[dict], held: list[dict], args, progress) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed (pip install '.[bench]'): no PNG")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    direct = [1000 * x for run in runs for x in run["direct"]["ttfb"]]
    via = [1000 * x for run in runs for x in run["activator"]["ttfb"]]
    for values, label in ((direct, "direct to the replica"), (via, "through the activator")):
        values = sorted(values)
        a.plot(values, [i / len(values) for i in range(len(values))], label=label)
    a.set_xlabel("time to first byte, ms")
    a.set_ylabel("fraction of requests")
    a.set_title(f"Added latency ({len(direct)} streaming requests per path)")
    a.legend()
    a.grid(alpha=0.3)
    h = held[0]
    t, n = zip(*h["timeline"])
    b.step(t, n, where="post", label="requests held by the activator")
    b.axvline(h["cold_start_s"], color="grey", linestyle="--", label="replica Ready (end of the cold start)")
    b.set_xlabel("seconds since the burst")
    b.set_ylabel("requests held")
    b.set_title(f"{args.held} streams held at zero: hold p99 {h['hold_p99_s']:.2f}s, all released "
                f"{h['all_released_ms']:.0f} ms after Ready;\nRSS {h['rss_idle_mib']:.0f} -> {h['rss_held_mib']:.0f} MiB "
                "while holding", fontsize=10)
    b.legend(loc="lower center")
    b.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    progress(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
