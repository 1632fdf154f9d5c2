"""Real processes for multi-node groups: `llmops sim worker` (a Ray worker node) stays up until
SIGTERM/SIGINT and exits 0; a group leader whose TP x PP spans the group's nodes starts serving."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading

import pytest

from llmops_sim.process import start_sim

GROUP_ENV = {"LLMOPS_LEADER_ADDRESS": "10.244.9.9", "LLMOPS_GROUP_SIZE": "2", "LLMOPS_GROUP_INDEX": "1",
             "LLMOPS_SIM_GPU": "NVIDIA-L4", "LLMOPS_SIM_GPU_COUNT": "1"}


def start_worker(args=(), env=GROUP_ENV):
    process = subprocess.Popen([sys.executable, "-m", "llmops.cli", "sim", "worker", *args],
                               env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    return process, lines


def next_line(lines, timeout=15.0) -> str:
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no output from `llmops sim worker` within {timeout}s")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_worker_joins_and_exits_0_on_signal(stop):
    process, lines = start_worker(["--block", "--num-cpus", "4"])
    try:
        joined = next_line(lines)
        assert "joining the Ray cluster at 10.244.9.9:6379" in joined, joined
        assert process.poll() is None, "the worker must stay up until told to stop"
        process.send_signal(stop)
        assert process.wait(timeout=5) == 0
        assert "leaving the Ray cluster" in next_line(lines)
    finally:
        process.kill()
        process.wait()


def test_worker_without_a_leader_address_fails_with_a_fix():
    env = {k: v for k, v in GROUP_ENV.items() if k != "LLMOPS_LEADER_ADDRESS"}
    process, lines = start_worker(env={**env, "LLMOPS_LEADER_ADDRESS": ""})
    assert process.wait(timeout=15) == 2
    assert "LLMOPS_LEADER_ADDRESS is not set" in next_line(lines)


def test_group_leader_with_pp_across_two_one_gpu_nodes_serves():
    leader = start_sim(["Qwen/Qwen2.5-0.5B-Instruct", "--tensor-parallel-size", "1", "--pipeline-parallel-size", "2",
                        "--distributed-executor-backend", "ray"],
                       env={k: v for k, v in GROUP_ENV.items() if k != "LLMOPS_LEADER_ADDRESS"})
    try:
        leader.wait_ready()
    finally:
        assert leader.stop() == 0, leader.log_tail()
