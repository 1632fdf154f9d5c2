"""llmops: a Kubernetes operator for LLM inference fleets on vLLM."""

__version__ = "0.1.0"
