"""File locks (flock(2)): exclusive or shared, across threads and processes.

A lock belongs to an open file: it is released when the file is closed, and when the process
holding it ends, however it ends (a SIGKILL too). That makes a lock a reliable sign of life.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.05


def acquire(
    path: Path, *, shared: bool = False, timeout_s: float | None = None, on_wait: Callable[[], None] | None = None
) -> int:
    """Open `path` (made if missing) and lock it; return the file descriptor that holds the lock.

    Waits for the lock (`timeout_s` None: for ever); TimeoutError when it did not come in time.
    `on_wait` is called once, when the lock is not free at the first try."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        if timeout_s is None and on_wait is None:
            fcntl.flock(fd, mode)
            return fd
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{path} stayed locked for {timeout_s:g} s")
            threading.Event().wait(POLL_S)
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def locked(
    path: Path, *, shared: bool = False, timeout_s: float | None = None, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock on `path` for the block (see `acquire`)."""
    fd = acquire(path, shared=shared, timeout_s=timeout_s, on_wait=on_wait)
    try:
        yield
    finally:
        os.close(fd)  # closing the file releases the lock
