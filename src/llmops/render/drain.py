"""The preStop drain every serving container runs before it is sent SIGTERM.

Why a preStop step at all: vLLM stops taking requests the moment it gets SIGTERM (0.11 even
cuts the running ones off; 0.33 aborts them after --shutdown-timeout, default 0), while
kube-proxy and client-side balancers keep sending new requests to the pod for a moment after
its endpoint is removed. So the pod keeps serving for ENDPOINT_PROPAGATION_SECONDS, then waits
until vLLM's own gauges say nothing is running or waiting (bounded by engine.drainSeconds),
and only then lets the kubelet send SIGTERM.

The program is rendered inline (`python3 -c`): the vLLM image ships Python but nothing of
ours, and an inline script needs no ConfigMap to create, keep in sync and mount in every
LeaderWorkerSet and StatefulSet template; a change to it rolls the pods like any spec
change. Standard library only. Pure: nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from llmops.api.v1alpha1 import VLLM_PORT

# How long a stopping pod keeps serving after it is removed from the Service's endpoints:
# the endpoints controller, kube-proxy and client-side balancers (llmops load re-reads
# Endpoints every 2 s) need that long to stop sending to it.
ENDPOINT_PROPAGATION_SECONDS = 5
# After the drain, SIGTERM: the engine exits within seconds; the kubelet's SIGKILL comes
# this long after the drain budget is spent.
SHUTDOWN_MARGIN_SECONDS = 15
# Polls of /metrics while draining, and how many idle readings in a row end the drain (one
# reading can fall between a request's arrival and the engine counting it).
POLL_SECONDS = 0.5
IDLE_READINGS = 2
LOCAL_ENGINE = "127.0.0.1"

# argv: host (or env:NAME to read it from the environment), port, propagation s, budget s, poll s, idle readings.
DRAIN_PROGRAM = r'''
import os, sys, time, urllib.request
host, port, delay, budget, poll, idle_needed = sys.argv[1:7]
if host.startswith("env:"):
    host = os.environ.get(host[4:], "127.0.0.1")
delay, budget, poll, idle_needed = float(delay), float(budget), float(poll), int(idle_needed)
started = time.monotonic()
def say(message):
    print("llmops-drain %.1fs: %s" % (time.monotonic() - started, message), flush=True)
say("serving %gs more while endpoint removal propagates" % delay)
time.sleep(delay)
url = "http://%s:%s/metrics" % (host, port)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
gauges = ("vllm:num_requests_running", "vllm:num_requests_waiting")
deadline, idle, last = time.monotonic() + budget, 0, None
while True:
    try:
        text = opener.open(url, timeout=2).read().decode("utf-8", "replace")
    except Exception as exc:
        say("%s does not answer (%s): nothing left to drain" % (url, exc))
        break
    busy = 0.0
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in gauges:
            busy += float(line.rpartition("}")[2].split()[0] if "}" in line else line.split()[1])
    if busy != last:
        say("%g requests running or waiting" % busy)
        last = busy
    idle = idle + 1 if busy == 0 else 0
    if idle >= idle_needed:
        say("engine idle: drained")
        break
    if time.monotonic() >= deadline:
        say("drain budget of %gs spent with %g requests in flight" % (budget, busy))
        break
    time.sleep(poll)
'''


def drain_command(drain_seconds: int, host: str = LOCAL_ENGINE, port: int = VLLM_PORT,
                  propagation_seconds: float = ENDPOINT_PROPAGATION_SECONDS) -> list[str]:
    """The exec command of the drain; host may be env:NAME (a worker waits on its leader)."""
    return ["python3", "-c", DRAIN_PROGRAM.strip(), host, str(port), f"{propagation_seconds:g}",
            str(drain_seconds), f"{POLL_SECONDS:g}", str(IDLE_READINGS)]


def pre_stop_lifecycle(drain_seconds: int, host: str = LOCAL_ENGINE) -> dict[str, Any]:
    return {"preStop": {"exec": {"command": drain_command(drain_seconds, host)}}}


def termination_grace_seconds(drain_seconds: int) -> int:
    """The kubelet's budget for preStop + SIGTERM: propagation + drain + the engine's exit."""
    return ENDPOINT_PROPAGATION_SECONDS + drain_seconds + SHUTDOWN_MARGIN_SECONDS
