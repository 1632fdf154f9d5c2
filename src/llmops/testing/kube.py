"""Small Kubernetes helpers for the test suites."""

from __future__ import annotations

from kubernetes.client.rest import ApiException


def read_or_none(read, *args):
    """`read(*args)`, or None when the object does not exist."""
    try:
        return read(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
