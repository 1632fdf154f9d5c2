"""LLMDeployments the integration and e2e suites share: small models served by the simulator."""

from __future__ import annotations

import copy
from typing import Any

SIM_IMAGE = "llmops/vllm-sim:latest"


def sim_deployment(name: str = "chat", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """A one-replica Qwen2.5-0.5B on the simulator (ready within seconds); `spec` overrides keys."""
    body: dict[str, Any] = {
        "apiVersion": "llmops.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
        "spec": {
            "model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct", "servedName": name},
            "engine": {"image": SIM_IMAGE, "maxModelLen": 4096,
                       "env": [{"name": "LLMOPS_SIM_STARTUP_SECONDS", "value": "1"}]},
            "sharding": {"tensorParallelSize": 1, "pipelineParallelSize": 1},
            "replicas": 1,
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body
