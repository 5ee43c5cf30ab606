"""Waiting for something to become true, with a deadline and no fixed sleeps, for a process to stop,
and racing threads (tests and benches)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """Stop a process a test or bench started: SIGTERM (which `agentfleet serve` and the scripted
    model server handle as Ctrl-C; a SIGINT is ignored by a process started from a background job,
    where bash sets it to SIG_IGN and Python installs no handler), then SIGKILL after `timeout_s`.
    Its exit code."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


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


def race(n: int, fn: Callable[[int], T]) -> list[T]:
    """Run fn(0..n-1) in n threads released at the same moment; their results in order."""
    barrier = threading.Barrier(n)

    def run(i: int) -> T:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))
