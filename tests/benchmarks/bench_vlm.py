"""Vision-language figures: prefill time and KV cache per image, from the simulator, next to
the planner's prediction.

For each model and GPU a simulator serves one request at a time (prefix caching off, so a
repeated text prefix is not served from cache): a text-only chat request and the same text
with one image. Per image:
- prefill: the difference of vllm:request_prefill_time_seconds between the two (median of
  --repeats), against the simulator's timing model for the image's tokens plus encoder work;
- KV: blocks held while the request decodes (/sim/state), difference x 16 tokens x the
  simulator's KV bytes per token, against the planner's tokens x its KV bytes per token
  (the model's config.json shape).

Run: .venv/bin/python tests/benchmarks/bench_vlm.py [--size 1280x720] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from llmops_load.images import image_part
from llmops.planner.gpus import lookup_gpu
from llmops.planner.memory import kv_bytes_per_token
from llmops.planner.models import lookup_model
from llmops_sim import timing
from llmops_sim.config import build_config
from llmops_sim.process import start_sim

MODELS = ("Qwen/Qwen2.5-VL-7B-Instruct", "google/gemma-3-4b-it")
GPUS = ("NVIDIA-L4", "NVIDIA-A100-SXM4-80GB")
TEXT = [{"type": "text", "text": "Describe what the camera sees, briefly. " * 4}]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def prefill_sum(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "vllm:request_prefill_time_seconds":
            return sum(s.value for s in family.samples if s.name.endswith("_sum"))
    raise RuntimeError("no vllm:request_prefill_time_seconds")


def chat(url: str, content: list, max_tokens: int) -> dict:
    return post(url + "/v1/chat/completions", {"messages": [{"role": "user", "content": content}],
                                               "max_tokens": max_tokens, "ignore_eos": True})


def prefill_seconds(url: str, content: list) -> float:
    before = prefill_sum(url)
    chat(url, content, 1)
    return prefill_sum(url) - before


def blocks_while_decoding(url: str, content: list) -> int:
    """Most KV blocks in use while one request decodes."""
    state = get_json(url + "/sim/state")
    total = state["kv_blocks_total"]
    worker = threading.Thread(target=chat, args=(url, content, 60))
    worker.start()
    most = 0
    while worker.is_alive():
        most = max(most, round(get_json(url + "/sim/state")["kv_cache_usage"] * total))
        time.sleep(0.01)
    worker.join()
    return most


def measure(model: str, gpu: str, size: tuple[int, int], repeats: int) -> dict:
    args = [model, "--max-model-len", "8192", "--no-enable-prefix-caching"]
    env = {"LLMOPS_SIM_GPU": gpu, "LLMOPS_SIM_CONTROL": "1"}
    config = build_config(args, env)
    info = lookup_model(model)
    tokens = info.vision.image_tokens(*size)
    image = [image_part(*size, variant=1), *TEXT]
    process = start_sim(args, env=env)
    try:
        process.wait_ready()
        text_prefill, image_prefill = [], []
        for _ in range(repeats):
            text_prefill.append(prefill_seconds(process.url, TEXT))
            image_prefill.append(prefill_seconds(process.url, image))
        text_blocks = blocks_while_decoding(process.url, TEXT)
        image_blocks = blocks_while_decoding(process.url, image)
        prompt_text = chat(process.url, TEXT, 1)["usage"]["prompt_tokens"]
    finally:
        process.stop()
    costs = config.step_costs()
    encoder = config.multimodal.encoder_work(tokens)
    model_text = timing.step_duration(costs, 1, prompt_text, prompt_text)
    model_image = timing.step_duration(costs, 1, prompt_text + tokens + encoder, prompt_text + tokens)
    planner_per_token = kv_bytes_per_token(info, 1, 1, 2)
    return {
        "model": model, "gpu": gpu, "image": f"{size[0]}x{size[1]}", "image_tokens": tokens,
        "sim_prefill_ms_per_image": round((statistics.median(image_prefill) - statistics.median(text_prefill)) * 1e3, 1),
        "timing_model_prefill_ms_per_image": round((model_image - model_text) * 1e3, 1),
        "sim_kv_mib_per_image": round((image_blocks - text_blocks) * timing.BLOCK_SIZE * config.kv_bytes_per_token
                                      / 2**20, 1),
        "planner_kv_mib_per_image": round(tokens * planner_per_token / 2**20, 1),
        "planner_gpu": lookup_gpu(gpu).product,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    print(f"{'model':<30}{'gpu':<24}{'tokens':>7}{'prefill: sim':>14}{'timing model':>14}"
          f"{'KV: sim':>12}{'planner':>12}")
    for model in MODELS:
        for gpu in GPUS:
            row = measure(model, gpu, size, args.repeats)
            print(f"{model:<30}{gpu:<24}{row['image_tokens']:>7}{row['sim_prefill_ms_per_image']:>11.1f} ms"
                  f"{row['timing_model_prefill_ms_per_image']:>11.1f} ms{row['sim_kv_mib_per_image']:>8.1f} MiB"
                  f"{row['planner_kv_mib_per_image']:>8.1f} MiB")


if __name__ == "__main__":
    main()
