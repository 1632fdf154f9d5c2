"""Pure rendering: LLMDeployment (+ cluster facts) -> child manifests."""

from llmops.render.children import render_children
from llmops.render.context import ClusterCapabilities, ResolvedSharding

__all__ = ["render_children", "ClusterCapabilities", "ResolvedSharding"]
