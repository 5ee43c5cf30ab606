"""The agent's heartbeat thread (agent/attempt.py): it ends the process when the attempt is no
longer current, and never for an ending the process itself recorded while a beat was in flight."""

from __future__ import annotations

import threading

import pytest

from agentfleet.agent import attempt
from agentfleet.agent.attempt import Heartbeat


class SlowBeats:
    """A store whose heartbeat waits to be released, then answers `current`."""

    def __init__(self, current: bool) -> None:
        self.current, self.called, self.release = current, threading.Event(), threading.Event()

    def heartbeat(self, task_id: str, attempt: int) -> bool:
        self.called.set()
        assert self.release.wait(10)
        return self.current


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The signals the heartbeat sends its process group (recorded, not sent)."""
    sent: list[int] = []
    monkeypatch.setattr(attempt.os, "killpg", lambda group, sig: sent.append(sig))
    return sent


def test_an_attempt_that_is_no_longer_current_ends_the_process(kills: list[int]) -> None:
    store = SlowBeats(current=False)
    beat = Heartbeat(store, "t1", 1, interval_s=0.01)  # type: ignore[arg-type]
    beat.start()
    assert store.called.wait(10)
    store.release.set()
    beat.join(10)
    assert len(kills) == 1


def test_a_beat_in_flight_when_the_work_stops_ends_nothing(kills: list[int]) -> None:
    """The race that lost tasks: the beat reads the task just after this process finished it,
    answers "not current", and used to kill the process before it published the next task."""
    store = SlowBeats(current=False)
    beat = Heartbeat(store, "t1", 1, interval_s=0.01)  # type: ignore[arg-type]
    beat.start()
    assert store.called.wait(10)
    beat.stopped.set()  # the work ended; finish_attempt records the final status meanwhile
    store.release.set()
    beat.join(10)
    assert not beat.is_alive()
    assert kills == []
