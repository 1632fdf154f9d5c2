"""`llmops plan`: will a manifest's model fit, how is it sharded, and where does the memory go."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any, Optional

from llmops.planner.fit import FitReport, NodeGPUs, plan_deployment
from llmops.planner.gpus import GPU_CATALOGUE
from llmops.planner.models import MODEL_CATALOGUE
from llmops.errors import UserError
from llmops.validation import InvalidManifest, document_label, parse_manifest

_NODE_SPEC = re.compile(r"^(?P<product>[^:]+):(?P<gpus>\d+)(?:[xX*](?P<count>\d+))?$")


def parse_nodes(values: Optional[list[str]]) -> Optional[list[NodeGPUs]]:
    """--nodes PRODUCT:GPUS[xNODES], repeatable and comma-separated, e.g. NVIDIA-L4:2x3."""
    if not values:
        return None
    nodes: list[NodeGPUs] = []
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            match = _NODE_SPEC.match(item)
            if not match:
                raise UserError(f"--nodes {item!r}: expected PRODUCT:GPUS or PRODUCT:GPUSxNODES, e.g. NVIDIA-L4:2x3")
            gpus, count = int(match["gpus"]), int(match["count"] or 1)
            if gpus < 1 or count < 1:
                raise UserError(f"--nodes {item!r}: GPU and node counts must be at least 1")
            nodes.extend(NodeGPUs(match["product"], gpus) for _ in range(count))
    return nodes


def _row(label: str, value: str) -> str:
    return f"  {label:<44}{value:>10}"


def render_report(name: str, source: str, report: FitReport) -> str:
    """The human-readable breakdown `llmops plan` prints for one deployment."""
    lines = [f"{name} ({source})"]
    model = report.model
    if model:
        lines.append(
            f"model     {model.name}: {model.parameters_billions:g}B parameters, {model.layers} layers, "
            f"{model.attention_heads} attention / {model.kv_heads} KV heads, head dim {model.head_dim}, "
            f"context {model.context_length or 'unknown'}")
        lines.append(f"          figures from {model.source}")
        if model.vision:
            v = model.vision
            lines.append(f"vision    {v.family} tower: {v.parameters_billions:.3f}B parameters ({v.layers} layers, "
                         f"hidden {v.hidden_size}, {v.heads} heads, {v.patch_size}-px patches), kept 16-bit")
            lines.append(f"          image tokens as the processor computes them ({v.preprocessor})")
    else:
        lines.append("model     unknown to the planner")
    gpu = report.gpu
    if gpu:
        lines.append(f"gpu       {gpu.product}: {gpu.memory_gib:.1f} GiB, compute capability {gpu.capability_text}")
    plan = report.plan
    if plan:
        how = "chosen by the planner" if plan.auto else "from the spec"
        lines.append(
            f"sharding  tensorParallelSize {plan.tp} x pipelineParallelSize {plan.pp} = {plan.gpus_per_replica} "
            f"GPU(s): {plan.nodes_per_replica} node(s) x {plan.gpus_per_node} GPU(s) ({how})")
        memory = plan.memory
        if memory:
            lines.append("")
            lines.append(_row("memory per GPU (busiest pipeline stage)", "GiB"))
            lines.append(_row(f"budget: {memory.gpu_memory_utilization:g} x {memory.gpu_memory_gib:.2f} GiB",
                              f"{memory.budget_gib:.2f}"))
            lines.append(_row(f"weights ({memory.weight_format}; {memory.model_weights_gib:.2f} GiB in all)",
                              f"{memory.weights_gib:.2f}"))
            vision = memory.vision
            if vision:
                how = ("split by TP" if vision.sharded
                       else "whole on each GPU" if memory.tensor_parallel_size > 1 else "16-bit")
                lines.append(_row(f"  of which vision tower ({how})", f"{vision.weights_gib:.2f}"))
            lines.append(_row("runtime (CUDA context, non-torch, graphs)", f"{memory.runtime_gib:.2f}"))
            lines.append(_row("activations (profiling peak)", f"{memory.activation_gib:.2f}"))
            if vision and vision.activation_gib:
                lines.append(_row("  of which image encoder + encoder cache", f"{vision.activation_gib:.2f}"))
            lines.append(_row("left for the KV cache", f"{memory.kv_cache_gib:.2f}"))
            if memory.min_kv_cache_gib is not None:
                lines.append(_row(f"  one {memory.max_model_len}-token sequence (minimum)",
                                  f"{memory.min_kv_cache_gib:.2f}"))
                lines.append(_row("  headroom", f"{memory.headroom_gib:.2f}"))
            per_token = memory.kv_bytes_per_token / 1024
            capacity = f"KV cache {per_token:g} KiB per token on each GPU; room for {memory.kv_cache_tokens:,} tokens"
            if memory.full_length_sequences is not None:
                capacity += f" = {memory.full_length_sequences:.2f} full-length sequences"
            lines.append(f"  {capacity}")
            if vision:
                lines.append(f"  largest image: {vision.largest_image_tokens:,} tokens = "
                             f"{vision.kv_gib_per_largest_image * 1024:.1f} MiB of KV cache on each GPU")
            lines.append(f"  fits: {'yes' if memory.fits else 'NO'}")
    for problem in report.problems:
        lines.append(f"error: {problem}")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    if report.ok and not (plan and plan.memory):
        lines.append("fit not checked (see warnings)" if report.warnings else "")
    return "\n".join(line for line in lines if line is not None)


def render_catalogues() -> str:
    lines = [f"{'model (hf repo)':<46}{'params':>8}{'layers':>7}{'heads':>6}{'kv':>4}{'hdim':>5}{'context':>9}  source"]
    for m in MODEL_CATALOGUE:
        lines.append(f"{m.name:<46}{m.parameters_billions:>7g}B{m.layers:>7}{m.attention_heads:>6}{m.kv_heads:>4}"
                     f"{m.head_dim:>5}{m.context_length or 0:>9}  {m.source}"
                     + (f"  (vision-language: {m.vision.family} tower)" if m.vision else ""))
    lines.append("")
    lines.append(f"{'gpu (nvidia.com/gpu.product)':<36}{'GiB':>7}{'cc':>5}  also known as")
    for g in GPU_CATALOGUE:
        lines.append(f"{g.product:<36}{g.memory_gib:>7.1f}{g.capability_text:>5}  {', '.join(g.aliases)}")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    if args.list:
        print(render_catalogues())
        return 0
    if not args.file:
        raise UserError("plan: give a manifest with -f FILE (or --list for the catalogues)")
    from llmops.commands import read_manifests

    nodes = parse_nodes(args.nodes)
    try:
        documents = read_manifests(args.file)
    except InvalidManifest as exc:
        raise UserError("; ".join(str(p) for p in exc.problems)) from None
    results: list[dict[str, Any]] = []
    texts: list[str] = []
    failed = False
    for index, document in enumerate(documents):
        label = document_label(document, index)
        try:
            deployment = parse_manifest(document)
        except InvalidManifest as exc:
            failed = True
            results.append({"name": label, "ok": False,
                            "problems": [{"path": p.path, "message": p.message} for p in exc.problems]})
            texts.append("\n".join([label] + [f"error: {p}" for p in exc.problems]))
            continue
        report = plan_deployment(deployment, nodes, gpu_type=args.gpu)
        failed = failed or not report.ok
        results.append({"name": label, "source": deployment.spec.model.source, **report.to_dict()})
        texts.append(render_report(label, deployment.spec.model.source, report))
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        print("\n\n".join(texts))
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="check that a model fits its GPUs and show the sharding and memory breakdown",
        description="Estimate per-GPU memory (weights, runtime, activations, KV cache) for each LLMDeployment "
                    "in a manifest, choose tensor/pipeline parallel sizes when the spec leaves them empty, "
                    "and report what would keep vLLM from starting. Exit status 1 when something does not fit.",
        epilog="Known GPU types: " + ", ".join(g.product for g in GPU_CATALOGUE)
               + ". `llmops plan --list` shows the model and GPU catalogues.",
    )
    parser.add_argument("-f", "--file", help="manifest file (YAML, several documents allowed; '-' for stdin)")
    parser.add_argument("--gpu", metavar="TYPE", help="plan for this GPU type (nvidia.com/gpu.product value) "
                                                      "instead of spec.resources.gpu.type")
    parser.add_argument("--nodes", metavar="PRODUCT:GPUS[xNODES]", action="append",
                        help="the cluster's GPU nodes, e.g. NVIDIA-L4:2x3 for three nodes with two L4 each; "
                             "repeatable or comma-separated")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    parser.add_argument("--list", action="store_true", help="print the model and GPU catalogues and exit")
    parser.set_defaults(func=cmd_plan)
