"""Which vLLM metric names a deployment's pods actually expose, as stored by Prometheus.

Two ways a hard-coded name silently matches nothing and never scales:
- vLLM renamed `vllm:gpu_cache_usage_perc` to `vllm:kv_cache_usage_perc` (and
  `vllm:time_per_output_token_seconds` to `vllm:inter_token_latency_seconds`);
- recent prometheus_client releases, when Prometheus negotiates OpenMetrics, write sample
  names with ':' escaped to '_' (prometheus/client_python#1177), so Prometheus stores
  `vllm_num_requests_waiting` instead of `vllm:num_requests_waiting`.
So one query per evaluation asks which spellings exist and each family uses the best one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from llmops.autoscale.prometheus import OutcomeKind, PrometheusClient
from llmops.autoscale.queries import (
    GENERATION_TOKENS,
    ITL_CURRENT,
    ITL_LEGACY,
    KV_CACHE_CURRENT,
    KV_CACHE_LEGACY,
    RUNNING,
    TTFT,
    WAITING,
    MetricNames,
    detection_query,
)


def _spellings(*names: str) -> tuple[str, ...]:
    """Each name as vLLM writes it, then with ':' escaped (newest name first)."""
    return tuple(names) + tuple(n.replace(":", "_") for n in names)


KV_CACHE_NAMES = _spellings(KV_CACHE_CURRENT, KV_CACHE_LEGACY)
INTER_TOKEN_LATENCY_NAMES = _spellings(f"{ITL_CURRENT}_count", f"{ITL_LEGACY}_count")

# MetricNames field -> (candidate series to look for, suffix to strip to get the query name)
FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "waiting": (_spellings(WAITING), ""),
    "running": (_spellings(RUNNING), ""),
    "generation_tokens": (_spellings(GENERATION_TOKENS), ""),
    "ttft": (_spellings(f"{TTFT}_count"), "_count"),
    "kv_cache": (KV_CACHE_NAMES, ""),
}


@dataclass(frozen=True)
class Detection:
    chosen: str                 # the name to query
    present: tuple[str, ...]    # names seen on the pods
    detected: bool              # False = nothing seen (or Prometheus failed); chosen is the default
    message: str

    def to_status(self) -> dict[str, Any]:
        return {"metric": self.chosen, "detected": self.detected, "message": self.message}


@dataclass(frozen=True)
class NameDetection:
    names: MetricNames
    families: dict[str, Detection]
    failed: bool = False  # Prometheus did not answer: nothing was learnt

    def to_status(self) -> dict[str, Any]:
        """For status.autoscaling.metricNames: family -> {metric, detected, message}."""
        return {_camel(family): d.to_status() for family, d in self.families.items()}

    @classmethod
    def from_status(cls, saved: Any) -> Optional["NameDetection"]:
        """Reuse the previous evaluation's names (e.g. while no pod is Ready)."""
        if not isinstance(saved, dict):
            return None
        chosen: dict[str, str] = {}
        families: dict[str, Detection] = {}
        for family, (candidates, suffix) in FAMILIES.items():
            entry = saved.get(_camel(family))
            if not isinstance(entry, dict) or entry.get("metric") not in candidates:
                return None
            families[family] = Detection(entry["metric"], (), bool(entry.get("detected")), str(entry.get("message", "")))
            chosen[family] = entry["metric"].removesuffix(suffix) if suffix else entry["metric"]
        return cls(MetricNames(**chosen), families)


def choose(candidates: tuple[str, ...], present: set[str] | tuple[str, ...], failure: str = "") -> Detection:
    """Pure: pick the first candidate present; else the first candidate, marked undetected."""
    seen = tuple(name for name in candidates if name in set(present))
    if seen:
        note = f"pods expose {seen[0]}"
        if len(seen) > 1:
            note += f" (also {', '.join(seen[1:])})"
        return Detection(seen[0], seen, True, note)
    reason = failure or "no pod exposes any of " + ", ".join(candidates)
    return Detection(candidates[0], (), False, f"{reason}; assuming {candidates[0]}")


def choose_names(present: set[str], failure: str = "") -> NameDetection:
    """Pure: the best spelling of every family from the series names present."""
    families = {family: choose(candidates, present, failure) for family, (candidates, _) in FAMILIES.items()}
    chosen = {
        family: detection.chosen.removesuffix(FAMILIES[family][1]) if FAMILIES[family][1] else detection.chosen
        for family, detection in families.items()
    }
    assert set(chosen) == {f.name for f in fields(MetricNames)}
    return NameDetection(MetricNames(**chosen), families)


def all_candidates() -> tuple[str, ...]:
    return tuple(name for candidates, _ in FAMILIES.values() for name in candidates)


async def _present(client: PrometheusClient, candidates: tuple[str, ...], namespace: str, name: str):
    outcome = await client.instant_query(detection_query(candidates, namespace, name))
    if outcome.kind in (OutcomeKind.unreachable, OutcomeKind.query_error):
        return None, f"detection failed ({outcome.message})"
    return {s.labels.get("__name__", "") for s in outcome.samples}, ""


async def detect(client: PrometheusClient, candidates: tuple[str, ...], namespace: str, name: str) -> Detection:
    """One family, e.g. detect(client, KV_CACHE_NAMES, ns, name)."""
    present, failure = await _present(client, candidates, namespace, name)
    return choose(candidates, present or set(), failure)


async def detect_names(client: PrometheusClient, namespace: str, name: str) -> NameDetection:
    """Every family the autoscaler queries, in one Prometheus query."""
    present, failure = await _present(client, all_candidates(), namespace, name)
    found = choose_names(present or set(), failure)
    return NameDetection(found.names, found.families, failed=present is None)


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)
