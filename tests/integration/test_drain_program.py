"""The preStop drain program (llmops.render.drain), run exactly as rendered, against real
simulator processes: it waits for in-flight requests, is bounded by its budget, and after it
a SIGTERM loses nothing."""

import subprocess
import threading
import time

import pytest

from llmops_load.generator import LoadConfig, run_load_sync
from llmops.render.drain import drain_command
from llmops_sim.process import start_sim

# Llama-3.1-8B on an A100 slowed 20x: ~0.25 s per token, so 12 tokens take ~3 s.
SIM_ENV = {"LLMOPS_SIM_GPU": "NVIDIA-A100-SXM4-80GB", "LLMOPS_SIM_SPEED": "0.05"}


@pytest.fixture
def sim():
    process = start_sim(["meta-llama/Llama-3.1-8B-Instruct"], env=SIM_ENV)
    process.wait_ready()
    yield process
    process.stop()


def run_drain(sim, budget: int, propagation: float = 0.5, timeout: float = 60) -> tuple[float, str]:
    """(seconds it took, its output); also remembers when it ended (the load generator's clock)."""
    started = time.perf_counter()
    done = subprocess.run(drain_command(budget, host="127.0.0.1", port=sim.port, propagation_seconds=propagation),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    run_drain.ended = time.perf_counter()
    return run_drain.ended - started, done.stdout


def load_in_background(sim, **kwargs):
    reports = []
    thread = threading.Thread(target=lambda: reports.append(run_load_sync(LoadConfig(
        url=sim.url, progress_interval=0, **kwargs))), daemon=True)
    thread.start()
    return thread, reports


def wait_running(sim, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    import urllib.request
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(sim.url + "/metrics", timeout=2).read().decode()
        running = sum(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("vllm:num_requests_running{"))
        if running >= count:
            return
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} requests running after {timeout}s")


def test_drain_waits_for_in_flight_streams_then_sigterm_loses_nothing(sim):
    load, reports = load_in_background(sim, concurrency=4, max_requests=4, duration=30, max_tokens=12)
    wait_running(sim, 4)
    elapsed, out = run_drain(sim, budget=60)
    load.join(timeout=30)
    report = reports[0]
    assert (report.requests_sent, report.requests_ok, report.requests_failed) == (4, 4, 0), report.errors
    # The drain ended only after the last stream did, and not long after (two idle polls).
    last_end = max(r.end for r in report.results)
    assert last_end <= run_drain.ended < last_end + 3.0, (run_drain.ended - last_end, out)
    assert elapsed >= 2.0 and "engine idle: drained" in out, out
    assert sim.stop() == 0
    assert not any("aborting in-flight" in line for line in sim.log_lines)


def test_requests_arriving_during_the_drain_are_served_and_waited_for(sim):
    # A client with a stale endpoint list keeps sending during the propagation delay.
    load, reports = load_in_background(sim, rate=2, arrival="constant", duration=2.5, max_tokens=8)
    elapsed, out = run_drain(sim, budget=60, propagation=2.0)
    load.join(timeout=30)
    report = reports[0]
    assert report.requests_failed == 0 and report.requests_ok >= 4, report.errors
    assert elapsed >= 2.0 + 1.5, out  # the last request (sent at ~2.5 s) took ~2 s more
    assert "requests running or waiting" in out


def test_drain_is_bounded_by_its_budget(sim):
    load, _ = load_in_background(sim, concurrency=1, max_requests=1, duration=60, max_tokens=200, timeout=120)
    wait_running(sim, 1)
    elapsed, out = run_drain(sim, budget=2)
    assert 2.0 <= elapsed < 6.0, (elapsed, out)
    assert "drain budget of 2s spent with 1 requests in flight" in out


def test_an_engine_that_is_gone_ends_the_drain_at_once():
    process = start_sim(["meta-llama/Llama-3.1-8B-Instruct"], env=SIM_ENV)
    process.wait_ready()
    port = process.port
    process.stop()
    started = time.monotonic()
    done = subprocess.run(drain_command(60, port=port, propagation_seconds=0), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and time.monotonic() - started < 5
    assert "does not answer" in done.stdout


def test_a_worker_drains_on_its_leaders_engine_named_by_an_environment_variable(sim):
    import os
    load, reports = load_in_background(sim, concurrency=2, max_requests=2, duration=30, max_tokens=8)
    wait_running(sim, 2)
    done = subprocess.run(drain_command(60, host="env:LEADER", port=sim.port, propagation_seconds=0),
                          capture_output=True, text=True, timeout=60, env={**os.environ, "LEADER": "127.0.0.1"})
    load.join(timeout=30)
    assert "2 requests running or waiting" in done.stdout and "engine idle: drained" in done.stdout, done.stdout
    assert reports[0].requests_ok == 2
