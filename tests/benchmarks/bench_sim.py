"""Simulator figures: timing fidelity under load, the prefix cache's effect on TTFT, and how
an overloaded simulator process shows in its own TTFT histogram.

`timing` (target: 200 streams, error < 5 %): the simulator is pinned to CPU 0, this script
(the load generator) to CPU 1. For each concurrency level a closed-loop run streams
completions, then we compare:
- step error: mean |actual wake - modeled end| of engine steps relative to the modeled
  step length (the per-token jitter clients see; it does not accumulate because each
  step starts at the previous step's modeled end);
- client TPOT vs the schedule's own inter-token gaps (/sim/state: the histograms now hold
  measured times, so they cannot be the reference);
- simulator CPU use (utime+stime of its process) and throughput.

`prefix`: chat requests of 64 unique tokens behind a shared 1,000-token system prompt
against 1,064 unique tokens, repeated; client TTFT, the simulator's own TTFT histogram and
its prefix-cache hit rate.

`overload`: a closed-loop run during which the simulator process is stopped for 1 s
(SIGSTOP/SIGCONT) or a Python thread inside it spins for 3 s; the simulator's TTFT and
inter-token histograms (measured from its own clock, like vLLM's) against a quiet run.

Run: .venv/bin/python tests/benchmarks/bench_sim.py [--parts timing,prefix,overload]
         [--levels 50,100,200,300] [--seconds 15] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import sys
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from llmops_load.generator import LoadConfig, run_load_sync
from llmops_sim.process import start_sim


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch_json(url: str, data: dict | None = None) -> dict:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def scrape(url: str) -> dict[str, dict[str, float]]:
    """{family: {sample key: value}}; a bucket's key is its `le`, counters' is the sample name."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        values = out.setdefault(family.name, {})
        for sample in family.samples:
            values[sample.labels.get("le", sample.name)] = sample.value
    return out


def histogram_delta(before: dict, after: dict, name: str) -> dict[str, float]:
    return {k: after[name][k] - before[name].get(k, 0.0) for k in after[name]}


def histogram_quantile(q: float, delta: dict[str, float]) -> float:
    """Prometheus's histogram_quantile over one histogram's bucket increments."""
    buckets = sorted((float(k), v) for k, v in delta.items() if not k.startswith("vllm:"))  # keys: `le` bounds
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return float("nan")
    rank, lower, lower_count = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - lower_count) / max(count - lower_count, 1e-12)
        lower, lower_count = bound, count
    return lower


def histogram_mean(delta: dict[str, float], name: str) -> float:
    count = delta.get(f"{name}_count", 0.0)
    return delta.get(f"{name}_sum", 0.0) / count if count else float("nan")


def spread(values: list[float]) -> str:
    """mean (min-max) in ms."""
    return f"{1000 * statistics.mean(values):.1f} ({1000 * min(values):.1f}-{1000 * max(values):.1f})"


def run_level(sim, users: int, seconds: float, max_tokens: int, prompt_tokens: int) -> dict:
    state0 = fetch_json(sim.url + "/sim/state")
    cpu0, wall0 = cpu_seconds(sim.process.pid), time.perf_counter()
    report = run_load_sync(LoadConfig(url=sim.url, api="completions", concurrency=users, duration=seconds,
                                      prompt_tokens=prompt_tokens, max_tokens=max_tokens, progress_interval=0,
                                      timeout=120))
    cpu1, wall1 = cpu_seconds(sim.process.pid), time.perf_counter()
    state1 = fetch_json(sim.url + "/sim/state")
    steps = state1["steps"] - state0["steps"]
    modeled = state1["modeled_seconds"] - state0["modeled_seconds"]
    abs_error = state1["total_abs_error_s"] - state0["total_abs_error_s"]
    model_itl = (state1["modeled_itl_sum_s"] - state0["modeled_itl_sum_s"]) / max(
        1, state1["modeled_itl_count"] - state0["modeled_itl_count"])
    return {
        "users": users,
        "ok": report.requests_ok,
        "failed": report.requests_failed,
        "req_per_s": report.throughput_rps,
        "tokens_per_s": report.output_tokens_per_s,
        "sim_cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "steps": steps,
        "mean_step_ms": 1000 * modeled / steps if steps else 0.0,
        "step_error_pct": 100 * abs_error / modeled if modeled else 0.0,
        "max_lateness_ms": 1000 * state1["max_lateness_s"],
        "resyncs": state1["resyncs"] - state0["resyncs"],
        "model_itl_ms": 1000 * model_itl,
        "client_tpot_ms": 1000 * report.tpot.mean,
        "tpot_error_pct": 100 * abs(report.tpot.mean - model_itl) / model_itl if model_itl else float("nan"),
        "client_ttft_p50_ms": 1000 * report.ttft.p50,
    }


