"""Per-request results -> summary report (percentiles, throughput, errors). Pure."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

PERCENTILES = (50, 90, 95, 99)


@dataclass
class RequestResult:
    """One request as the client saw it. Times are seconds on the generator's clock."""

    target: str
    start: float
    end: float
    ok: bool
    # kind: http_NNN (status code), connection_refused, connect (other connect failures),
    # disconnect (hung up before answering), truncated_stream (cut before [DONE]), aborted
    # (finish_reason "abort": vLLM gave up on it), timeout (the client's), stream_error, bad_response:...
    error: str | None = None
    ttft: float | None = None
    chunk_gaps: list[float] = field(default_factory=list)  # gaps between content chunks after the first
    prompt_tokens: int = 0
    output_tokens: int = 0
    phase: int = 0

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def tpot(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT)."""
        if self.ttft is None or self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = pct / 100 * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class Distribution:
    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Iterable[float]) -> "Distribution":
        ordered = sorted(values)
        if not ordered:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        p = [percentile(ordered, q) for q in PERCENTILES]
        return cls(len(ordered), sum(ordered) / len(ordered), *p, ordered[-1])


@dataclass
class Report:
    duration_s: float
    requests_sent: int
    requests_ok: int
    requests_failed: int
    errors: dict[str, int]
    throughput_rps: float
    output_tokens_per_s: float
    prompt_tokens: int
    output_tokens: int
    ttft: Distribution
    itl: Distribution  # gaps between streamed chunks
    tpot: Distribution  # per-request mean time per output token
    latency: Distribution  # end-to-end
    targets: dict[str, int]  # requests per endpoint
    results: list[RequestResult] = field(default_factory=list, repr=False)

    def to_dict(self, include_results: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not include_results:
            data.pop("results")
        return _nan_to_none(data)

    def table(self) -> str:
        lines = [
            f"duration {self.duration_s:.1f} s   requests {self.requests_sent} sent, {self.requests_ok} ok, "
            f"{self.requests_failed} failed",
            f"throughput {self.throughput_rps:.2f} req/s   {self.output_tokens_per_s:.1f} output tokens/s   "
            f"tokens {self.prompt_tokens} prompt / {self.output_tokens} output",
            "",
            f"{'metric (s)':<16}{'count':>7}{'mean':>10}{'p50':>10}{'p90':>10}{'p95':>10}{'p99':>10}{'max':>10}",
        ]
        for name, d in (("TTFT", self.ttft), ("inter-token", self.itl), ("TPOT", self.tpot),
                        ("end-to-end", self.latency)):
            lines.append(f"{name:<16}{d.count:>7}" + "".join(
                f"{v:>10.4f}" for v in (d.mean, d.p50, d.p90, d.p95, d.p99, d.max)))
        if self.errors:
            lines.append("")
            lines.append("errors: " + ", ".join(f"{kind} {n}" for kind, n in sorted(self.errors.items())))
        if len(self.targets) > 1:
            lines.append("targets: " + ", ".join(f"{t} {n}" for t, n in sorted(self.targets.items())))
        return "\n".join(lines)


def build_report(results: Sequence[RequestResult], duration_s: float) -> Report:
    ok = [r for r in results if r.ok]
    errors = Counter(r.error or "unknown" for r in results if not r.ok)
    output_tokens = sum(r.output_tokens for r in ok)
    span = duration_s if duration_s > 0 else math.nan
    return Report(
        duration_s=duration_s,
        requests_sent=len(results),
        requests_ok=len(ok),
        requests_failed=len(results) - len(ok),
        errors=dict(errors),
        throughput_rps=len(ok) / span if ok else 0.0,
        output_tokens_per_s=output_tokens / span if ok else 0.0,
        prompt_tokens=sum(r.prompt_tokens for r in ok),
        output_tokens=output_tokens,
        ttft=Distribution.of(r.ttft for r in ok if r.ttft is not None),
        itl=Distribution.of(g for r in ok for g in r.chunk_gaps),
        tpot=Distribution.of(t for r in ok if (t := r.tpot) is not None),
        latency=Distribution.of(r.latency for r in ok),
        targets=dict(Counter(r.target for r in results)),
        results=list(results),
    )


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value
