"""What model pre-staging costs on a node besides the download itself: checking files
against the source while staging, and the serving pod's re-hash (`verifyOnStart`), which
delays every serving pod start by size / hash rate, and that check's peak memory (files are
hashed in 4 MiB chunks, so it must not grow with the model).

Run: .venv/bin/python tests/benchmarks/bench_stage.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmops.stage.fetchers import SimulatedFetcher, SimulatedHub
from llmops.stage.stager import StageRequest, stage


CHILD = """
import sys
from pathlib import Path
from llmops.stage.stager import wait_for_stage
wait_for_stage(Path(sys.argv[1]), 1, True, log=lambda m: None)
print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024, help="simulated model size")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        request = StageRequest("meta-llama/Llama-3.1-8B-Instruct", "main", Path(tmp), ("original/*",))
        hub = SimulatedHub(total_bytes=size, seconds=0)
        t0 = time.perf_counter()
        stage(request, SimulatedFetcher(hub), log=lambda m: None)
        staging = time.perf_counter() - t0
        # The serving pod's check, as its own process; VmHWM is per address space (ru_maxrss
        # would include the forked parent's pages).
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(request.directory)], check=True,
                             capture_output=True, text=True).stdout
        verify = time.perf_counter() - t0
        verify_rss_mib = int(out.split()[-2]) / 1024
        t0 = time.perf_counter()
        stage(request, SimulatedFetcher(hub), log=lambda m: None)
        restart = time.perf_counter() - t0
    print(f"model size                         {args.mib} MiB")
    print(f"stage (generate + write + check)   {staging:.2f} s  ({args.mib / staging:.0f} MiB/s; "
          "the simulated hub generates bytes, so this is a lower bound on local overhead)")
    print(f"serving pod verifyOnStart          {verify:.2f} s  ({args.mib / verify:.0f} MiB/s sha256) "
          f"-> {verify * 16 / args.mib * 1024:.0f} s for a 16 GiB model (Llama-3.1-8B bf16)")
    print(f"stager restart on a staged node    {restart * 1000:.1f} ms (marker read, no hashing)")
    print(f"peak RSS of `llmops stage wait`    {verify_rss_mib:.0f} MiB (files hashed in 4 MiB chunks)")


if __name__ == "__main__":
    main()
