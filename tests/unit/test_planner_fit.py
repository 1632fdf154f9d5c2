"""check_fit refuses what vLLM would refuse, naming the field and the fix; auto sharding picks
the smallest layout that serves."""

from __future__ import annotations

import pytest

from llmops.api.v1alpha1 import LLMDeployment
from llmops.planner import AUTO_MIN_KV_SHARE, NodeGPUs, check_fit, plan_deployment, plan_sharding
from llmops.planner.gpus import lookup_gpu
from llmops.planner.memory import engine_settings, estimate_memory
from llmops.planner.models import lookup_model

LLAMA3_8B = "hf://meta-llama/Meta-Llama-3-8B-Instruct"
LLAMA31_8B = "hf://meta-llama/Llama-3.1-8B-Instruct"
LLAMA3_70B = "hf://meta-llama/Meta-Llama-3-70B-Instruct"
LLAMA33_70B = "hf://meta-llama/Llama-3.3-70B-Instruct"


def deployment(source=LLAMA3_8B, gpu="NVIDIA-L4", tp=None, pp=None, multi_node=False, quantization=None,
               shape=None, **engine) -> LLMDeployment:
    spec: dict = {"model": {"source": source}, "engine": engine, "sharding": {"allowMultiNode": multi_node}}
    if gpu:
        spec["resources"] = {"gpu": {"type": gpu}}
    if tp:
        spec["sharding"]["tensorParallelSize"] = tp
    if pp:
        spec["sharding"]["pipelineParallelSize"] = pp
    if quantization:
        spec["quantization"] = {"method": quantization}
    if shape:
        spec["model"]["shape"] = shape
    return LLMDeployment.model_validate(
        {"apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "m"}, "spec": spec})


def only_problem(d, inventory=None):
    problems = check_fit(d, inventory)
    assert len(problems) == 1, problems
    return problems[0]


# --- rejections: each names the field and a fix ------------------------------------------

def test_tensor_parallel_must_divide_attention_heads():
    p = only_problem(deployment(tp=3))
    assert p.path == "spec.sharding.tensorParallelSize"
    assert "32 attention heads" in p.message and "Fix: use one of 1, 2, 4, 8" in p.message


def test_tensor_parallel_below_kv_heads_must_divide_them():
    # microsoft/Phi-3-medium: 40 attention heads (4 divides them) but 10 KV heads (4 does not).
    p = only_problem(deployment("hf://microsoft/Phi-3-medium-4k-instruct", gpu="NVIDIA-A100-SXM4-80GB", tp=4))
    assert p.path == "spec.sharding.tensorParallelSize"
    assert "10 KV heads" in p.message and "Fix: use one of 1, 2, 5" in p.message


def test_tensor_parallel_above_kv_heads_must_be_a_multiple_for_replication():
    # meta-llama/Llama-3.2-3B: 24 heads, 8 KV heads. TP 12 divides 24 but is no multiple of 8.
    sixteen = [NodeGPUs("NVIDIA-L4", 16)]
    p = only_problem(deployment("hf://meta-llama/Llama-3.2-3B-Instruct", tp=12), sixteen)
    assert p.path == "spec.sharding.tensorParallelSize"
    assert "replicates KV heads only when tensorParallelSize is a multiple" in p.message
    # Llama-3-8B at TP 16 on a 16-GPU node: each KV head lives on two GPUs, which vLLM does.
    assert check_fit(deployment(tp=16), sixteen) == []


def test_pipeline_parallel_cannot_exceed_layers():
    # meta-llama/Llama-3.2-1B has 16 layers.
    p = only_problem(deployment("hf://meta-llama/Llama-3.2-1B-Instruct", pp=20, multi_node=True))
    assert p.path == "spec.sharding.pipelineParallelSize"
    assert "16 layers" in p.message and "at most 16" in p.message


def test_more_gpus_than_a_node_needs_multi_node():
    p = only_problem(deployment(LLAMA3_70B, tp=4, pp=4))
    assert p.path == "spec.sharding"
    assert "16 GPUs" in p.message and "at most 8 GPUs per node" in p.message
    assert "allowMultiNode: true" in p.message


def test_node_size_comes_from_the_inventory():
    nodes = [NodeGPUs("NVIDIA-L4", 4), NodeGPUs("NVIDIA-L4", 4)]
    p = only_problem(deployment(tp=2, pp=4), nodes)
    assert p.path == "spec.sharding" and "NVIDIA-L4 nodes have 4 GPUs" in p.message
    plan = plan_sharding(deployment(tp=2, pp=4, multi_node=True), nodes)
    assert (plan.nodes_per_replica, plan.gpus_per_node) == (2, 4)


def test_tensor_parallel_never_spans_nodes():
    p = only_problem(deployment(LLAMA3_70B, tp=8, multi_node=True), [NodeGPUs("NVIDIA-L4", 4)])
    assert p.path == "spec.sharding.tensorParallelSize"
    assert "cannot span nodes" in p.message and "pipelineParallelSize" in p.message


def test_fp8_on_t4_is_refused():
    p = only_problem(deployment(gpu="Tesla-T4", quantization="fp8", tp=1, maxModelLen=4096))
    assert p.path == "spec.quantization.method"
    assert "8.0" in p.message and "Tesla-T4 has 7.5" in p.message
    assert "awq or gptq" in p.message and "spec.resources.gpu.type" in p.message


def test_fp8_checkpoint_named_in_the_source_is_refused_on_t4():
    p = only_problem(deployment("hf://neuralmagic/Meta-Llama-3-8B-Instruct-FP8", gpu="Tesla-T4", tp=1,
                                maxModelLen=4096))
    assert p.path == "spec.model.source"
    assert "fp8-quantized checkpoint" in p.message


def test_fp8_runs_on_ampere_through_marlin():
    assert check_fit(deployment(gpu="NVIDIA-A10G", quantization="fp8", tp=1)) == []


@pytest.mark.parametrize("method, gpu, refused", [
    ("awq", "Tesla-T4", False),  # AWQ needs 7.5
    ("awq", "Tesla-V100-SXM2-32GB", True),
    ("gptq", "Tesla-V100-SXM2-32GB", False),  # GPTQ needs 6.0
    ("gptq_marlin", "Tesla-T4", True),  # Marlin kernels need 8.0
    ("awq_marlin", "NVIDIA-A10G", False),
    ("bitsandbytes", "Tesla-V100-SXM2-32GB", False),  # 7.0
])
def test_quantization_minimum_capability(method, gpu, refused):
    # On vLLM 0.11, which still has every method listed (0.33 dropped bitsandbytes).
    problems = check_fit(deployment(gpu=gpu, quantization=method, tp=1, maxModelLen=4096,
                                    image="vllm/vllm-openai:v0.11.0"))
    assert [p.path for p in problems] == (["spec.quantization.method"] if refused else [])


def test_bfloat16_needs_ampere():
    p = only_problem(deployment(gpu="Tesla-T4", quantization="awq", tp=1, dtype="bfloat16", maxModelLen=4096))
    assert p.path == "spec.engine.dtype" and "float16" in p.message


def test_weights_that_do_not_fit_name_the_layout_that_would():
    p = only_problem(deployment(LLAMA3_70B, tp=1))
    assert p.path == "spec.sharding.tensorParallelSize"
    assert "131.5 GiB of weights" in p.message
    assert "Fix: shard wider: tensorParallelSize 8" in p.message


def test_kv_cache_too_small_for_one_sequence_names_max_model_len():
    p = only_problem(deployment(LLAMA31_8B, tp=1))
    assert p.path == "spec.engine.maxModelLen"
    assert "one 131072-token sequence" in p.message and "16.0 GiB of KV cache" in p.message
    assert "shard wider: tensorParallelSize 2" in p.message
    suggested = int(p.message.split("spec.engine.maxModelLen to at most ")[1].split(";")[0])
    # Taking the advice works.
    assert check_fit(deployment(LLAMA31_8B, tp=1, maxModelLen=suggested)) == []


def test_fp8_kv_cache_and_quantization_are_suggested_when_they_help():
    # Llama-3.1-8B at full context on one L40S at 0.6 utilisation: weights fit, one 16 GiB
    # sequence does not; an fp8 KV cache, a 4-bit build or 0.95 utilisation each would.
    p = only_problem(deployment(LLAMA31_8B, gpu="NVIDIA-L40S", tp=1, maxModelLen=131072, gpuMemoryUtilization=0.6))
    assert p.path == "spec.engine.maxModelLen"
    assert "kvCacheDtype: fp8" in p.message
    assert "spec.quantization.method: awq" in p.message
    assert "gpuMemoryUtilization to 0.95" in p.message
    # On an A10G neither fp8 KV (8 GiB for the sequence, 3.3 GiB free) nor 0.95 is enough: not offered.
    p = only_problem(deployment(LLAMA31_8B, gpu="NVIDIA-A10G", tp=1, maxModelLen=65536))
    assert "kvCacheDtype" not in p.message and "gpuMemoryUtilization" not in p.message
    assert "tensorParallelSize 2" in p.message


def test_max_model_len_beyond_the_context_is_refused():
    p = only_problem(deployment(tp=1, maxModelLen=16384))
    assert p.path == "spec.engine.maxModelLen"
    assert "context length 8192" in p.message and "at most 8192" in p.message


def test_unknown_model_is_not_an_error_with_explicit_sizes():
    report = plan_deployment(deployment("hf://acme/in-house-13b", tp=2))
    assert report.ok
    assert any("spec.model.shape" in w for w in report.warnings)
    assert (report.plan.tp, report.plan.memory) == (2, None)


def test_unknown_model_with_auto_sharding_names_the_shape():
    p = only_problem(deployment("hf://acme/in-house-13b"))
    assert p.path == "spec.model.shape"
    assert "parametersBillions" in p.message and "tensorParallelSize" in p.message


def test_shape_makes_an_unknown_model_plannable():
    shape = {"parametersBillions": 13.0, "layers": 40, "attentionHeads": 40, "kvHeads": 8, "hiddenSize": 5120,
             "maxContextLength": 4096}
    plan = plan_sharding(deployment("hf://acme/in-house-13b", shape=shape))
    assert plan is not None and plan.tp == 2  # 24.2 GiB of bf16 weights: two L4s


def test_unknown_gpu_blocks_auto_but_not_explicit_sizes():
    p = only_problem(deployment(gpu="NVIDIA-B9000"))
    assert p.path == "spec.resources.gpu.type"
    report = plan_deployment(deployment(gpu="NVIDIA-B9000", tp=1))
    assert report.ok and any("does not know GPU type" in w for w in report.warnings)


def test_without_gpu_type_or_nodes_nothing_is_refused_and_nothing_is_planned():
    report = plan_deployment(deployment(gpu=None))
    assert report.ok and report.plan is None
    assert any("no GPU type" in w for w in report.warnings)


def test_problems_are_reported_together():
    problems = check_fit(deployment(gpu="Tesla-T4", tp=3, quantization="fp8", maxModelLen=20000))
    assert {p.path for p in problems} == {"spec.sharding.tensorParallelSize", "spec.quantization.method",
                                          "spec.engine.maxModelLen"}


# --- auto sharding ------------------------------------------------------------------------

def test_auto_llama3_8b_fits_one_l4():
    plan = plan_sharding(deployment())
    assert (plan.tp, plan.pp, plan.nodes_per_replica, plan.gpus_per_node, plan.auto) == (1, 1, 1, 1, True)
    assert plan.gpu_product == "NVIDIA-L4" and plan.memory.fits


def test_auto_llama31_8b_on_l4_needs_two_gpus_at_full_context_one_when_shorter():
    assert plan_sharding(deployment(LLAMA31_8B)).tp == 2
    assert plan_sharding(deployment(LLAMA31_8B, maxModelLen=16384)).tp == 1


def test_auto_llama3_70b_on_a100_80gb_takes_four_gpus_for_kv_headroom():
    # 141 GB of bf16 weights: two A100-80GB hold them (vLLM would start) but keep only a few
    # GiB for the KV cache; auto wants AUTO_MIN_KV_SHARE of the budget and picks four.
    d = deployment(LLAMA3_70B, gpu="NVIDIA-A100-SXM4-80GB")
    model, gpu = lookup_model(LLAMA3_70B), lookup_gpu("NVIDIA-A100-SXM4-80GB")
    two = estimate_memory(model, gpu, engine_settings(d.spec, model, gpu), 2, 1)
    assert two.fits and two.kv_share < AUTO_MIN_KV_SHARE
    plan = plan_sharding(d)
    assert (plan.tp, plan.pp) == (4, 1) and plan.memory.kv_share >= AUTO_MIN_KV_SHARE


def test_auto_70b_on_l4_needs_multi_node():
    p = only_problem(deployment(LLAMA33_70B))
    assert "span nodes: tensorParallelSize 8 x pipelineParallelSize 2 over 2 nodes" in p.message
    plan = plan_sharding(deployment(LLAMA33_70B, multi_node=True))
    assert (plan.tp, plan.pp, plan.nodes_per_replica, plan.gpus_per_node) == (8, 2, 2, 8)


def test_auto_uses_the_nodes_that_exist_at_the_edge():
    # Edge boxes with two L4 each: a 4-bit 70B spreads TP 2 within a box, one stage per box.
    edge = [NodeGPUs("NVIDIA-L4", 2)] * 4
    plan = plan_sharding(deployment("hf://hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
                                    multi_node=True, maxModelLen=8192), edge)
    assert plan.tp == 2 and plan.pp == plan.nodes_per_replica >= 2 and plan.gpus_per_node == 2
    # ... and never more boxes than there are.
    two_boxes = [NodeGPUs("NVIDIA-L4", 2)] * 2
    report = plan_deployment(deployment(LLAMA33_70B, multi_node=True), two_boxes)
    assert not report.ok


def test_auto_powers_of_two_respect_heads():
    # Qwen2.5-7B: 28 attention heads, 4 KV heads -> 8 is not allowed.
    plan = plan_sharding(deployment("hf://Qwen/Qwen2.5-7B-Instruct", maxModelLen=32768))
    assert plan.tp in (1, 2, 4)


def test_auto_without_gpu_type_picks_the_smallest_gpu_that_serves():
    nodes = [NodeGPUs("NVIDIA-H100-80GB-HBM3", 8), NodeGPUs("NVIDIA-L4", 1)]
    small = plan_sharding(deployment("hf://Qwen/Qwen2.5-0.5B-Instruct", gpu=None), nodes)
    assert (small.gpu_product, small.tp) == ("NVIDIA-L4", 1)
    big = plan_sharding(deployment(LLAMA33_70B, gpu=None), nodes)
    assert big.gpu_product == "NVIDIA-H100-80GB-HBM3"


def test_auto_falls_back_to_a_tight_fit_with_a_warning():
    # One single-T4 node at 0.55 utilisation: a 4-bit Llama-3-8B starts with a 2048-token
    # context, but the KV cache gets well under AUTO_MIN_KV_SHARE and no wider layout exists.
    one_t4 = [NodeGPUs("Tesla-T4", 1)]
    report = plan_deployment(deployment(LLAMA3_8B, gpu="Tesla-T4", quantization="awq", maxModelLen=2048,
                                        gpuMemoryUtilization=0.55), one_t4)
    assert report.ok and report.plan.tp == 1 and report.plan.memory.fits
    assert report.plan.memory.kv_share < AUTO_MIN_KV_SHARE
    assert any("leaves only" in w and "KV cache" in w for w in report.warnings)


def test_explicit_plan_carries_the_breakdown_for_status():
    plan = plan_sharding(deployment(LLAMA3_70B, gpu="NVIDIA-H100-80GB-HBM3", tp=4))
    assert (plan.tp, plan.pp, plan.auto, plan.gpus_per_replica) == (4, 1, False, 4)
    data = plan.to_dict()
    assert data["tensorParallelSize"] == 4 and data["memory"]["fits"] is True


def test_plan_sharding_is_none_when_it_cannot_run():
    assert plan_sharding(deployment(tp=3)) is None


def test_inventory_accepts_plain_pairs():
    plan = plan_sharding(deployment(tp=2, pp=2, multi_node=True), [("NVIDIA-L4", 2), ("NVIDIA-L4", 2)])
    assert (plan.nodes_per_replica, plan.gpus_per_node) == (2, 2)
