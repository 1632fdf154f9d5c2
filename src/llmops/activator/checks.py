"""Admission checks of spec.activator beyond its schema bounds (they relate two fields)."""

from __future__ import annotations

from typing import Iterable

from llmops.api.v1alpha1 import LLMDeployment
from llmops.errors import Problem


def check_activator(d: LLMDeployment) -> Iterable[Problem]:
    a, engine = d.spec.activator, d.spec.engine
    if not a.enabled:
        return []
    problems = []
    if a.queue_size == 0:
        problems.append(Problem(
            "spec.activator.queueSize",
            "0 with the activator enabled would refuse every request while waking; set a queue size of at "
            "least 1 (default 100), or set spec.activator.enabled: false",
        ))
    if a.hold_seconds > engine.startup_timeout_seconds:
        problems.append(Problem(
            "spec.activator.holdSeconds",
            f"{a.hold_seconds} is longer than spec.engine.startupTimeoutSeconds ({engine.startup_timeout_seconds}), "
            "after which a starting pod is restarted, so a request would be held past any chance of a replica; "
            f"set holdSeconds to at most {engine.startup_timeout_seconds} or raise startupTimeoutSeconds",
        ))
    return problems
