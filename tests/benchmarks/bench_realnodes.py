"""Real sandbox nodes: `sandbox up` with everything cached, `down`, and memory per node.

    .venv/bin/python tests/benchmarks/bench_realnodes.py [--runs 3] [--nodes FILE] [--json] [--png PATH]

Uses a sandbox of its own (bridge $LLMOPS_SANDBOX_REAL_BRIDGE or llmopsr0, range
$LLMOPS_SANDBOX_REAL_POD_CIDR or 10.246.0.0/16). The first run also pays any one-time image
build; it is reported apart. Memory per node: the summed RSS of the node's processes
(supervisor, containerd, kubelet, kube-proxy; shared pages counted in each) and its
memory cgroup's usage, both with no pods running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmops_sandbox import cgroups, lifecycle, realnodes
from llmops_sandbox.state import StateDir


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def node_memory(state: StateDir) -> dict[str, dict[str, float]]:
    out = {}
    for rec in realnodes.records(state):
        pids = cgroups.pids(rec.cgroup)
        usage = Path(f"/sys/fs/cgroup/memory{rec.cgroup}/memory.usage_in_bytes")
        out[rec.name] = {"processes": len(pids), "rss_mib": round(sum(rss_mib(p) for p in pids), 1),
                         "cgroup_mib": round(int(usage.read_text()) / 2**20, 1) if usage.exists() else -1}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nodes", help="node file (default: the shipped six nodes)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--png", help="write a bar chart of the phases per run")
    args = ap.parse_args()
    bridge = os.environ.get("LLMOPS_SANDBOX_REAL_BRIDGE", "llmopsr0")
    cidr = os.environ.get("LLMOPS_SANDBOX_REAL_POD_CIDR", "10.246.0.0/16")
    root = Path(tempfile.gettempdir()) / f"llmops-bench-realnodes-{bridge}"
    runs = []
    for i in range(args.runs):
        marks: list[tuple[float, str]] = []
        t0 = time.monotonic()
        lifecycle.up(lifecycle.UpOptions(dir=root, nodes_file=args.nodes, bridge=bridge, pod_cidr=cidr,
                                         prometheus=False),
                     progress=lambda m: marks.append((time.monotonic() - t0, m)))
        up_s = time.monotonic() - t0
        memory = node_memory(StateDir(root))
        t1 = time.monotonic()
        lifecycle.down(root, progress=lambda m: None)
        down_s = time.monotonic() - t1
        phase = {"control plane": next((t for t, m in marks if "creating" in m and "namespaces" in m), 0.0),
                 "nodes started": next((t for t, m in marks if "real nodes (containerd" in m), 0.0),
                 "kubelets registered": next((t for t, m in marks if "kubelets registered" in m), 0.0),
                 "all Ready": up_s}
        runs.append({"run": i + 1, "up_s": round(up_s, 1), "down_s": round(down_s, 1), "phases": phase,
                     "nodes": len(memory), "memory": memory,
                     "built": [m for _, m in marks if "built image" in m or "template containerd root ready" in m]})
        print(f"run {i + 1}: up {up_s:.1f}s (registered at {phase['kubelets registered']:.1f}s), down {down_s:.1f}s, "
              f"{len(memory)} nodes; rss/node {statistics.mean(m['rss_mib'] for m in memory.values()):.0f} MiB"
              + (f"; one-time: {runs[-1]['built']}" if runs[-1]["built"] else ""), file=sys.stderr, flush=True)
    cached = [r for r in runs if not r["built"]] or runs[1:] or runs
    per_node_rss = [m["rss_mib"] for r in runs for m in r["memory"].values()]
    per_node_cg = [m["cgroup_mib"] for r in runs for m in r["memory"].values()]
    summary = {
        "runs": runs,
        "up_cached_s": {"mean": round(statistics.mean(r["up_s"] for r in cached), 1),
                        "min": min(r["up_s"] for r in cached), "max": max(r["up_s"] for r in cached)},
        "down_s": {"mean": round(statistics.mean(r["down_s"] for r in runs), 1),
                   "min": min(r["down_s"] for r in runs), "max": max(r["down_s"] for r in runs)},
        "rss_per_node_mib": {"mean": round(statistics.mean(per_node_rss), 1), "min": min(per_node_rss),
                             "max": max(per_node_rss)},
        "cgroup_per_node_mib": {"mean": round(statistics.mean(per_node_cg), 1), "min": min(per_node_cg),
                                "max": max(per_node_cg)},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"up (cached, {len(cached)} runs): {summary['up_cached_s']}")
        print(f"down: {summary['down_s']}")
        print(f"memory per node (RSS, MiB): {summary['rss_per_node_mib']}; memory cgroup: {summary['cgroup_per_node_mib']}")
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = ["control plane", "nodes started", "kubelets registered", "all Ready"]
        for r in runs:
            prev = 0.0
            for j, name in enumerate(names):
                t = r["phases"][name]
                ax.barh(r["run"], t - prev, left=prev, color=f"C{j}", label=name if r["run"] == 1 else None)
                prev = t
        ax.axvline(30, color="k", ls="--", lw=1, label="target 30 s")
        ax.set_xlabel("seconds from `sandbox up`")
        ax.set_ylabel("run")
        ax.set_title(f"sandbox up, {runs[0]['nodes']} real nodes (run 1 may include one-time builds)")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
