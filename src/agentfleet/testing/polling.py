"""Waiting for something to become true, with a deadline and no fixed sleeps (tests and benches)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], object], timeout_s: float = 20.0) -> bool:
    """True once `condition()` is truthy, polling every 50 ms; False at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def wait_for(condition: Callable[[], T | None], timeout_s: float = 60.0, what: str = "condition") -> T:
    """The first truthy value of `condition()`; an AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)
