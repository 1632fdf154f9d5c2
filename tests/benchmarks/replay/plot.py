"""One PNG per trace: arrival rate, replicas per policy, TTFT p90 over time (seed 0).

matplotlib is an optional extra (`pip install -e '.[bench]'`), imported only here and
only when a plot is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from replay.traces import Trace

_warned = False


def write(directory: Path, name: str, cold_start: float, trace: Trace, summaries: dict) -> Optional[str]:
    """Write DIR/<name>-cold<cold_start>.png; returns a line to print (where, or why not)."""
    global _warned
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if _warned:
            return None
        _warned = True
        return "plots skipped: matplotlib is not installed (pip install -e '.[bench]')"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-cold{cold_start:g}.png"
    figure, (rate_axis, replica_axis, ttft_axis) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    first = next(iter(summaries.values())).example
    times = [t / 60 for t, _ in first.arrival_timeline]
    rate_axis.step(times, [r for _, r in first.arrival_timeline], where="post", label="arrivals (1 min bins)")
    rate_axis.step([t / 60 for t, _ in trace.segments] + [trace.duration / 60],
                   [r for _, r in trace.segments] + [trace.segments[-1][1]], where="post", label="trace rate")
    rate_axis.set_ylabel("req/s")
    rate_axis.legend(loc="upper right")
    for policy, summary in summaries.items():
        run = summary.example
        replica_axis.step([t / 60 for t, _ in run.replicas_timeline], [n for _, n in run.replicas_timeline],
                          where="post", label=policy)
        ttft_axis.plot([t / 60 for t, _ in run.ttft_p90_timeline],
                       [v if not math.isnan(v) else None for _, v in run.ttft_p90_timeline], label=policy)
    replica_axis.set_ylabel("replicas")
    replica_axis.legend(loc="upper right", ncol=3)
    ttft_axis.set_yscale("log")
    ttft_axis.set_ylabel("TTFT p90 s (per arrival minute)")
    ttft_axis.set_xlabel("minutes")
    figure.suptitle(f"{name}, cold start {cold_start:g}s (seed 0)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return f"plot: {path}"
