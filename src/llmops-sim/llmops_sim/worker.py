"""`llmops sim worker`: stands in for a Ray worker node of a multi-node vLLM group.

In a real group the worker pod runs `ray start --block --address=LEADER:6379` and the leader's
vLLM engine places model shards on it. The simulator's leader models the whole group by itself
(LLMOPS_GROUP_SIZE), so the worker only has to look like a node: it says which cluster it
joins (no connection is made) and stays up until SIGTERM/SIGINT, then exits 0."""

from __future__ import annotations

import signal
import sys
from typing import Mapping, Sequence

RAY_PORT = 6379


def leader_address(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """`--address=H:P` / `--address H:P` among the (tolerated) args, else $LLMOPS_LEADER_ADDRESS:6379."""
    for i, token in enumerate(argv):
        if token.startswith("--address="):
            return token.split("=", 1)[1] or None
        if token == "--address" and i + 1 < len(argv):
            return argv[i + 1]
    host = env.get("LLMOPS_LEADER_ADDRESS", "").strip()
    return f"{host}:{RAY_PORT}" if host else None


def join_message(address: str, env: Mapping[str, str]) -> str:
    index = env.get("LLMOPS_GROUP_INDEX", "?").strip() or "?"
    size = env.get("LLMOPS_GROUP_SIZE", "?").strip() or "?"
    gpus = env.get("LLMOPS_SIM_GPU_COUNT", "").strip()
    product = env.get("LLMOPS_SIM_GPU", "").strip() or "GPU"
    with_gpus = f" with {gpus} x {product}" if gpus else ""
    return (f"simulated Ray worker {index} of a {size}-node group joining the Ray cluster at {address}"
            f"{with_gpus} (simulated: no connection is made); waiting for SIGTERM")


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    address = leader_address(argv, env)
    if not address:
        print("error: LLMOPS_LEADER_ADDRESS is not set and no --address given; fix: set the leader pod's "
              "address in the worker's environment", file=sys.stderr)
        return 2
    # Block the signals first so one arriving before sigwait is not lost (and no handler races).
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    print(join_message(address, env), flush=True)
    received = signal.sigwait(stop_signals)
    print(f"received {signal.Signals(received).name}; leaving the Ray cluster", flush=True)
    return 0
