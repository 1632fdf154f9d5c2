"""RFC 3339 timestamps as Kubernetes writes them (UTC, whole seconds, `Z`): the one place
that formats and parses them, for status conditions, decisions, Events and stage markers."""

from __future__ import annotations

import datetime as dt
from typing import Optional


def rfc3339(epoch: float) -> str:
    """`2026-12-01T12:30:05Z` for a Unix time (pure: the caller owns the clock)."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> str:
    """The current time, formatted like `rfc3339`."""
    return rfc3339(dt.datetime.now(dt.timezone.utc).timestamp())


def parse_rfc3339(value: Optional[str]) -> Optional[float]:
    """Unix time of an RFC 3339 timestamp (`Z` or an offset, fractions allowed); None when
    empty or unreadable, so a malformed field is treated as absent."""
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
