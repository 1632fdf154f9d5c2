"""`spec.activator` of an LLMDeployment: hold requests while the deployment wakes from zero.

The activator (`llmops activator`, installed by the chart) receives the Service's traffic
only while no replica is Ready; what it does with a request is decided by
`llmops.activator.policy`, where the Service points by `llmops.activator.routing`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

DEFAULT_QUEUE_SIZE = 100
# Long enough for a typical vLLM cold start (pull, load, CUDA graphs: minutes), and below the
# default engine.startupTimeoutSeconds (1800), which a hold may not outlast.
DEFAULT_HOLD_SECONDS = 600
MAX_QUEUE_SIZE = 100_000


class ActivatorSpec(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    enabled: bool = Field(
        default=False,
        description="While no replica is Ready, the Service sends requests to the cluster's llmops activator, "
        "which holds them, wakes the deployment (annotation llmops.io/wake) and forwards them once a replica "
        "(or a whole multi-node group) is Ready. Needs the activator installed (chart: activator.enabled); "
        "without it the Service behaves as if this were false.",
    )
    queue_size: int = Field(
        default=DEFAULT_QUEUE_SIZE,
        ge=0,
        le=MAX_QUEUE_SIZE,
        description="Requests held at most while waking; more are refused with 429 and Retry-After.",
    )
    hold_seconds: int = Field(
        default=DEFAULT_HOLD_SECONDS,
        ge=1,
        le=86400,
        description="Longest a request is held; then it is refused with 503 and Retry-After. "
        "At most engine.startupTimeoutSeconds.",
    )
