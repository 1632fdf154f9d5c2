"""Which vLLM metric names a deployment's pods actually expose.

vLLM renamed `vllm:gpu_cache_usage_perc` to `vllm:kv_cache_usage_perc` and
`vllm:time_per_output_token_seconds` to `vllm:inter_token_latency_seconds`; a query on the
wrong name silently returns nothing and never scales. So ask Prometheus which one exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmops.autoscale.prometheus import OutcomeKind, PrometheusClient
from llmops.autoscale.queries import (
    ITL_CURRENT,
    ITL_LEGACY,
    KV_CACHE_CURRENT,
    KV_CACHE_LEGACY,
    detection_query,
)

# Newest name first: when a transition release exposes both, the newest wins.
KV_CACHE_NAMES = (KV_CACHE_CURRENT, KV_CACHE_LEGACY)
INTER_TOKEN_LATENCY_NAMES = (f"{ITL_CURRENT}_count", f"{ITL_LEGACY}_count")


@dataclass(frozen=True)
class Detection:
    chosen: str                 # the name to query
    present: tuple[str, ...]    # names seen on the pods
    detected: bool              # False = nothing seen (or Prometheus failed); chosen is the default
    message: str

    def to_status(self) -> dict:
        return {"metric": self.chosen, "detected": self.detected, "message": self.message}


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


async def detect(
    client: PrometheusClient, candidates: tuple[str, ...], namespace: str, name: str
) -> Detection:
    outcome = await client.instant_query(detection_query(candidates, namespace, name))
    if outcome.kind in (OutcomeKind.unreachable, OutcomeKind.query_error):
        return choose(candidates, (), failure=f"detection failed ({outcome.message})")
    return choose(candidates, {s.labels.get("__name__", "") for s in outcome.samples})
