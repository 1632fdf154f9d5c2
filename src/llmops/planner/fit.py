"""Will this LLMDeployment run, and how should one replica be sharded?

`plan_deployment` is the one entry point; `check_fit` (the admission check that
llmops.validation.validate_manifest runs after the schema) and `plan_sharding` (for the renderer and the operator) are
thin views of it. Pure: the deployment and, optionally, the cluster's GPU nodes go in; a
report comes out.

Auto sharding (spec.sharding sizes both empty) tries, on the chosen GPU type, the smallest
tensor-parallel size first (powers of two that satisfy vLLM's head rules, up to the GPUs of
one node); if the replica may span nodes (sharding.allowMultiNode) it then tries 2, 3, ...
nodes with one pipeline stage per node and TP within each. It takes the first layout whose KV
cache holds one full-length sequence AND gets at least AUTO_MIN_KV_SHARE of the memory
budget (so the replica can batch; Llama-3-70B on 2 x A100-80GB would start but keep only
~6% for KV cache, so auto picks 4 GPUs). If no layout reaches that share it takes the first
that merely fits and says so in a warning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence, Union

from llmops.api.v1alpha1 import LLMDeployment, LLMDeploymentSpec
from llmops.errors import Problem
from llmops.planner.gpus import GPUInfo, lookup_gpu
from llmops.planner.layout import (
    DEFAULT_NODE_GPUS,
    LayoutIssue,
    model_layout_issues,
    node_layout_issues,
    nodes_needed,
    power_of_two_sizes,
)
from llmops.planner.memory import EngineSettings, MemoryBreakdown, engine_settings, estimate_memory
from llmops.planner.models import ModelInfo, resolve_model
from llmops.planner.multimodal import multimodal_problems
from llmops.planner.quantization import FOUR_BIT_GROUPED, MIN_CAPABILITY, removed_method_message, weight_format

AUTO_MIN_KV_SHARE = 0.15
MAX_AUTO_NODES = 16  # nodes auto sharding may spread one replica over when nodes are unknown
# GPUs to suggest when a GPU is too old for a quantization method, newest capability last.
_SUGGESTED_GPUS = {60: "Tesla-T4", 70: "Tesla-T4", 75: "Tesla-T4", 80: "NVIDIA-A10G or NVIDIA-L4",
                   89: "NVIDIA-L4 or NVIDIA-H100-80GB-HBM3"}


@dataclass(frozen=True)
class NodeGPUs:
    """One node of the cluster: its nvidia.com/gpu.product label and GPU count."""

    gpu_product: str
    gpu_count: int


InventoryInput = Optional[Sequence[Union[NodeGPUs, tuple[str, int]]]]


@dataclass(frozen=True)
class ShardingPlan:
    """How one replica is laid out; what the renderer and the operator's status need."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    nodes_per_replica: int
    gpus_per_node: int  # GPUs each pod of the replica requests
    gpu_product: Optional[str]  # the GPU type planned for (None: not known)
    auto: bool  # chosen by the planner (spec sizes were empty)
    memory: Optional[MemoryBreakdown] = None

    @property
    def tp(self) -> int:
        return self.tensor_parallel_size

    @property
    def pp(self) -> int:
        return self.pipeline_parallel_size

    @property
    def gpus_per_replica(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def to_dict(self) -> dict:
        return {
            "tensorParallelSize": self.tensor_parallel_size,
            "pipelineParallelSize": self.pipeline_parallel_size,
            "nodesPerReplica": self.nodes_per_replica,
            "gpusPerNode": self.gpus_per_node,
            "gpuProduct": self.gpu_product,
            "auto": self.auto,
            "memory": self.memory.to_dict() if self.memory else None,
        }


@dataclass(frozen=True)
class FitReport:
    model: Optional[ModelInfo]
    gpu: Optional[GPUInfo]
    plan: Optional[ShardingPlan]
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        model = self.model
        return {
            "model": None if model is None else {
                "name": model.name,
                "parametersBillions": model.parameters_billions,
                "layers": model.layers,
                "attentionHeads": model.attention_heads,
                "kvHeads": model.kv_heads,
                "hiddenSize": model.hidden_size,
                "headDim": model.head_dim,
                "contextLength": model.context_length,
                "source": model.source,
            },
            "gpu": None if self.gpu is None else {
                "product": self.gpu.product,
                "memoryGiB": round(self.gpu.memory_gib, 2),
                "computeCapability": self.gpu.capability_text,
            },
            "plan": self.plan.to_dict() if self.plan else None,
            "problems": [{"path": p.path, "message": p.message} for p in self.problems],
            "warnings": list(self.warnings),
            "ok": self.ok,
        }


@dataclass(frozen=True)
class _Target:
    """A GPU type to plan for and what is known about its nodes."""

    label: str
    gpu: Optional[GPUInfo]
    node_gpus: int
    node_gpus_known: bool
    nodes: Optional[tuple[int, ...]] = None  # GPU counts of the nodes of this type, if known


@dataclass
class _Result:
    plan: Optional[ShardingPlan] = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _inventory(inventory: InventoryInput) -> Optional[list[NodeGPUs]]:
    if inventory is None:
        return None
    return [n if isinstance(n, NodeGPUs) else NodeGPUs(n[0], int(n[1])) for n in inventory]


def _same_gpu(a: str, b: str) -> bool:
    ga, gb = lookup_gpu(a), lookup_gpu(b)
    if ga is not None and gb is not None:
        return ga.product == gb.product and ga.memory_mib == gb.memory_mib
    return a.strip().lower() == b.strip().lower()


def _target(label: str, nodes: Optional[list[NodeGPUs]]) -> _Target:
    gpu = lookup_gpu(label)
    if nodes is None:
        return _Target(label, gpu, DEFAULT_NODE_GPUS, False)
    counts = tuple(n.gpu_count for n in nodes if n.gpu_count > 0 and _same_gpu(n.gpu_product, label))
    if not counts:
        return _Target(label, gpu, DEFAULT_NODE_GPUS, False)
    return _Target(label, gpu, max(counts), True, counts)


def _targets(gpu_type: Optional[str], nodes: Optional[list[NodeGPUs]]) -> list[_Target]:
    if gpu_type:
        return [_target(gpu_type, nodes)]
    products: list[str] = []
    for node in nodes or []:
        if node.gpu_count > 0 and not any(_same_gpu(node.gpu_product, p) for p in products):
            products.append(node.gpu_product)
    return [_target(p, nodes) for p in products]


def _problem(path: str, message: str) -> Problem:
    return Problem(path, message)


def _capability_problems(spec: LLMDeploymentSpec, gpu: GPUInfo) -> list[Problem]:
    problems: list[Problem] = []
    fmt = weight_format(spec)
    need = fmt.min_capability
    if need is not None and gpu.capability < need:
        runnable = [m for m in ("awq", "gptq", "bitsandbytes", "gguf") if MIN_CAPABILITY[m] <= gpu.capability]
        what = (f"quantization {fmt.method}" if fmt.chosen_by == "spec.quantization.method"
                else f"the {fmt.method}-quantized checkpoint {spec.model.source}")
        instead = (f"a build of the model quantized with {' or '.join(runnable)} (spec.quantization.method)"
                   if runnable else "the unquantized model")
        problems.append(_problem(
            fmt.chosen_by,
            f"{what} needs GPU compute capability {need / 10:.1f} or newer in vLLM, but {gpu.product} has "
            f"{gpu.capability_text}. Fix: serve {instead}, or pick a GPU with compute capability >= "
            f"{need / 10:.1f} in spec.resources.gpu.type (e.g. {_SUGGESTED_GPUS.get(need, 'NVIDIA-L4')})",
        ))
    if spec.engine.dtype == "bfloat16" and gpu.capability < 80:
        problems.append(_problem(
            "spec.engine.dtype",
            f"bfloat16 needs GPU compute capability 8.0 or newer, but {gpu.product} has {gpu.capability_text}. "
            f"Fix: set spec.engine.dtype: float16 (or leave it auto)",
        ))
    return problems


def _problems(issues: Iterable[LayoutIssue]) -> list[Problem]:
    return [_problem(i.path, i.message) for i in issues]


def _layouts(model: ModelInfo, target: _Target, allow_multi_node: bool) -> Iterator[tuple[int, int, int]]:
    """(tp, pp, nodes) in the order auto sharding prefers them: fewest nodes, then fewest GPUs."""
    sizes = power_of_two_sizes(model, target.node_gpus)
    for tp in sizes:
        yield tp, 1, 1
    if not allow_multi_node:
        return
    for nodes in range(2, min(MAX_AUTO_NODES, model.layers) + 1):
        for tp in sizes:
            if target.nodes is not None and sum(1 for c in target.nodes if c >= tp) < nodes:
                continue
            yield tp, nodes, nodes


def _meets_target(memory: MemoryBreakdown) -> bool:
    return memory.fits and memory.kv_share >= AUTO_MIN_KV_SHARE


def _search(model: ModelInfo, target: _Target, settings: EngineSettings, allow_multi_node: bool,
            ) -> tuple[Optional[tuple[int, int, int, MemoryBreakdown]], bool]:
    """Best layout for auto sharding and whether it reaches the KV-cache target."""
    assert target.gpu is not None
    first_fit = None
    for tp, pp, nodes in _layouts(model, target, allow_multi_node):
        memory = estimate_memory(model, target.gpu, settings, tp, pp)
        if _meets_target(memory):
            return (tp, pp, nodes, memory), True
        if memory.fits and first_fit is None:
            first_fit = (tp, pp, nodes, memory)
    return first_fit, False


def _describe_layout(tp: int, pp: int, nodes: int) -> str:
    text = f"tensorParallelSize {tp}"
    if pp > 1:
        text += f" x pipelineParallelSize {pp}"
    if nodes > 1:
        text += f" over {nodes} nodes (sharding.allowMultiNode: true)"
    return text


def _gib(value: float) -> str:
    return f"{value:.2f} GiB" if abs(value) < 10 else f"{value:.1f} GiB"


def _memory_fixes(model: ModelInfo, spec: LLMDeploymentSpec, target: _Target, settings: EngineSettings,
                  memory: MemoryBreakdown) -> list[str]:
    """Concrete changes that would make the model fit, best first."""
    gpu = target.gpu
    assert gpu is not None
    fixes: list[str] = []
    layout, _ = _search(model, target, settings, allow_multi_node=False)
    if layout:
        fixes.append(f"shard wider: {_describe_layout(*layout[:3])}")
    elif not spec.sharding.allow_multi_node:
        multi, _ = _search(model, target, settings, allow_multi_node=True)
        if multi:
            fixes.append(f"span nodes: {_describe_layout(*multi[:3])}")
    if memory.weights_fit and memory.max_model_len and 0 < memory.longest_model_len < memory.max_model_len:
        fixes.append(f"set spec.engine.maxModelLen to at most {memory.longest_model_len}")
    if memory.weights_fit and settings.kv_bytes > 1:
        fp8_kv = dataclasses.replace(settings, kv_bytes=1.0)
        if estimate_memory(model, gpu, fp8_kv, memory.tensor_parallel_size, memory.pipeline_parallel_size).fits:
            fixes.append("set spec.engine.kvCacheDtype: fp8 (halves the KV cache)")
    if settings.weights.linear_bytes > 1 and not settings.weights.method:
        method = "awq" if gpu.capability >= MIN_CAPABILITY["awq"] else "gptq"
        four_bit = dataclasses.replace(settings, weights=dataclasses.replace(
            settings.weights, linear_bytes=FOUR_BIT_GROUPED, method=method))
        if estimate_memory(model, gpu, four_bit, memory.tensor_parallel_size, memory.pipeline_parallel_size).fits:
            fixes.append(f"serve a 4-bit {method.upper()} build of the model (spec.quantization.method: {method})")
    if settings.gpu_memory_utilization < 0.95:
        fuller = dataclasses.replace(settings, gpu_memory_utilization=0.95)
        if estimate_memory(model, gpu, fuller, memory.tensor_parallel_size, memory.pipeline_parallel_size).fits:
            fixes.append("raise spec.engine.gpuMemoryUtilization to 0.95 (now "
                         f"{settings.gpu_memory_utilization:g}) if nothing else runs on the GPU")
    fixes.append("choose a GPU with more memory in spec.resources.gpu.type")
    return fixes


def _memory_problem(model: ModelInfo, spec: LLMDeploymentSpec, target: _Target, settings: EngineSettings,
                    memory: MemoryBreakdown) -> Problem:
    where = (f"{memory.tensor_parallel_size} x {target.label}" if memory.pipeline_parallel_size == 1
             else f"{memory.tensor_parallel_size} x {memory.pipeline_parallel_size} {target.label}")
    budget = (f"{memory.gpu_memory_utilization:g} x {_gib(memory.gpu_memory_gib)} = {_gib(memory.budget_gib)} "
              f"per GPU")
    fixes = "; or ".join(_memory_fixes(model, spec, target, settings, memory))
    if not memory.weights_fit:
        path = "spec.sharding" if spec.sharding.is_auto else "spec.sharding.tensorParallelSize"
        return _problem(path, (
            f"{model.name} ({memory.weight_format}) does not fit on {where}: {_gib(memory.weights_gib)} of weights "
            f"plus {_gib(memory.runtime_gib + memory.activation_gib)} of runtime and activations per GPU exceed "
            f"the budget of {budget}. Fix: {fixes}"))
    path = "spec.engine.maxModelLen"
    return _problem(path, (
        f"{model.name} on {where}: one {memory.max_model_len}-token sequence ({settings.max_model_len_from}) "
        f"needs {_gib(memory.min_kv_cache_gib or 0)} of KV cache per GPU, but only {_gib(memory.kv_cache_gib)} "
        f"is left of the {budget} after {_gib(memory.weights_gib)} of weights and "
        f"{_gib(memory.runtime_gib + memory.activation_gib)} of runtime and activations; vLLM refuses to start. "
        f"Fix: {fixes}"))


def _evaluate(d: LLMDeployment, model: Optional[ModelInfo], target: Optional[_Target]) -> _Result:
    spec = d.spec
    sharding = spec.sharding
    result = _Result()
    gpu = target.gpu if target else None
    node_gpus = target.node_gpus if target else DEFAULT_NODE_GPUS
    if gpu is not None:
        result.problems += _capability_problems(spec, gpu)

    if sharding.is_auto:
        if model is None:
            return result  # reported once by plan_deployment
        if target is None:
            result.warnings.append(
                "sharding is auto but no GPU type is known (spec.resources.gpu.type is empty and no GPU nodes "
                "were given): the planner cannot choose sizes yet")
            return result
        if gpu is None:
            result.problems.append(_problem("spec.resources.gpu.type", (
                f"the planner does not know GPU type {target.label!r}, so it cannot choose sharding sizes. "
                "Fix: use a known nvidia.com/gpu.product value (see `llmops plan --help`) "
                "or set spec.sharding.tensorParallelSize")))
            return result
        if result.problems:
            return result
        settings = engine_settings(spec, model, gpu)
        if not settings.max_model_len:
            result.problems.append(_problem("spec.engine.maxModelLen", (
                f"{model.name} has no known context length, so the planner cannot size the KV cache. "
                "Fix: set spec.engine.maxModelLen or spec.model.shape.maxContextLength")))
            return result
        layout, on_target = _search(model, target, settings, sharding.allow_multi_node)
        if layout is None:
            widest = power_of_two_sizes(model, target.node_gpus)[-1]
            memory = estimate_memory(model, gpu, settings, widest, 1)
            result.problems.append(_memory_problem(model, spec, target, settings, memory))
            return result
        tp, pp, nodes, memory = layout
        if not on_target:
            result.warnings.append(
                f"the chosen layout leaves only {memory.kv_share:.0%} of the GPU budget to the KV cache "
                f"({memory.full_length_sequences:.1f} full-length sequences); a lower spec.engine.maxModelLen "
                "or a larger GPU would let the replica batch more requests")
        result.plan = ShardingPlan(tp, pp, nodes, tp * pp // nodes, gpu.product, True, memory)
        return result

    tp = sharding.tensor_parallel_size or 1
    pp = sharding.pipeline_parallel_size or 1
    if model is not None:
        result.problems += _problems(model_layout_issues(model, tp, pp, node_gpus))
    label = target.label if target else "GPU"
    result.problems += _problems(node_layout_issues(tp, pp, node_gpus, sharding.allow_multi_node,
                                                    bool(target and target.node_gpus_known), label))
    nodes = nodes_needed(tp, pp, node_gpus) or 1
    if target and target.nodes is not None and sum(1 for c in target.nodes if c >= tp * pp // nodes) < nodes:
        result.warnings.append(
            f"a replica needs {nodes} node(s) with {tp * pp // nodes} {target.label} GPUs each; "
            f"the given nodes have fewer")
    memory = None
    if model is not None and gpu is not None and not result.problems:
        settings = engine_settings(spec, model, gpu)
        memory = estimate_memory(model, gpu, settings, tp, pp)
        if not settings.max_model_len:
            result.warnings.append(
                f"{model.name} has no known context length: only the weights were checked; "
                "set spec.engine.maxModelLen or spec.model.shape.maxContextLength to check the KV cache")
        if not memory.fits:
            assert target is not None
            result.problems.append(_memory_problem(model, spec, target, settings, memory))
        elif memory.kv_share < AUTO_MIN_KV_SHARE:
            result.warnings.append(
                f"only {memory.kv_share:.0%} of the GPU budget is left for the KV cache "
                f"({memory.full_length_sequences or 0:.1f} full-length sequences): the replica will batch few requests")
    product = gpu.product if gpu else (target.label if target else None)
    result.plan = ShardingPlan(tp, pp, nodes, tp * pp // nodes, product, False, memory)
    return result


def _model_checks(d: LLMDeployment, model: Optional[ModelInfo]) -> tuple[list[Problem], list[str]]:
    problems: list[Problem] = []
    warnings: list[str] = []
    spec = d.spec
    removed = removed_method_message(spec)
    if removed:
        problems.append(_problem("spec.quantization.method", removed))
    if model is None:
        unknown = (f"the planner does not know the model {spec.model.source} "
                   "(not in its catalogue and spec.model.shape is not set)")
        if spec.sharding.is_auto:
            problems.append(_problem("spec.model.shape", (
                f"{unknown}, so it cannot choose sharding sizes. Fix: set spec.model.shape (parametersBillions, "
                "layers, attentionHeads, kvHeads, hiddenSize, maxContextLength from the model's config.json) "
                "or set spec.sharding.tensorParallelSize")))
        else:
            warnings.append(f"{unknown}: fit not checked; set spec.model.shape to check it")
        return problems, warnings
    problems += [_problem(path, message) for path, message in multimodal_problems(spec, model)]
    limit = spec.engine.max_model_len
    if limit and model.context_length and limit > model.context_length:
        problems.append(_problem("spec.engine.maxModelLen", (
            f"maxModelLen {limit} is longer than {model.name}'s context length {model.context_length} "
            f"(max_position_embeddings); vLLM refuses it. Fix: set spec.engine.maxModelLen to at most "
            f"{model.context_length} or leave it empty")))
    return problems, warnings


def _rank(result: _Result, target: _Target) -> tuple:
    """Order GPU types when the spec does not name one: working, on target, fewest nodes and
    GPUs, then the smallest GPU (leave the big ones to the models that need them)."""
    plan = result.plan
    if result.problems or plan is None:
        return (1,)
    memory = plan.memory
    return (0, 0 if memory is None or _meets_target(memory) else 1, plan.nodes_per_replica,
            plan.gpus_per_replica, target.gpu.memory_mib if target.gpu else 0)


def plan_deployment(deployment: LLMDeployment, inventory: InventoryInput = None,
                    gpu_type: Optional[str] = None) -> FitReport:
    """Check fit and choose (auto) or confirm (explicit) the sharding of one replica.

    inventory: the cluster's GPU nodes as NodeGPUs or (gpu.product label, GPU count) pairs,
    one per node; None when unknown (GPU count per node then assumed to be 8).
    gpu_type: plan for this GPU type instead of spec.resources.gpu.type (the CLI's --gpu).
    """
    model = resolve_model(deployment.spec.model)
    problems, warnings = _model_checks(deployment, model)
    nodes = _inventory(inventory)
    targets = _targets(gpu_type or deployment.spec.resources.gpu.type, nodes)
    if not targets:
        result = _evaluate(deployment, model, None)
        chosen: Optional[_Target] = None
        if nodes is None and not deployment.spec.sharding.is_auto:
            warnings.append("no GPU type is known (spec.resources.gpu.type is empty): memory not checked")
    else:
        evaluated = [(_evaluate(deployment, model, t), t) for t in targets]
        result, chosen = min(evaluated, key=lambda pair: _rank(*pair))
        if chosen.gpu is None and not deployment.spec.sharding.is_auto:
            warnings.append(f"the planner does not know GPU type {chosen.label!r}: memory and compute capability "
                            "not checked")
        if chosen.nodes is None and nodes is not None:
            warnings.append(f"none of the given nodes has {chosen.label} GPUs")
    return FitReport(
        model=model,
        gpu=chosen.gpu if chosen else None,
        plan=result.plan,
        problems=tuple(problems + result.problems),
        warnings=tuple(warnings + result.warnings),
    )


def check_fit(deployment: LLMDeployment, inventory: InventoryInput = None) -> list[Problem]:
    """The admission check: every reason this deployment cannot run (empty when it can or
    when the planner lacks the facts to tell)."""
    return list(plan_deployment(deployment, inventory).problems)


def plan_sharding(deployment: LLMDeployment, inventory: InventoryInput = None) -> Optional[ShardingPlan]:
    """The layout to render, or None when the deployment cannot run or auto sharding lacks a
    GPU type (see plan_deployment for the reasons)."""
    report = plan_deployment(deployment, inventory)
    return report.plan if report.ok else None
