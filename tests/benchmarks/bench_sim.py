"""How many concurrent streams / requests per second one simulator process sustains on one
core while keeping its timing model accurate (target: 200 streams, error < 5 %).

The simulator is pinned to CPU 0, this script (the load generator) to CPU 1. For each
concurrency level a closed-loop run streams completions, then we compare:
- step error: mean |actual wake - modeled end| of engine steps relative to the modeled
  step length (the per-token jitter clients see; it does not accumulate because each
  step starts at the previous step's modeled end);
- client TPOT vs the engine's own modeled inter-token latency (from /metrics);
- simulator CPU use (utime+stime of its process) and throughput.

Run: .venv/bin/python tests/benchmarks/bench_sim.py [--levels 50,100,200,300] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from llmops.load.generator import LoadConfig, run_load_sync
from llmops.sim.process import start_sim


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch_json(url: str, data: dict | None = None) -> dict:
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def itl_sum_count(url: str) -> tuple[float, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        if family.name == "vllm:inter_token_latency_seconds":
            for sample in family.samples:
                if sample.name.endswith(("_sum", "_count")):
                    values[sample.name.rsplit("_", 1)[1]] = sample.value
    return values["sum"], values["count"]


def run_level(sim, users: int, seconds: float, max_tokens: int, prompt_tokens: int) -> dict:
    state0 = fetch_json(sim.url + "/sim/state")
    itl0 = itl_sum_count(sim.url)
    cpu0, wall0 = cpu_seconds(sim.process.pid), time.perf_counter()
    report = run_load_sync(LoadConfig(url=sim.url, api="completions", concurrency=users, duration=seconds,
                                      prompt_tokens=prompt_tokens, max_tokens=max_tokens, progress_interval=0,
                                      timeout=120))
    cpu1, wall1 = cpu_seconds(sim.process.pid), time.perf_counter()
    state1 = fetch_json(sim.url + "/sim/state")
    itl1 = itl_sum_count(sim.url)
    steps = state1["steps"] - state0["steps"]
    modeled = state1["modeled_seconds"] - state0["modeled_seconds"]
    abs_error = state1["total_abs_error_s"] - state0["total_abs_error_s"]
    model_itl = (itl1[0] - itl0[0]) / max(1.0, itl1[1] - itl0[1])
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="50,100,200,300")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--model", default="meta-llama/Llama-3.1-8B-Instruct")
    parser.add_argument("--gpu", default="NVIDIA-A100-SXM4-80GB")
    parser.add_argument("--speed", default="1")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