def timing_part(args, cpus) -> None:
    sim = start_sim([args.model, "--max-num-seqs", "512"],
                    env={"LLMOPS_SIM_CONTROL": "1", "LLMOPS_SIM_GPU": args.gpu, "LLMOPS_SIM_SPEED": args.speed})
    try:
        sim.wait_ready()
        if len(cpus) >= 2:
            os.sched_setaffinity(sim.process.pid, {cpus[0]})
            os.sched_setaffinity(0, {cpus[1]})
        print(f"simulator pid {sim.process.pid} on CPU {cpus[0]}, generator on CPU {cpus[-1]}; "
              f"load average {open('/proc/loadavg').read().split()[0]}", file=sys.stderr)
        rows = []
        for users in (int(x) for x in args.levels.split(",")):
            row = run_level(sim, users, args.seconds, args.max_tokens, args.prompt_tokens)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        header = ["users", "req_per_s", "tokens_per_s", "sim_cpu_pct", "mean_step_ms", "step_error_pct",
                  "max_lateness_ms", "resyncs", "model_itl_ms", "client_tpot_ms", "tpot_error_pct",
                  "client_ttft_p50_ms", "failed"]
        print(" ".join(f"{h:>18}" for h in header))
        for row in rows:
            print(" ".join(f"{row[h]:>18.2f}" if isinstance(row[h], float) else f"{row[h]:>18}" for h in header))
    finally:
        sim.stop()


TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"


def prefix_part(args) -> None:
    sim = start_sim([args.model], env={"LLMOPS_SIM_GPU": args.gpu})
    try:
        sim.wait_ready()
        results: dict[str, dict[str, list[float]]] = {}
        seeds = itertools.count(1)  # fresh prompts every run: no hits left over from the last one
        for _ in range(args.repeats):
            for label, prompt, shared in (("unique 1064", 1064, 0), ("shared 1000 + 64", 64, 1000)):
                before = scrape(sim.url)
                report = run_load_sync(LoadConfig(url=sim.url, api="chat", concurrency=4, duration=args.seconds / 2,
                                                  prompt_tokens=prompt, shared_prefix_tokens=shared, max_tokens=32,
                                                  progress_interval=0, seed=next(seeds)))
                after = scrape(sim.url)
                ttft = histogram_delta(before, after, TTFT)
                queries = (after["vllm:prefix_cache_queries"]["vllm:prefix_cache_queries_total"]
                           - before["vllm:prefix_cache_queries"]["vllm:prefix_cache_queries_total"])
                hits = (after["vllm:prefix_cache_hits"]["vllm:prefix_cache_hits_total"]
                        - before["vllm:prefix_cache_hits"]["vllm:prefix_cache_hits_total"])
                row = results.setdefault(label, {"client_p50": [], "client_p95": [], "sim_mean": [], "hit": []})
                row["client_p50"].append(report.ttft.p50)
                row["client_p95"].append(report.ttft.p95)
                row["sim_mean"].append(histogram_mean(ttft, TTFT))
                row["hit"].append(hits / queries if queries else 0.0)
        print(f"TTFT, {args.model} on {args.gpu}, 4 users, 32 output tokens; ms: mean (min-max) over "
              f"{args.repeats} runs")
        print(f"{'prompt':>18} {'client p50':>22} {'client p95':>22} {'sim histogram mean':>22} {'hit rate':>9}")
        for label, row in results.items():
            print(f"{label:>18} {spread(row['client_p50']):>22} {spread(row['client_p95']):>22} "
                  f"{spread(row['sim_mean']):>22} {statistics.mean(row['hit']):>9.2f}")
    finally:
        sim.stop()


