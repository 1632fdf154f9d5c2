"""The rules vLLM puts on a tensor x pipeline layout, and how a layout lands on nodes.

Tensor parallel (vLLM ModelConfig.verify_with_parallel_config and QKVParallelLinear in
vllm/model_executor/layers/linear.py):
- TP must divide the attention heads ("Total number of attention heads (N) must be divisible
  by tensor parallel size (T)").
- KV heads: when TP < KV heads, TP must divide them (each GPU holds KV/TP heads); when
  TP >= KV heads, vLLM replicates each KV head on TP/KV GPUs, so TP must be a multiple of the
  KV heads (`divide(tp_size, total_num_kv_heads)` asserts it). Llama-3-8B (8 KV heads) thus
  runs at TP 16 but not at TP 12.
Pipeline parallel splits the layers into contiguous stages, so PP cannot exceed the layers.

On nodes: TP stays within a node (tensor-parallel all-reduces every layer and needs NVLink /
PCIe, not the network); pipeline stages may go to other nodes when the replica may span
nodes. A replica spanning N nodes puts PP/N stages on each, so N divides PP and every pod
requests TP x PP / N GPUs (a LeaderWorkerSet group of N equal pods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmops.planner.models import ModelInfo

DEFAULT_NODE_GPUS = 8  # GPUs per node when the cluster's nodes are not known
MAX_TENSOR_PARALLEL = 64


@dataclass(frozen=True)
class LayoutIssue:
    path: str
    message: str


def tp_problem(model: ModelInfo, tp: int) -> Optional[str]:
    if model.attention_heads % tp:
        return f"does not divide the model's {model.attention_heads} attention heads"
    if model.mla_cache_width:
        return None  # MLA has no separate KV heads to split
    kv = model.kv_heads
    if tp < kv and kv % tp:
        return f"does not divide the model's {kv} KV heads"
    if tp > kv and tp % kv:
        return (f"exceeds the model's {kv} KV heads without being a multiple of them "
                f"(vLLM replicates KV heads only when tensorParallelSize is a multiple of the KV heads)")
    return None


def valid_tensor_parallel_sizes(model: ModelInfo, limit: int) -> list[int]:
    return [tp for tp in range(1, limit + 1) if tp_problem(model, tp) is None]


def power_of_two_sizes(model: ModelInfo, limit: int) -> list[int]:
    sizes, tp = [], 1
    while tp <= limit:
        if tp_problem(model, tp) is None:
            sizes.append(tp)
        tp *= 2
    return sizes


def model_layout_issues(model: ModelInfo, tp: int, pp: int, node_gpus: int) -> list[LayoutIssue]:
    issues: list[LayoutIssue] = []
    why = tp_problem(model, tp)
    if why:
        valid = ", ".join(str(s) for s in valid_tensor_parallel_sizes(model, max(node_gpus, 8)))
        issues.append(LayoutIssue(
            "spec.sharding.tensorParallelSize",
            f"tensorParallelSize {tp} {why} ({model.name}); vLLM refuses to start. "
            f"Fix: use one of {valid}",
        ))
    if pp > model.layers:
        issues.append(LayoutIssue(
            "spec.sharding.pipelineParallelSize",
            f"pipelineParallelSize {pp} is more than the model's {model.layers} layers ({model.name}); "
            f"every pipeline stage needs at least one layer. Fix: set pipelineParallelSize to at most {model.layers}",
        ))
    return issues


def nodes_needed(tp: int, pp: int, node_gpus: int) -> Optional[int]:
    """Fewest nodes one replica spans (TP within a node, the same number of whole stages on
    each node); None if TP alone needs more GPUs than a node has."""
    if tp > node_gpus:
        return None
    for nodes in range(1, pp + 1):
        if pp % nodes == 0 and tp * pp // nodes <= node_gpus:
            return nodes
    return None


def node_layout_issues(tp: int, pp: int, node_gpus: int, allow_multi_node: bool,
                       node_gpus_known: bool, gpu_label: str) -> list[LayoutIssue]:
    where = (f"the {gpu_label} nodes have {node_gpus} GPUs" if node_gpus_known
             else f"assuming at most {node_gpus} GPUs per node (the cluster's nodes are not known)")
    if tp > node_gpus:
        return [LayoutIssue(
            "spec.sharding.tensorParallelSize",
            f"tensorParallelSize {tp} needs {tp} GPUs in one node but {where}; tensor parallel cannot span nodes. "
            f"Fix: lower tensorParallelSize to at most {node_gpus} and raise pipelineParallelSize "
            f"(with sharding.allowMultiNode: true to spread stages over nodes)",
        )]
    total = tp * pp
    if total > node_gpus and not allow_multi_node:
        return [LayoutIssue(
            "spec.sharding",
            f"tensorParallelSize {tp} x pipelineParallelSize {pp} = {total} GPUs per replica, but {where}. "
            f"Fix: set sharding.allowMultiNode: true to place pipeline stages on several nodes, "
            f"or lower the sizes (quantize the model: spec.quantization.method)",
        )]
    return []
