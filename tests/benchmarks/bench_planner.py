"""How long the fit planner takes per call: it runs inside the admission webhook and every
reconcile, so it must stay far below a webhook's timeout (10 s default, 1-2 s sensible).

Run: .venv/bin/python tests/benchmarks/bench_planner.py
"""

from __future__ import annotations

import time

from llmops.api.v1alpha1 import LLMDeployment
from llmops.planner import NodeGPUs, check_fit, plan_deployment


def deployment(source: str, gpu: str | None, **sharding) -> LLMDeployment:
    return LLMDeployment.model_validate({
        "apiVersion": "llmops.io/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "bench"},
        "spec": {"model": {"source": source}, "resources": {"gpu": {"type": gpu} if gpu else {}},
                 "sharding": sharding},
    })


CASES = {
    "explicit sizes, fits": (deployment("hf://meta-llama/Meta-Llama-3-70B-Instruct", "NVIDIA-H100-80GB-HBM3",
                                        tensorParallelSize=4), None),
    "explicit sizes, refused (fix search)": (deployment("hf://meta-llama/Llama-3.1-8B-Instruct", "NVIDIA-L4",
                                                        tensorParallelSize=1), None),
    "auto, single node": (deployment("hf://meta-llama/Meta-Llama-3-70B-Instruct", "NVIDIA-A100-SXM4-80GB"), None),
    "auto, multi-node, nothing fits (worst case)": (
        deployment("hf://meta-llama/Llama-3.1-405B", "Tesla-T4", allowMultiNode=True), None),
    "auto, no GPU type, 50-node mixed inventory": (
        deployment("hf://meta-llama/Llama-3.3-70B-Instruct", None, allowMultiNode=True),
        [NodeGPUs("NVIDIA-L4", 2)] * 30 + [NodeGPUs("NVIDIA-A10G", 4)] * 15
        + [NodeGPUs("NVIDIA-H100-80GB-HBM3", 8)] * 5),
}


def main() -> None:
    for name, (d, inventory) in CASES.items():
        check_fit(d, inventory)  # warm up
        runs = 200
        start = time.perf_counter()
        for _ in range(runs):
            plan_deployment(d, inventory)
        per_call = (time.perf_counter() - start) / runs
        print(f"{name:<48} {per_call * 1000:8.2f} ms per call")


if __name__ == "__main__":
    main()
