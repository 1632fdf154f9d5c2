"""wait_for: transient errors are retried, assertions fail at once, timeouts say what was awaited."""

from __future__ import annotations

import time

import pytest

from llmops.waiting import wait_for


def test_transient_errors_count_as_not_yet():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("server still starting")
        return "up"

    assert wait_for(flaky, 5, "server", interval=0) == "up"
    assert len(calls) == 3


def test_an_assertion_in_the_predicate_fails_at_once():
    calls = []

    def invariant_broken():
        calls.append(1)
        assert False, "replicas dropped"

    started = time.monotonic()
    with pytest.raises(AssertionError, match="replicas dropped"):
        wait_for(invariant_broken, 30, "never")
    assert len(calls) == 1 and time.monotonic() - started < 5


def test_timeout_names_what_was_awaited_and_the_last_error():
    def never():
        raise KeyError("phase")

    with pytest.raises(TimeoutError, match=r"status never Ready \(waited 0.05s; last error: KeyError"):
        wait_for(never, 0.05, "status never Ready", interval=0.01)
