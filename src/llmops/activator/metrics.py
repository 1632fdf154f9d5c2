"""The activator's Prometheus metrics (its own process; the chart's dashboard plots them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# The same identity labels as the operator's series, so dashboards join them (honorLabels keeps them).
LABELS = ("namespace", "llmdeployment")
# Holds last about one cold start: seconds (sandbox) to tens of minutes (a large model's download).
HOLD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1200, 1800)

HELD = Counter("llmops_activator_held_requests_total",
               "Requests that arrived while no replica was Ready and were held", LABELS)
FORWARDED = Counter("llmops_activator_forwarded_requests_total",
                    "Requests forwarded to a Ready replica (held or not)", LABELS)
REFUSED = Counter("llmops_activator_refused_requests_total",
                  "Requests answered by the activator itself, by reason: queue-full (429), hold-timeout (503), "
                  "unknown-deployment (404), upstream-error (502 or a stream cut by the replica)",
                  (*LABELS, "reason"))
ABANDONED = Counter("llmops_activator_abandoned_requests_total",
                    "Held requests whose client went away before a replica was Ready (a client timeout shorter "
                    "than the cold start: raise it, or lower spec.activator.holdSeconds)", LABELS)
HOLDING = Gauge("llmops_activator_holding_requests", "Requests held right now", LABELS)
HOLD_SECONDS = Histogram("llmops_activator_hold_seconds",
                         "Time a held request waited for a Ready replica before it was forwarded",
                         LABELS, buckets=HOLD_BUCKETS)
