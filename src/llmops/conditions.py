"""The one rule for status conditions, used by every status writer.

A condition keeps its `lastTransitionTime` while its status stays the same (reason and
message may change), and an empty message is left out: a Kubernetes 1.20 API server reads
`message: ""` as null and refuses the whole status write.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from llmops.api.v1alpha1 import Condition


def merge_condition(previous: Iterable[Mapping[str, Any]] | None, new: Condition, now: str) -> Condition:
    """`new`, stamped with the transition time it should carry given the conditions written before."""
    old = next((c for c in previous or () if c.get("type") == new.type), None)
    unchanged = old is not None and old.get("status") == new.status and old.get("lastTransitionTime")
    return new.model_copy(update={
        "last_transition_time": old["lastTransitionTime"] if unchanged else now,
        "message": new.message or None,
    })


def condition(ctype: str, status: str, reason: str, message: Optional[str] = None,
              observed_generation: Optional[int] = None) -> Condition:
    return Condition(type=ctype, status=status, reason=reason, message=message or None,
                     observed_generation=observed_generation)
