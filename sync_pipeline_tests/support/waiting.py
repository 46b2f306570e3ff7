"""Waiting on a condition with a deadline: tests never sleep a fixed time hoping for it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy, and return that. Fails the test
    naming `what` when `timeout` seconds pass first. The predicate may itself fail (an
    assertion that the awaited process is still alive, say): that ends the wait at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:g} s for {said}, in vain")
        time.sleep(interval)
