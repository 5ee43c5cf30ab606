"""One attempt at a time in a workspace, and none before the processes of earlier ones have ended."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agentfleet.errors import WorkspaceError
from agentfleet.runtime import occupancy
from agentfleet.runtime.occupancy import occupy
from agentfleet.settings import Settings
from agentfleet.testing.polling import wait_for

HOLD = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_SH)\n"
    "print('holding', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def hold_shared(path: Path, seconds: float) -> subprocess.Popen[str]:
    """A process of an 'earlier attempt': it holds the lock shared until it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
    return proc


def test_an_attempt_waits_for_the_processes_of_an_earlier_one_to_end(settings: Settings) -> None:
    survivor = hold_shared(settings.home / "locks" / "ws.procs", 600)
    events: list[dict] = []
    entered = threading.Event()

    def attempt() -> None:
        with occupy(settings, "ws", lambda kind, data: events.append(data)):
            entered.set()

    thread = threading.Thread(target=attempt)
    thread.start()
    wait_for(lambda: events, what="the wait event")
    assert not entered.is_set(), "it does not start while a process of an earlier attempt lives"
    survivor.kill()  # SIGKILL: the lock goes with the process
    survivor.wait()
    thread.join(timeout=10)
    assert entered.is_set()
    assert events == [{"step": "wait", "for": "the processes of an earlier attempt to end"}]


def test_a_second_attempt_waits_for_the_first_to_end(settings: Settings) -> None:
    order: list[str] = []

    def second() -> None:
        with occupy(settings, "ws", lambda *_: order.append("second waits")):
            order.append("second runs")

    with occupy(settings, "ws", lambda *_: None):
        thread = threading.Thread(target=second)
        thread.start()
        wait_for(lambda: order, what="the second attempt to wait")
        order.append("first ends")
    thread.join(timeout=10)
    assert order == ["second waits", "first ends", "second runs"]


def test_processes_that_never_end_fail_the_attempt_with_the_reason(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(occupancy, "PROCESSES_WAIT_S", 0.3)
    survivor = hold_shared(settings.home / "locks" / "ws.procs", 600)
    try:
        with (
            pytest.raises(WorkspaceError, match=r"still running after 0\.3 s"),
            occupy(settings, "ws", lambda *_: None),
        ):
            pass
        with occupy(settings, "other-ws", lambda *_: None):
            pass  # another workspace is not held up
    finally:
        survivor.kill()
        survivor.wait()
