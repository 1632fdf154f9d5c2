"""A vision-language model at the edge, end to end: Qwen2.5-VL-3B on an edge L4 site serves
image chat requests through its Service, refuses over-limit requests with vLLM's error, and
scales up on its queue under image load."""

from __future__ import annotations

import threading

import openai
import pytest

from llmops_load.generator import LoadConfig, run_load_sync
from llmops_load.images import ImageMix, image_part
from llmops.planner.models import lookup_model
from llmops.waiting import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "llmops.io", "v1alpha1", "llmdeployments"
NAME = "camera-vlm"
VISION = lookup_model("Qwen/Qwen2.5-VL-3B-Instruct").vision


def manifest(namespace: str) -> dict:
    return {
        "apiVersion": "llmops.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"source": "hf://Qwen/Qwen2.5-VL-3B-Instruct"},
            # Slowed down with 2 sequences per replica, so image requests queue quickly.
            "engine": {"image": "llmops/vllm-sim:latest", "maxModelLen": 8192, "maxNumSeqs": 2,
                       "multimodal": {"imagesPerPrompt": 3, "maxImagePixels": 1003520},
                       "env": [{"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "1"},
                               {"name": "LLMOPS_SIM_SPEED", "value": "0.1"}]},
            "resources": {"gpu": {"type": "NVIDIA-L4"}},
            "placement": {"profile": "edge"},
            "replicas": 1,
            "autoscaling": {
                "minReplicas": 1, "maxReplicas": 2,
                "metrics": [{"type": "waitingRequests", "target": 2}],
                "behavior": {"evaluationIntervalSeconds": 2, "scaleUpStabilizationSeconds": 0,
                             "scaleDownStabilizationSeconds": 30, "metricsMaxAgeSeconds": 10},
            },
        },
    }


def status(crs, namespace) -> dict:
    return crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME).get("status") or {}


def endpoint_ips(core, namespace) -> list[str]:
    endpoints = core.read_namespaced_endpoints(NAME, namespace)
    return [a.ip for s in endpoints.subsets or [] for a in s.addresses or []]


def test_vlm_on_an_edge_l4_serves_images_and_scales_on_its_queue(e2e_operator, crs, core, kubeconfig, namespace):
    crs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(namespace))
    wait_for(lambda: status(crs, namespace).get("readyReplicas") == 1, 120, "the VLM replica never became ready")
    assert status(crs, namespace)["tensorParallelSize"] == 1
    (pod,) = [p for p in core.list_namespaced_pod(namespace, label_selector=f"llmops.io/deployment={NAME}").items
              if not p.metadata.deletion_timestamp]
    labels = core.read_node(pod.spec.node_name).metadata.labels
    assert labels.get("llmops.io/edge") == "true" and labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    args = pod.spec.containers[0].args
    assert args[args.index("--limit-mm-per-prompt") + 1] == '{"image":3}'
    assert args[args.index("--mm-processor-kwargs") + 1] == '{"max_pixels":1003520}'

    # The Service's endpoint answers image requests in vLLM's shapes, and vLLM's error past the limit.
    (address,) = wait_for(lambda: endpoint_ips(core, namespace), 30, "the Service has no ready endpoint")
    with openai.OpenAI(base_url=f"http://{address}:8000/v1", api_key="unused", max_retries=0, timeout=60) as vlm:
        text = [{"type": "text", "text": "What does the camera see?"}]
        plain = vlm.chat.completions.create(model=NAME, messages=[{"role": "user", "content": text}], max_tokens=2)
        reply = vlm.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": [image_part(1280, 720), *text]}], max_tokens=2)
        assert reply.choices[0].message.content
        assert reply.usage.prompt_tokens - plain.usage.prompt_tokens == VISION.image_tokens(1280, 720, 1003520)
        with pytest.raises(openai.BadRequestError) as refused:
            vlm.chat.completions.create(model=NAME, max_tokens=2, messages=[
                {"role": "user", "content": [*(image_part(64, 64, i) for i in range(4)), *text]}])
        assert refused.value.body["message"].startswith("At most 3 image(s) may be provided in one prompt.")

    # Image load through the Service (client-side balancing over its endpoints) scales it up once.
    config = LoadConfig(service=f"{namespace}/{NAME}", kubeconfig=str(kubeconfig), concurrency=8, duration=40,
                        prompt_tokens=32, max_tokens=24, timeout=90, progress_interval=0, endpoint_refresh=2,
                        images=ImageMix(per_request=2, sizes=((640, 480, 1.0), (1280, 720, 1.0)), distinct=4))
    reports: list = []
    load = threading.Thread(target=lambda: reports.append(run_load_sync(config)), daemon=True)
    load.start()
    wait_for(lambda: crs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)["spec"]["replicas"] > 1,
             60, "the VLM did not scale up on its queue under image load")
    wait_for(lambda: status(crs, namespace).get("readyReplicas") == 2, 90, "the second VLM replica never got ready")
    decision = status(crs, namespace)["autoscaling"]["lastDecision"]
    assert decision["metrics"][0]["name"] == "waitingRequests"
    load.join(timeout=config.duration + 120)
    (report,) = reports
    assert report.requests_ok > 0 and not report.errors, report.errors
    # every request carried two images: far more prompt tokens than its 32 of text
    assert report.prompt_tokens / report.requests_ok > 2 * VISION.image_tokens(640, 480)
