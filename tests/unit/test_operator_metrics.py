"""The operator's autoscaler metrics carry each demand term and input, and go with the deployment."""

from prometheus_client import REGISTRY

from llmops import metrics
from llmops.api.autoscaling import AutoscalingSpec
from llmops.autoscale.demand import DemandSignals, Signal
from llmops.autoscale.policy import AutoscalerState, Capacity, PolicyInput, decide


def value(name: str, **labels) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": "ns", "llmdeployment": "m", **labels})


def test_demand_terms_and_inputs_are_exported_and_forgotten_with_the_deployment():
    spec = AutoscalingSpec.model_validate({"mode": "demand", "maxReplicas": 10, "demand": {
        "slotsPerReplica": 16, "serviceSecondsHint": 8, "coldStartSecondsHint": 120,
        "targetUtilization": 1, "safetyFactor": 0}})
    signals = DemandSignals(arrival_fast=Signal(6.0, 1.0), arrival_slow=Signal(4.0, 1.0), queue=Signal(40.0, 1.0))
    decision, _ = decide(PolicyInput(spec=spec, now=1e9, current_replicas=3, ready_replicas=2, starting_replicas=1,
                                     demand=signals, capacity=Capacity(1, "Insufficient nvidia.com/gpu")),
                         AutoscalerState())
    metrics.record_autoscaler("ns", "m", decision)
    assert value("llmops_autoscaler_term_replicas", term="steady") == 3
    assert value("llmops_autoscaler_term_replicas", term="hold") == 0
    assert value("llmops_autoscaler_arrival_rate", window="fast") == 6.0
    assert value("llmops_autoscaler_arrival_rate", window="slow") == 4.0
    assert value("llmops_autoscaler_offered_load_slots") == 48.0
    assert value("llmops_autoscaler_service_seconds") == 8.0
    assert value("llmops_autoscaler_cold_start_seconds") == 120.0
    assert value("llmops_autoscaler_projected_queue") > 0
    assert value("llmops_autoscaler_capacity_cap") == decision.capacity["cap"] == 3
    metrics.forget("ns", "m")
    assert value("llmops_autoscaler_term_replicas", term="steady") is None
    assert value("llmops_autoscaler_capacity_cap") is None