def _disturb(sim, how: str, at: float) -> None:
    time.sleep(at)
    if how == "sigstop":
        os.kill(sim.process.pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.kill(sim.process.pid, signal.SIGCONT)
    elif how == "cpu-hog":
        fetch_json(sim.url + "/sim/control", {"hog_seconds": 3.0})


def over(delta: dict[str, float], bound: str) -> float:
    """Observations above a bucket bound."""
    return delta.get("+Inf", 0.0) - delta.get(bound, 0.0)


def overload_part(args) -> None:
    # Each disturbance replays the same arrivals (one seed per repeat); without prefix caching
    # the later runs do not find the earlier ones' prompts cached.
    sim = start_sim([args.model, "--max-model-len", "8192", "--no-enable-prefix-caching"],
                    env={"LLMOPS_SIM_CONTROL": "1", "LLMOPS_SIM_GPU": args.gpu})
    try:
        sim.wait_ready()
        rows = []
        for how in ("quiet", "sigstop", "cpu-hog") * args.repeats:
            before = scrape(sim.url)
            disturber = threading.Thread(target=_disturb, args=(sim, how, 3.0))
            disturber.start()
            # Open loop, so some requests are always between arrival and first token.
            report = run_load_sync(LoadConfig(url=sim.url, api="completions", rate=8, duration=8,
                                              prompt_tokens=512, max_tokens=64, progress_interval=0, seed=len(rows) // 3))
            disturber.join()
            after = scrape(sim.url)
            ttft, itl = histogram_delta(before, after, TTFT), histogram_delta(before, after, ITL)
            rows.append((how, report.ttft.p99, report.ttft.max, histogram_quantile(0.99, ttft), over(ttft, "1.0"),
                         over(itl, "0.75")))
        print(f"overload, {args.model} on {args.gpu}, Poisson 8 req/s, 512-token prompts, 64 tokens out; "
              f"mean (min-max) over {args.repeats} runs; sim = the simulator's own histograms")
        print(f"{'disturbance':>12} {'client TTFT p99 ms':>22} {'client TTFT max ms':>22} {'sim TTFT p99 ms':>22} "
              f"{'sim TTFT > 1 s':>16} {'sim ITL > 0.75 s':>17}")
        for how in ("quiet", "sigstop", "cpu-hog"):
            mine = [r for r in rows if r[0] == how]
            counts = [(min(r[i] for r in mine), max(r[i] for r in mine)) for i in (4, 5)]
            print(f"{how:>12} " + " ".join(f"{spread([r[i] for r in mine]):>22}" for i in (1, 2, 3))
                  + f" {f'{counts[0][0]:.0f}-{counts[0][1]:.0f}':>16} {f'{counts[1][0]:.0f}-{counts[1][1]:.0f}':>17}")
    finally:
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="timing,prefix,overload")
    parser.add_argument("--levels", default="50,100,200,300")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct")
    parser.add_argument("--gpu", default="NVIDIA-A100-SXM4-80GB")
    parser.add_argument("--speed", default="1")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    parts = args.parts.split(",")
    if "prefix" in parts:
        prefix_part(args)
    if "overload" in parts:
        overload_part(args)
    if "timing" in parts:  # last: it pins this process to one CPU
        timing_part(args, cpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
