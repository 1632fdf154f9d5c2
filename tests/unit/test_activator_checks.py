"""Bad spec.activator input is refused at admission, naming the field and the fix."""

from __future__ import annotations

import pytest

from llmops_testing.samples import sim_deployment
from llmops.validation import InvalidManifest, validate_manifest


def problems(**activator) -> dict[str, str]:
    body = sim_deployment("chat", "ml", activator=activator)
    try:
        validate_manifest(body)
    except InvalidManifest as exc:
        return {p.path: p.message for p in exc.problems}
    return {}


def test_defaults_and_a_sane_spec_pass():
    assert problems() == {}
    assert problems(enabled=True) == {}
    assert problems(enabled=True, queueSize=1, holdSeconds=1800) == {}


def test_queue_size_zero_with_the_activator_on_is_refused_with_the_fix():
    found = problems(enabled=True, queueSize=0)
    assert list(found) == ["spec.activator.queueSize"]
    assert "at least 1" in found["spec.activator.queueSize"]
    assert problems(enabled=False, queueSize=0) == {}  # off: nothing is held, nothing to refuse


def test_hold_longer_than_the_startup_timeout_is_refused_naming_both_fields():
    found = problems(enabled=True, holdSeconds=1801)
    assert list(found) == ["spec.activator.holdSeconds"]
    assert "startupTimeoutSeconds (1800)" in found["spec.activator.holdSeconds"]
    assert "at most 1800" in found["spec.activator.holdSeconds"]


@pytest.mark.parametrize("field, value", [("queueSize", -1), ("queueSize", 100_001), ("holdSeconds", 0)])
def test_out_of_range_values_name_the_field_and_the_range(field, value):
    found = problems(enabled=True, **{field: value})
    assert list(found) == [f"spec.activator.{field}"]
    assert "out of range; set" in found[f"spec.activator.{field}"]


def test_unknown_fields_are_refused():
    assert "spec.activator.queueLength" in problems(enabled=True, queueLength=5)
