"""A small async client for Prometheus's HTTP API (instant queries only).

Every failure comes back as a typed `QueryOutcome`, never as an exception, so the operator
can hold replicas and set a condition instead of crashing a handler.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

import aiohttp


class OutcomeKind(str, Enum):
    ok = "ok"                  # at least one sample
    empty = "empty"            # the query ran and matched nothing
    query_error = "query-error"  # Prometheus rejected or failed the query (bad PromQL, timeout inside)
    unreachable = "unreachable"  # no answer: connection refused, DNS, timeout, 5xx, not JSON


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float          # may be NaN or +/-Inf, as Prometheus returns them
    timestamp: float      # evaluation time for computed results (epoch seconds)


@dataclass(frozen=True)
class QueryOutcome:
    kind: OutcomeKind
    query: str
    samples: tuple[Sample, ...] = ()
    message: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.ok

    def scalar(self) -> Optional[float]:
        """The value of a one-number query (first sample), or None without data."""
        return self.samples[0].value if self.samples else None


class PrometheusClient:
    """`async with PrometheusClient("http://prometheus:9090") as prom: await prom.instant_query(q)`.

    One instance can serve every deployment; it creates its aiohttp session lazily inside
    the running event loop (Kopf's), or uses the session passed in.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_seconds: float = 5.0,
        session: Optional[aiohttp.ClientSession] = None,
        headers: Optional[dict[str, str]] = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._session = session
        self._owns_session = session is None
        self._headers = dict(headers or {})

    async def __aenter__(self) -> "PrometheusClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
            self._owns_session = True
        return self._session

    async def instant_query(self, promql: str, *, at: Optional[float] = None) -> QueryOutcome:
        form = {"query": promql, "timeout": f"{self.timeout_seconds:g}s"}
        if at is not None:
            form["time"] = f"{at:.3f}"
        url = f"{self.base_url}/api/v1/query"
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_seconds + 1)
            async with self._get_session().post(url, data=form, timeout=timeout) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    text = (await response.text())[:200]
                    return QueryOutcome(OutcomeKind.unreachable, promql, message=f"HTTP {status}, not JSON: {text!r}")
        except asyncio.TimeoutError:
            return QueryOutcome(OutcomeKind.unreachable, promql, message=f"timed out after {self.timeout_seconds:g}s ({url})")
        except aiohttp.ClientError as exc:
            return QueryOutcome(OutcomeKind.unreachable, promql, message=f"{type(exc).__name__}: {exc} ({url})")
        return parse_response(promql, status, body)


def parse_response(promql: str, http_status: int, body: Any) -> QueryOutcome:
    """Turn an /api/v1/query answer into an outcome (pure; exposed for unit tests)."""
    if not isinstance(body, dict):
        return QueryOutcome(OutcomeKind.unreachable, promql, message=f"HTTP {http_status}: unexpected body")
    warnings = tuple(str(w) for w in body.get("warnings") or ())
    if body.get("status") != "success":
        message = f"{body.get('errorType', 'error')}: {body.get('error', 'unknown error')}"
        # 5xx other than a query timeout/execution failure means Prometheus itself is not serving.
        kind = OutcomeKind.query_error
        if http_status >= 500 and body.get("errorType") not in {"timeout", "execution", "internal"}:
            kind = OutcomeKind.unreachable
        return QueryOutcome(kind, promql, message=message, warnings=warnings)
    data = body.get("data") or {}
    result_type = data.get("resultType")
    result = data.get("result")
    try:
        if result_type == "vector":
            samples = tuple(
                Sample(dict(item.get("metric") or {}), _number(item["value"][1]), float(item["value"][0]))
                for item in result or ()
            )
        elif result_type == "scalar":
            samples = (Sample({}, _number(result[1]), float(result[0])),)
        else:
            return QueryOutcome(
                OutcomeKind.query_error,
                promql,
                message=f"expected an instant vector or scalar, got {result_type}; wrap the query in sum(...)",
                warnings=warnings,
            )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return QueryOutcome(OutcomeKind.query_error, promql, message=f"malformed result: {exc}", warnings=warnings)
    if not samples:
        return QueryOutcome(OutcomeKind.empty, promql, message="no series matched", warnings=warnings)
    return QueryOutcome(OutcomeKind.ok, promql, samples=samples, warnings=warnings)


def _number(text: Any) -> float:
    return float(text)  # Prometheus spells them "NaN", "+Inf", "-Inf": float() accepts all three
