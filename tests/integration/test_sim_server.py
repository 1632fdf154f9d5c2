"""A real `llmops sim serve` process on 127.0.0.1: endpoints against vLLM's shapes,
the /metrics exposition parsed with prometheus_client, queueing, readiness, draining."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops_sim import metrics as sim_metrics
from llmops_sim.process import start_sim
from llmops_sim.releases import NEWEST, RELEASES

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def sim():
    process = start_sim([MODEL, "--served-model-name", "llama", "--max-model-len", "4096", "--max-num-seqs", "4",
                         "--enable-lora"],
                        env={"LLMOPS_SIM_SPEED": "20", "LLMOPS_SIM_CONTROL": "1"})
    process.wait_ready()
    yield process
    process.stop()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post(url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    return get(req)


def families(sim):
    status, _, body = get(sim.url + "/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def scalar(fams, name):
    (sample,) = [s for s in fams[name].samples]
    return sample.value


def gauge(sim, name):
    return scalar(families(sim), name)


def test_health_ping_version(sim):
    assert get(sim.url + "/health")[0] == 200
    assert get(sim.url + "/ping")[0] == 200
    status, _, body = get(sim.url + "/version")
    assert status == 200 and json.loads(body)["version"]


def test_models_endpoint_shape(sim):
    status, _, body = get(sim.url + "/v1/models")
    models = json.loads(body)
    assert status == 200 and models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "llama" and card["object"] == "model" and card["owned_by"] == "vllm"
    assert card["root"] == MODEL and card["max_model_len"] == 4096 and card["parent"] is None
    assert isinstance(card["created"], int) and card["permission"][0]["object"] == "model_permission"


def test_chat_completion_non_streaming(sim):
    status, _, body = post(sim.url + "/v1/chat/completions",
                           {"model": "llama", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 6,
                            "ignore_eos": True})
    reply = json.loads(body)
    assert status == 200 and reply["object"] == "chat.completion" and reply["id"].startswith("chatcmpl-")
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant" and len(choice["message"]["content"].split()) == 6
    assert choice["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 6 and reply["usage"]["prompt_tokens"] == 9
    assert reply["usage"]["total_tokens"] == 15


def test_completion_non_streaming(sim):
    status, _, body = post(sim.url + "/v1/completions", {"model": "llama", "prompt": "abcd" * 10, "max_tokens": 3})
    reply = json.loads(body)
    assert status == 200 and reply["object"] == "text_completion" and reply["id"].startswith("cmpl-")
    assert reply["usage"] == {"prompt_tokens": 10, "total_tokens": 13, "completion_tokens": 3,
                              "prompt_tokens_details": None}


def read_sse(sim, path, body):
    req = urllib.request.Request(sim.url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block[len("data: "):] for block in raw.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in raw.split("\n\n") if block)
    return events


def test_chat_streaming_with_usage(sim):
    events = read_sse(sim, "/v1/chat/completions",
                      {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stream": True,
                       "ignore_eos": True, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert "".join(c["choices"][0]["delta"]["content"] for c in content).split().__len__() == 5
    assert content[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert len({c["id"] for c in chunks}) == 1


def test_completion_streaming_without_usage(sim):
    events = read_sse(sim, "/v1/completions", {"prompt": "hello", "max_tokens": 4, "stream": True,
                                               "ignore_eos": True})
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]" and all("usage" not in c or c["usage"] is None for c in chunks)
    assert len("".join(c["choices"][0]["text"] for c in chunks).split()) == 4
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("path,body,status,err_type", [
    ("/v1/chat/completions", b"{not json", 400, "BadRequestError"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "BadRequestError"),
    ("/v1/completions", {"prompt": "x", "max_tokens": -1}, 400, "BadRequestError"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "NotFoundError"),
    ("/v1/completions", {"prompt": "x" * 20000, "max_tokens": 10}, 400, "BadRequestError"),
])
def test_errors_have_vllm_shape(sim, path, body, status, err_type):
    got, _, raw = post(sim.url + path, body)
    error = json.loads(raw)["error"]
    assert got == status
    assert error["type"] == err_type and error["code"] == status and error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_metrics_exposition_names_types_labels_buckets(sim):
    post(sim.url + "/v1/completions", {"prompt": "abc", "max_tokens": 2})
    fams = families(sim)
    expected_types = {
        "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
        "vllm:kv_cache_usage_perc": "gauge", "vllm:prompt_tokens": "counter",
        "vllm:generation_tokens": "counter", "vllm:request_success": "counter",
        "vllm:num_preemptions": "counter", "vllm:prefix_cache_queries": "counter",
        "vllm:prefix_cache_hits": "counter", "vllm:time_to_first_token_seconds": "histogram",
        "vllm:inter_token_latency_seconds": "histogram", "vllm:e2e_request_latency_seconds": "histogram",
        "vllm:request_queue_time_seconds": "histogram", "vllm:request_inference_time_seconds": "histogram",
        "vllm:request_prefill_time_seconds": "histogram", "vllm:request_decode_time_seconds": "histogram",
        "vllm:request_prompt_tokens": "histogram", "vllm:request_generation_tokens": "histogram",
    }
    for name, kind in expected_types.items():
        assert fams[name].type == kind, name
        for s in fams[name].samples:
            assert s.labels["model_name"] == "llama" and s.labels["engine"] == "0", s
    reasons = {s.labels["finished_reason"] for s in fams["vllm:request_success"].samples
               if s.name.endswith("_total")}
    assert reasons == set(RELEASES[NEWEST].finish_reasons)

    def bounds(name):
        return [float(s.labels["le"]) for s in fams[name].samples if s.name.endswith("_bucket")][:-1]

    assert bounds("vllm:time_to_first_token_seconds") == list(sim_metrics.TTFT_BUCKETS)
    assert 2.0 not in bounds("vllm:time_to_first_token_seconds")
    assert bounds("vllm:inter_token_latency_seconds") == list(sim_metrics.ITL_BUCKETS)
    for name in ("vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds"):
        assert bounds(name) == [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                                60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
    assert bounds("vllm:request_prompt_tokens") == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert "vllm:gpu_cache_usage_perc" not in fams


async def _stream_many(url, count, max_tokens):
    async with aiohttp.ClientSession() as session:
        async def one():
            async with session.post(url + "/v1/completions", json={
                    "prompt": "hello", "max_tokens": max_tokens, "ignore_eos": True, "stream": True}) as response:
                assert response.status == 200
                async for _ in response.content:
                    pass
        await asyncio.gather(*(one() for _ in range(count)))


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_queueing_four_run_four_wait(sim):
    """max-num-seqs=4 and 8 concurrent requests: /metrics shows 4 running and 4 waiting."""
    post(sim.url + "/sim/control", {"pause": True})  # hold the engine so the snapshot is deterministic
    loop = asyncio.new_event_loop()
    import threading
    thread = threading.Thread(target=lambda: loop.run_until_complete(_stream_many(sim.url, 8, 40)))
    thread.start()
    try:
        wait_until(lambda: gauge(sim, "vllm:num_requests_waiting") == 8, 10, "8 queued while paused")
        post(sim.url + "/sim/control", {"pause": False, "speed_factor": 1})  # ~0.5 s per batch of 4
        snapshot = wait_until(lambda: (lambda f: f if scalar(f, "vllm:num_requests_running") else None)(
            families(sim)), 10, "requests running")
        assert scalar(snapshot, "vllm:num_requests_running") == 4  # one scrape: a consistent view
        assert scalar(snapshot, "vllm:num_requests_waiting") == 4
        assert 0 < scalar(snapshot, "vllm:kv_cache_usage_perc") < 1
    finally:
        post(sim.url + "/sim/control", {"pause": False, "speed_factor": 20})
        thread.join(30)
        loop.close()
    assert not thread.is_alive()
    wait_until(lambda: gauge(sim, "vllm:num_requests_running") == 0, 5, "idle")
    queue = {s.name: s.value for s in families(sim)["vllm:request_queue_time_seconds"].samples
             if not s.labels.get("le")}
    assert queue["vllm:request_queue_time_seconds_count"] >= 8
    assert queue["vllm:request_queue_time_seconds_sum"] > 0


def test_not_ready_while_loading_then_ready():
    process = start_sim(["m-1B"], env={"LLMOPS_SIM_STARTUP_SECONDS": "1.5"})
    try:
        status, _, body = get(process.url + "/health")
        assert status == 503
        assert get(process.url + "/v1/models")[0] == 503
        process.wait_ready(10)
        assert get(process.url + "/v1/models")[0] == 200
    finally:
        process.stop()


def test_model_that_does_not_fit_exits_like_vllm():
    process = start_sim(["meta-llama/Llama-3.1-70B-Instruct"], env={"LLMOPS_SIM_GPU": "NVIDIA-L4"})
    assert process.process.wait(10) == 1
    assert any("No available memory for the cache blocks" in line for line in process.log_lines)


def test_legacy_names_and_error_shape():
    process = start_sim(["m-1B"], env={"LLMOPS_SIM_LEGACY_KV_METRIC": "1"})
    try:
        process.wait_ready()
        fams = families(process)
        assert "vllm:gpu_cache_usage_perc" in fams and "vllm:kv_cache_usage_perc" not in fams
        _, _, raw = post(process.url + "/v1/completions", {"model": "nope", "prompt": "x"})
        assert json.loads(raw)["object"] == "error"
    finally:
        process.stop()


def test_sigterm_drains_in_flight_requests_for_the_shutdown_timeout():
    process = start_sim(["m-8B", "--shutdown-timeout", "30"], env={"LLMOPS_SIM_SPEED": "1"})
    process.wait_ready()
    result = {}

    def slow_request():
        result["reply"] = post(process.url + "/v1/completions", {"prompt": "x", "max_tokens": 60, "ignore_eos": True})

    import threading
    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_until(lambda: gauge(process, "vllm:num_requests_running") == 1, 5, "request running")
    process.process.terminate()
    thread.join(15)
    assert process.process.wait(15) == 0
    status, _, body = result["reply"]
    assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 60


def test_client_disconnect_aborts_the_request_and_frees_its_slot():
    process = start_sim(["m-8B"], env={"LLMOPS_SIM_SPEED": "1"})  # 2000 tokens would take ~25 s
    try:
        process.wait_ready()

        async def start_then_hang_up():
            async with aiohttp.ClientSession() as session:
                async with session.post(process.url + "/v1/completions", json={
                        "prompt": "x", "max_tokens": 2000, "ignore_eos": True, "stream": True}) as response:
                    await response.content.readline()  # first token arrived: it is running

        asyncio.run(start_then_hang_up())
        wait_until(lambda: gauge(process, "vllm:num_requests_running") == 0, 5, "the aborted request to leave")
        assert gauge(process, "vllm:kv_cache_usage_perc") == 0
        success = {s.labels["finished_reason"]: s.value for s in families(process)["vllm:request_success"].samples
                   if s.name.endswith("_total")}
        assert sum(success.values()) == 0  # vLLM does not count aborted requests as successes
        wait_until(lambda: any("Aborted request(s) cmpl-" in line for line in process.log_lines), 5,
                   "the abort's INFO line")
        assert not [line for line in process.log_lines if line.startswith("ERROR") or "Traceback" in line]
    finally:
        process.stop()
