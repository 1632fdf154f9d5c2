"""A container's environment as the kubelet builds it (pure; lookups are injected)."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

# lookup(kind, namespace, name, key) -> value or None; kind is "secret" or "configmap".
Lookup = Callable[[str, str, str, str], "str | None"]
# lookup_all(kind, namespace, name) -> all key/values or None.
LookupAll = Callable[[str, str, str], "dict[str, str] | None"]

_VAR_RE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class EnvConfigError(ValueError):
    """Reported as CreateContainerConfigError, like the kubelet does."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined vars are substituted, $$ escapes, others stay."""
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR_RE.sub(repl, text)


def field_ref(path: str, pod: dict, pod_ip: str | None, host_ip: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.podIP": pod_ip or "",
        "status.podIPs": pod_ip or "",
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise EnvConfigError(f"unsupported fieldRef {path!r}")


def container_env(
    container: dict,
    pod: dict,
    pod_ip: str | None,
    host_ip: str,
    lookup: Lookup,
    lookup_all: LookupAll,
    base: Mapping[str, str] = (),
) -> dict[str, str]:
    """base (agent-provided vars), then envFrom, then env — later wins, as in the kubelet."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = dict(base)
    for source in container.get("envFrom") or ():
        prefix = source.get("prefix") or ""
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if not ref:
                continue
            values = lookup_all(kind, namespace, ref["name"])
            if values is None:
                if ref.get("optional"):
                    continue
                raise EnvConfigError(f'{kind} "{ref["name"]}" not found')
            env.update({prefix + k: v for k, v in values.items()})
    for var in container.get("env") or ():
        name = var["name"]
        if "valueFrom" not in var or var.get("valueFrom") is None:
            env[name] = expand(var.get("value") or "", env)
            continue
        source: dict[str, Any] = var["valueFrom"]
        if source.get("fieldRef"):
            env[name] = field_ref(source["fieldRef"]["fieldPath"], pod, pod_ip, host_ip)
        elif source.get("secretKeyRef") or source.get("configMapKeyRef"):
            kind, ref = (("secret", source["secretKeyRef"]) if source.get("secretKeyRef")
                         else ("configmap", source["configMapKeyRef"]))
            value = lookup(kind, namespace, ref["name"], ref["key"])
            if value is None:
                if ref.get("optional"):
                    continue
                raise EnvConfigError(f'couldn\'t find key {ref["key"]} in {kind} {namespace}/{ref["name"]}')
            env[name] = value
        elif source.get("resourceFieldRef"):
            ref = source["resourceFieldRef"]
            section, _, resource = ref["resource"].partition(".")
            value = ((container.get("resources") or {}).get(section) or {}).get(resource)
            env[name] = str(value) if value is not None else "0"
        else:
            raise EnvConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
    return env


def expand_all(items: Sequence[str] | None, env: Mapping[str, str]) -> list[str]:
    return [expand(str(x), env) for x in items or ()]


def gpu_limit(container: dict) -> int:
    resources = container.get("resources") or {}
    value = (resources.get("limits") or {}).get("nvidia.com/gpu") or (resources.get("requests") or {}).get("nvidia.com/gpu")
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        return 0
