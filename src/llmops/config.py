"""The operator's configuration: one object, built from the command line by `llmops run` and
handed to Kopf as the memo (`kopf.operator(memo=...)`), so no module global carries settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llmops.render.context import DEFAULT_STAGER_IMAGE


@dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: Optional[str] = None          # None: in-cluster credentials, else the default kubeconfig
    prometheus_url: Optional[str] = None      # None: the autoscaler holds replicas and says why
    stager_image: str = DEFAULT_STAGER_IMAGE
    activator: Optional[str] = None           # NAMESPACE/NAME of the activator's Service (--activator)
    reconcile_workers: int = 16               # LLMDeployments reconciled in parallel (never one twice)
    drift_check_seconds: float = 60.0         # each deployment is re-reconciled this long after the last
    retry_seconds: tuple[float, ...] = (1, 2, 5, 10, 30, 60)  # after a failed reconcile, by attempt
