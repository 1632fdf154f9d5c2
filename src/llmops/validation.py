"""Turning user input into an LLMDeployment, or into problems that name the field and the fix.

The CLI (`llmops validate`), the admission webhook and the operator all call
`validate_manifest`, so a manifest is judged the same way everywhere.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from llmops.api.v1alpha1 import LLMDeployment
from llmops.errors import InvalidManifest, Problem
from llmops.activator.checks import check_activator
from llmops.planner.fit import check_fit

__all__ = ["InvalidManifest", "Problem", "api_view", "document_label", "load_documents",
           "parse_manifest", "validate_manifest"]


def _wire_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


# What a pattern-checked field expects, said the way a person would fix it.
PATTERN_HINTS = {
    "source": "use hf://ORG/NAME, s3://BUCKET/PATH or pvc://CLAIM/PATH",
    "hostPath": "use an absolute node directory below / such as /var/lib/llmops/models",
    "revision": "use a branch, tag or commit id such as main or a 40-character commit",
}


# What a bounded number is for, said with the fix when it is out of range.
RANGE_HINTS = {
    "drainSeconds": "set 0..3600 seconds a stopping pod may spend finishing in-flight requests "
                    "(0 = do not wait for them; default 120)",
    "queueSize": "set 1..100000 requests the activator may hold while the deployment wakes (default 100)",
    "holdSeconds": "set 1..86400 seconds, at most spec.engine.startupTimeoutSeconds (default 600)",
}


def _friendly(error: dict[str, Any]) -> str:
    kind = error["type"]
    field = str(error["loc"][-1]) if error["loc"] else ""
    if kind == "string_pattern_mismatch" and field in PATTERN_HINTS:
        return f"{error['input']!r} is not valid; {PATTERN_HINTS[field]}"
    if kind == "extra_forbidden":
        return "unknown field; check the spelling against `kubectl explain llmd.spec` (fields are camelCase)"
    if kind == "missing":
        return "required field is missing"
    message = error["msg"]
    if kind in ("greater_than_equal", "less_than_equal", "int_parsing") and field in RANGE_HINTS:
        what = "is not a whole number" if kind == "int_parsing" else "is out of range"
        return f"{error['input']!r} {what}; {RANGE_HINTS[field]}"
    # pydantic prefixes custom validator messages with "Value error, ".
    return message.removeprefix("Value error, ")


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    return [Problem(_wire_path(err["loc"]), _friendly(err)) for err in exc.errors()]


def parse_manifest(document: Any) -> LLMDeployment:
    """Schema-validate one decoded manifest; raises InvalidManifest."""
    if not isinstance(document, dict):
        raise InvalidManifest([Problem("", "the document is not a mapping; expected an LLMDeployment object")])
    try:
        return LLMDeployment.model_validate(document)
    except ValidationError as exc:
        raise InvalidManifest(problems_from_validation_error(exc)) from None


def validate_manifest(document: Any) -> LLMDeployment:
    """Schema plus semantic checks; raises InvalidManifest listing every problem."""
    deployment = parse_manifest(document)
    # Beyond the schema: the fit planner refuses shapes that cannot work (TP vs heads, GPU
    # capability, memory); spec.activator refuses a queue that holds nothing and a hold longer
    # than the startup timeout.
    problems = list(check_fit(deployment)) + list(check_activator(deployment))
    if problems:
        raise InvalidManifest(problems)
    return deployment


def api_view(body: Any) -> dict[str, Any]:
    """The parts of a stored object the API model judges: identity and spec; server-managed
    metadata and status aside (used by the operator and the admission webhook alike)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation", "labels", "annotations")
                     if meta.get(k) is not None},
        "spec": body.get("spec"),
    }


def document_label(document: Any, index: int) -> str:
    """How messages name one document of a multi-document file: Kind/name, else its position."""
    if isinstance(document, dict):
        name = (document.get("metadata") or {}).get("name")
        if name:
            return f"{document.get('kind', 'object')}/{name}"
    return f"document {index + 1}"


def load_documents(text: str, source: str = "input") -> list[Any]:
    """Decode a YAML stream; a syntax error becomes one line naming the place."""
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidManifest([Problem("", f"{where}: invalid YAML: {problem}")]) from None
