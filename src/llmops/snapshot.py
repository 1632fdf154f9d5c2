"""PURE: one LLMDeployment's children and pods as the watch-fed caches hold them, and the test
that lets a reconcile skip an apply: what the cache holds already says what was rendered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True)
class Snapshot:
    children: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (kind, name) -> object
    pods: tuple[dict[str, Any], ...] = ()
    kinds: frozenset[str] = frozenset()  # kinds the caches watch; others are read from the API

    @classmethod
    def of(cls, children: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]], kinds: Iterable[str]) -> "Snapshot":
        return cls({(c["kind"], c["metadata"]["name"]): c for c in children}, tuple(pods), frozenset(kinds))

    def pods_with(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The pods whose labels include `labels` (a label selector's matchLabels)."""
        return [p for p in self.pods
                if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items())]


def already_applied(rendered: Any, live: Any) -> bool:
    """True when every field we render holds the same value in the live object. Fields the
    API server or others added are ignored (an apply would not remove them either); scalars
    compare as text too, since the server may store 1 for "1" in quantities and ports."""
    if isinstance(rendered, dict):
        return isinstance(live, dict) and all(k in live and already_applied(v, live[k]) for k, v in rendered.items())
    if isinstance(rendered, list):
        return isinstance(live, list) and len(rendered) == len(live) and all(
            already_applied(r, item) for r, item in zip(rendered, live))
    if rendered == live:
        return True
    return not isinstance(rendered, (dict, list, bool)) and not isinstance(live, (dict, list, bool)) \
        and rendered is not None and live is not None and str(rendered) == str(live)
