"""A real simulator process per emulated vLLM release against the facts read from that
release's source (tests/data/vllm_release_facts.yaml): /version, metric families present
and absent, finish reasons, error messages and status codes, served edge cases, command-line
refusals and what SIGTERM does to a request in flight."""

import http.client
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from llmops_sim import tokens as tok
from llmops_sim.process import CLI_ENTRY, start_sim
from llmops.waiting import wait_for

FACTS = yaml.safe_load((Path(__file__).parents[1] / "data" / "vllm_release_facts.yaml").read_text())
RELEASES = FACTS["releases"]
MODEL_ARGS = ["Qwen/Qwen2.5-0.5B-Instruct", "--served-model-name", "llama", "--max-model-len", "1000"]


@pytest.fixture(scope="module", params=sorted(RELEASES))
def sim(request):
    process = start_sim(MODEL_ARGS, env={"LLMOPS_SIM_VLLM_VERSION": request.param, "LLMOPS_SIM_SPEED": "20"})
    process.wait_ready()
    process.version = request.param
    yield process
    process.stop()


def call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def completion_body(spec):
    body = {k: v for k, v in spec.items() if k != "prompt_tokens"}
    return {"prompt": tok.prompt_text_for_tokens(spec["prompt_tokens"]), **body}


def test_version_reports_the_emulated_release(sim):
    status, body = call(sim.url + "/version")
    assert status == 200 and json.loads(body) == {"version": sim.version}


def test_metric_families_present_and_absent(sim):
    call(sim.url + "/v1/completions", {"prompt": "warm up", "max_tokens": 2})
    status, body = call(sim.url + "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    facts = RELEASES[sim.version]
    missing = [n for n in facts["metrics_present"] + facts["metrics_present_extra"] if n not in families]
    unexpected = [n for n in facts["metrics_absent"] if n in families]
    assert (missing, unexpected) == ([], [])
    reasons = {s.labels["finished_reason"] for s in families["vllm:request_success"].samples}
    assert reasons == set(facts["finish_reasons"])
    http = {(s.labels["handler"], s.labels["status"]) for s in families["http_requests"].samples
            if s.name == "http_requests_total"}
    assert ("/v1/completions", "2xx") in http and not any(h in ("/metrics", "/version") for h, _ in http)


def fact_of(sim, kind, index):
    facts = RELEASES[sim.version][kind]
    if index >= len(facts):
        pytest.skip(f"fewer {kind} facts for {sim.version}")
    return facts[index]


@pytest.mark.parametrize("index", range(4))
def test_error_messages_and_status_codes(sim, index):
    fact = fact_of(sim, "errors", index)
    status, body = call(sim.url + "/v1/completions", completion_body(fact["body"]))
    assert status == fact["status"], fact["name"]
    assert json.loads(body) == {"error": {"message": fact["message"], "type": fact["type"], "param": fact["param"],
                                          "code": fact["status"]}}, fact["name"]


@pytest.mark.parametrize("index", range(2))
def test_served_edge_cases(sim, index):
    fact = fact_of(sim, "served", index)
    status, body = call(sim.url + "/v1/completions", completion_body(fact["body"]))
    reply = json.loads(body)
    assert status == 200, reply
    assert reply["usage"]["completion_tokens"] == fact["completion_tokens"], fact["name"]
    assert reply["choices"][0]["finish_reason"] == fact["finish_reason"], fact["name"]


@pytest.mark.parametrize("version", sorted(RELEASES))
def test_command_line_refusals_exit_like_vllm(version):
    for case in RELEASES[version]["cli"]:
        if case["exit_code"] is None:
            continue
        done = subprocess.run([sys.executable, "-c", CLI_ENTRY, "sim", "serve", *MODEL_ARGS, *case["args"]],
                              env={"LLMOPS_SIM_VLLM_VERSION": version, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == case["exit_code"], done.stderr
        (line,) = done.stderr.strip().splitlines()  # one line, vLLM's own
        assert line.startswith(case["stderr"])


def stream_lines(url, out):
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps({
        "prompt": "x", "max_tokens": 900, "ignore_eos": True, "stream": True}).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            for line in response:
                out.append(line.decode().strip())
    except (OSError, http.client.HTTPException) as exc:  # a cut connection
        out.append(f"error: {type(exc).__name__}")


@pytest.mark.parametrize("version", sorted(RELEASES))
def test_sigterm_with_a_request_in_flight(version):
    process = start_sim(MODEL_ARGS, env={"LLMOPS_SIM_VLLM_VERSION": version, "LLMOPS_SIM_SPEED": "0.5"})
    process.wait_ready()
    lines: list[str] = []
    client = threading.Thread(target=stream_lines, args=(process.url, lines))
    client.start()
    wait_for(lambda: any(line.startswith("data: {") for line in lines), 10, "the stream to start")
    process.process.terminate()
    assert process.process.wait(15) == FACTS["sigterm_exit_code"]
    client.join(15)
    events = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    if version == "0.11.0":  # the server task is cancelled: the stream just stops
        assert events[-1] != "[DONE]"
    else:  # --shutdown-timeout 0: the engine aborts it and the client is told
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "abort"


@pytest.mark.parametrize("env,line", [
    ({"LLMOPS_SIM_VLLM_VERSION": "0.9.2"}, "error: LLMOPS_SIM_VLLM_VERSION='0.9.2' is not an emulated vLLM release; "
                                           "accepted: 0.8, 0.8.5, 0.11, 0.11.0, 0.33, 0.33.0"),
    ({"LLMOPS_SIM_GPU": "NVIDIA-Z9"}, "error: LLMOPS_SIM_GPU='NVIDIA-Z9' is unknown; fix: use one of "),
])
def test_bad_environment_is_one_line_and_exit_2(env, line):
    done = subprocess.run([sys.executable, "-c", CLI_ENTRY, "sim", "serve", *MODEL_ARGS],
                          env={**env, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    (only,) = done.stderr.strip().splitlines()
    assert only.startswith(line)


def test_data_parallel_engines_each_report_their_own_series():
    process = start_sim([*MODEL_ARGS, "--data-parallel-size", "2"], env={"LLMOPS_SIM_GPU_COUNT": "2"})
    try:
        process.wait_ready()
        # Concurrent requests: each goes to the engine with the lowest waiting x 4 + running.
        clients = [threading.Thread(target=call, args=(process.url + "/v1/completions",
                                                      {"prompt": "hi", "max_tokens": 50, "ignore_eos": True}))
                   for _ in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(30)
        _, body = call(process.url + "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        engines = {s.labels["engine"]: s.value for s in families["vllm:request_success"].samples
                   if s.name.endswith("_total") and s.labels["finished_reason"] == "length"}
        assert engines == {"0": 3, "1": 3}
    finally:
        process.stop()
