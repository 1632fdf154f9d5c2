"""The LLMDeployment CRD, generated from the pydantic models.

pydantic emits JSON Schema 2020-12 with `$ref`s and `anyOf [T, null]`; Kubernetes wants a
*structural* OpenAPI v3 schema: every node typed, refs inlined, no `anyOf` for nullability,
boolean `exclusiveMinimum`, and free-form Kubernetes sub-objects marked
`x-kubernetes-preserve-unknown-fields`. This module does that translation.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from llmops.api import v1alpha1 as api

# JSON Schema keywords the API server's structural schema rejects or that add noise.
_DROPPED_KEYS = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
            return _resolve(merged, defs)
        return {k: _resolve(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    node = {k: v for k, v in node.items() if k not in _DROPPED_KEYS}
    # Optional[T] -> T; nullability is expressed by leaving the field out.
    if "anyOf" in node:
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"cannot express union in a structural schema: {variants}")
        node = {k: v for k, v in {**variants[0], **node}.items() if k not in _DROPPED_KEYS}
        if node.get("default", "absent") is None:
            node.pop("default")
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if node.get("default", "absent") is None:
        node.pop("default")

    kind = node.get("type")
    if kind == "object" or "properties" in node:
        node["type"] = "object"
        extra = node.pop("additionalProperties", None)
        if "properties" in node:
            node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        elif isinstance(extra, dict) and extra.get("type") == "string":
            node["additionalProperties"] = {"type": "string"}  # map[string]string
        else:
            node["x-kubernetes-preserve-unknown-fields"] = True  # free-form Kubernetes object
    elif kind == "array":
        node["items"] = _structural(node.get("items", {"type": "object"}))
    elif "enum" in node and "type" not in node:
        node["type"] = "string"
    elif "type" not in node:
        # `Any` values: leave to the API server, but keep the schema structural.
        node["x-kubernetes-preserve-unknown-fields"] = True
    return node


def openapi_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    inlined = _resolve(raw, raw.get("$defs", {}))
    return _structural(inlined)


def _without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def _status_schema() -> dict[str, Any]:
    # Only the operator writes status; defaults there would only invent values.
    schema = _without_defaults(openapi_schema(api.LLMDeploymentStatus))
    # Newer operators may add status fields; old CRDs must not prune them away.
    schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


PRINTER_COLUMNS = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.source"},
    {"name": "TP", "type": "integer", "jsonPath": ".status.tensorParallelSize"},
    {"name": "PP", "type": "integer", "jsonPath": ".status.pipelineParallelSize"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    # Empty unless model pre-staging is on; then True once every allowed node has the weights.
    {"name": "Staged", "type": "string", "priority": 1,
     "jsonPath": ".status.conditions[?(@.type==\"ModelStaged\")].status"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(api.LLMDeploymentSpec)
    spec_schema["description"] = "Desired state of an LLM inference deployment on vLLM."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["llmops"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An LLM served by vLLM: model, sharding, placement and autoscaling.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": _status_schema(),
                            },
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    return "# Generated by `llmops crds` from src/llmops/api; do not edit by hand.\n" + yaml.safe_dump(
        build_crd(), sort_keys=False, width=100
    )
