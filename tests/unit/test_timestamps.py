"""The one RFC 3339 helper (conditions, decisions, stage markers, the sandbox's node status)."""

import time

from llmops.timestamps import parse_rfc3339, rfc3339, utc_now


def test_formats_utc_whole_seconds_with_z():
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1764592205.987) == "2025-12-01T12:30:05Z"   # fractions dropped, not rounded


def test_parses_what_kubernetes_writes_and_what_it_formats():
    assert parse_rfc3339("1970-01-01T00:00:00Z") == 0
    assert parse_rfc3339("2025-12-01T13:30:05+01:00") == 1764592205
    assert parse_rfc3339("2025-12-01T12:30:05.500000Z") == 1764592205.5
    assert parse_rfc3339(rfc3339(1764592205)) == 1764592205


def test_missing_or_malformed_is_absent():
    assert parse_rfc3339(None) is None and parse_rfc3339("") is None and parse_rfc3339("yesterday") is None


def test_now_is_now():
    assert abs(parse_rfc3339(utc_now()) - time.time()) < 2
