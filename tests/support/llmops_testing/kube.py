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


def wait_for_event_reasons(core, namespace: str, name: str, reasons: set[str], timeout: float = 30) -> set[str]:
    """Event reasons on object `name` once they include `reasons`. Kopf posts Events
    asynchronously, so they may trail the change they describe by a moment."""
    from llmops.waiting import wait_for

    def seen():
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        found = {e.reason for e in events}
        return found if reasons <= found else None

    return wait_for(seen, timeout, f"no {sorted(reasons)} Events on {namespace}/{name}")
