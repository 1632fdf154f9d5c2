"""Replay load traces through six autoscalers on a modeled vLLM fleet; print figures.

Run: .venv/bin/python tests/benchmarks/bench_autoscale.py [--seeds 10] [--cold-start 120]
     [--trace FILE.csv] [--traces big-step,diurnal] [--json] [--plot-dir DIR]

The model (tests/benchmarks/replay/): every replica is a continuous-batching vLLM engine
timed by the simulator's own model (Llama-3.1-8B bf16 on an A100-SXM4-80GB, chunked
prefill, KV limit, preemption), behind a Service-like random balancer with per-replica
queues, 60 s client timeouts, Prometheus scrapes every 15 s seen 5 s late, cold starts,
draining on removal. Policies: hpa, kpa, keda, ratio, demand, oracle (replay/policies.py).

--json prints one object. With --trace (or one built-in trace) it is
{"<policy>": {"replica_seconds", "slo_attainment", "scalings", "replica_seconds_se",
"slo_se"}}; with several traces it is keyed by trace name first: {"<trace>": {...}}.
A bad CSV prints one line naming the row and the fix, and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from replay import plot, traces  # noqa: E402
from replay.policies import POLICIES, policies as make_policies  # noqa: E402
from replay.run import SLO_SECONDS, compare, default_setup  # noqa: E402

DEFAULT_PLOT_DIR = Path(__file__).resolve().parents[2] / "results" / "autoscale"


def _json_entry(summary) -> dict:
    return {
        "replica_seconds": round(summary.replica_seconds.mean, 1),
        "slo_attainment": round(summary.slo_attainment.mean, 5),
        "scalings": round(summary.scalings.mean, 2),
        "replica_seconds_se": round(summary.replica_seconds.se, 1),
        "slo_se": round(summary.slo_attainment.se, 5),
    }


def _table(name: str, summaries: dict, baseline: str = "hpa") -> str:
    header = (
        f"{'policy':8} {'replica-s':>15} {'vs hpa':>7} {'SLO met':>15} {'p90 TTFT s':>13} "
        f"{'timeouts':>12} {'scalings':>11} {'dir. changes':>12}"
    )
    lines = [f"\n{name}", header, "-" * len(header)]
    base = summaries.get(baseline)
    for policy, s in summaries.items():
        versus = ""
        if base and base.replica_seconds.mean:
            versus = f"{100 * (s.replica_seconds.mean / base.replica_seconds.mean - 1):+.0f}%"
        lines.append(
            f"{policy:8} {s.replica_seconds.fmt(0):>15} {versus:>7} {s.slo_attainment.fmt(1, 100, '%'):>15} "
            f"{s.p90_ttft.fmt(2):>13} {s.timeouts.fmt(0):>12} {s.scalings.fmt(1):>11} {s.direction_changes.fmt(1):>12}"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cold-start", type=float, default=120.0, help="seconds from a new replica to Ready")
    parser.add_argument("--trace", type=Path, help="CSV with a header and rows t_seconds,rate_rps (piecewise constant; "
                        f"the last rate holds {traces.CSV_TAIL_SECONDS:g} s)")
    parser.add_argument("--traces", default=",".join(traces.BUILT_IN), help="built-in traces to run (comma-separated)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="policies to compare (comma-separated)")
    parser.add_argument("--demand", metavar="JSON", help="try demand-mode settings, e.g. "
                        "'{\"slotsPerReplica\": 48}' (spec.autoscaling.demand fields)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--plot-dir", type=Path, default=DEFAULT_PLOT_DIR, help="where PNGs go (needs matplotlib)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    if args.cold_start <= 0:
        parser.error("--cold-start must be positive")

    if args.trace is not None:
        try:
            trace = traces.load_csv(args.trace)
        except traces.TraceError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        chosen = {trace.name: lambda seed, trace=trace: trace}
    else:
        names = [n.strip() for n in args.traces.split(",") if n.strip()]
        unknown = [n for n in names if n not in traces.BUILT_IN]
        if unknown:
            parser.error(f"unknown trace {unknown[0]!r}; choose from {', '.join(traces.BUILT_IN)} or give --trace FILE.csv")
        chosen = {n: traces.BUILT_IN[n] for n in names}
    policy_names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in policy_names if n not in POLICIES]
    if unknown:
        parser.error(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    try:
        demand = json.loads(args.demand) if args.demand else None
        available = make_policies(demand)
        if demand:
            available["demand"](default_setup(args.cold_start), None)  # validate the spec now
    except (ValueError, TypeError) as error:
        detail = error.errors()[0] if hasattr(error, "errors") else None
        why = f"{'.'.join(map(str, detail['loc']))}: {detail['msg']}" if detail else str(error)
        parser.error(f"--demand: {why}; give a JSON object of spec.autoscaling.demand fields")
    policies = {n: available[n] for n in policy_names}

    started = time.perf_counter()
    setup = default_setup(args.cold_start)
    if not args.json:
        print(
            f"Llama-3.1-8B bf16 on A100-SXM4-80GB: one replica sustains {setup.capacity_rps:g} req/s "
            f"(p99 TTFT <= {SLO_SECONDS:g}s), KPA/ratio target {setup.kpa_target:g} in flight per replica; "
            f"cold start {args.cold_start:g}s, replicas {setup.min_replicas}-{setup.max_replicas}, "
            f"TTFT SLO {SLO_SECONDS:g}s, mean ± standard error over {args.seeds} seeds"
        )
    results = {}
    for name, make_trace in chosen.items():
        summaries, seeded = compare(make_trace, policies, args.seeds, args.cold_start, setup)
        results[name] = summaries
        if not args.json:
            print(_table(name, summaries))
        if not args.no_plots:
            note = plot.write(args.plot_dir, name, args.cold_start, seeded[0], summaries)
            if note and not args.json:
                print(note)
    if args.json:
        keyed = {name: {p: _json_entry(s) for p, s in summaries.items()} for name, summaries in results.items()}
        print(json.dumps(next(iter(keyed.values())) if len(keyed) == 1 else keyed, indent=1))
    else:
        runs = len(chosen) * len(policies) * args.seeds
        print(f"\n({time.perf_counter() - started:.0f}s wall for {runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
