"""The load generator's own overhead: CPU per request and per streamed chunk, the request
rate one core could drive, and how much it adds to measured TTFT / latency.

A simulator runs pinned to CPU 0; the generator runs in this process pinned to CPU 1 and
its CPU time (getrusage) is divided by the work done.

Run: .venv/bin/python tests/benchmarks/bench_load.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from llmops_load.generator import LoadConfig, run_load_sync
from llmops_sim import timing
from llmops_sim.config import build_config
from llmops_sim.process import start_sim


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(config: LoadConfig) -> tuple[dict, object]:
    cpu0, wall0 = cpu_self(), time.perf_counter()
    report = run_load_sync(config)
    cpu, wall = cpu_self() - cpu0, time.perf_counter() - wall0
    chunks = report.itl.count + report.ttft.count
    return {
        "requests": report.requests_ok, "failed": report.requests_failed, "chunks": chunks,
        "req_per_s": report.throughput_rps, "generator_cpu_pct": 100 * cpu / wall,
        "cpu_us_per_request": 1e6 * cpu / max(1, report.requests_sent),
        "cpu_us_per_chunk": 1e6 * cpu / max(1, chunks),
    }, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    sim_args = ["Qwen/Qwen2.5-0.5B-Instruct", "--max-num-seqs", "512"]
    sim_env = {"LLMOPS_SIM_GPU": "NVIDIA-H100-80GB-HBM3"}
    sim = start_sim(sim_args, env=sim_env)
    cpus = sorted(os.sched_getaffinity(0))
    try:
        sim.wait_ready()
        if len(cpus) >= 2:
            os.sched_setaffinity(sim.process.pid, {cpus[0]})
            os.sched_setaffinity(0, {cpus[1]})
        results = {}
        # 1. Per-request cost: one-token replies, many users.
        results["short_requests_64_users"], _ = measure(LoadConfig(
            url=sim.url, api="completions", concurrency=64, duration=args.seconds, max_tokens=1, prompt_tokens=16,
            progress_interval=0))
        # 2. Per-chunk cost: long streams.
        results["streams_100_users_256_tokens"], _ = measure(LoadConfig(
            url=sim.url, api="completions", concurrency=100, duration=args.seconds, max_tokens=256,
            prompt_tokens=64, progress_interval=0))
        # 3. What the generator adds to what it measures: one user vs the timing model.
        row, report = measure(LoadConfig(url=sim.url, api="completions", concurrency=1, duration=args.seconds,
                                         max_tokens=64, prompt_tokens=256, progress_interval=0))
        config = build_config(sim_args, sim_env)
        ttft, e2e = timing.isolated_request_timeline(config.step_costs(), 256, 64, config.max_num_batched_tokens)
        row.update({"model_ttft_ms": 1000 * ttft, "measured_ttft_p50_ms": 1000 * report.ttft.p50,
                    "ttft_overhead_ms": 1000 * (report.ttft.p50 - ttft), "model_e2e_ms": 1000 * e2e,
                    "measured_e2e_p50_ms": 1000 * report.latency.p50,
                    "e2e_error_pct": 100 * (report.latency.p50 - e2e) / e2e})
        results["single_user_vs_model"] = row
        for name, values in results.items():
            print(name)
            for key, value in values.items():
                print(f"  {key:<24} {value:.3f}" if isinstance(value, float) else f"  {key:<24} {value}")
        print(json.dumps(results), file=sys.stderr)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
