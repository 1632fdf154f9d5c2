"""Bounded waiting for a condition, with a message that says what was awaited."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    message: str,
    interval: float = 0.2,
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Raises TimeoutError(message + last value/exception) once `timeout` seconds pass.
    Exceptions raised by the predicate count as "not yet" (the last one is reported),
    because the thing awaited is often a server that is still starting. An AssertionError
    is the exception: it is a test saying "this must never happen", so it fails at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_value = value
            last_error = None
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the timeout message
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
            raise TimeoutError(f"{message} (waited {timeout:g}s; {detail})")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
