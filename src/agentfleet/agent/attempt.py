"""`python -m agentfleet.agent`: one execution of the agent for one attempt of one task.

The use cases are the service's (`start_attempt`: DISPATCHED→RUNNING, or nothing when this
attempt is no longer current; `finish_attempt`: the final status, then the workspace's next task);
here are the process's parts: arguments, logging, heartbeats while the work runs, every event
appended to the store. A job exits non-zero only when a retry could help.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from agentfleet.backends import build_backends
from agentfleet.logs import configure_logging
from agentfleet.ports import ATTEMPT_ENV, TASK_ID_ENV, Backends, TaskStore
from agentfleet.runtime.sandbox import kill_all
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, TaskEvent

logger = logging.getLogger("agentfleet.agent")


class Heartbeat(threading.Thread):
    """Beats while the attempt is current; when it is not (cancelled, requeued), ends the process.
    A beat still in flight when the work stops ends nothing: it may find the attempt finished by
    this process itself, which must still record what comes after (the workspace's next task)."""

    def __init__(self, store: TaskStore, task_id: str, attempt: int, interval_s: float) -> None:
        super().__init__(daemon=True, name="heartbeat")
        self.store, self.task_id, self.attempt, self.interval_s = store, task_id, attempt, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                current = self.store.heartbeat(self.task_id, self.attempt)
            except (ConnectionError, TimeoutError) as exc:  # the store is away: try again at the next beat
                logger.warning("heartbeat failed: %s", exc, extra={"task_id": self.task_id})
                continue
            if self.stopped.is_set():  # the work ended during the beat: the ending is this attempt's own
                return
            if not current:
                logger.warning("attempt is no longer current; stopping", extra={"task_id": self.task_id})
                os.killpg(os.getpgrp(), signal.SIGTERM)
                return


def run_attempt(task_id: str, attempt: int | None, settings: Settings, backends: Backends) -> int:
    """Claim the attempt, work it with heartbeats, record how it ended. 0 unless a retry could help."""
    service = Service(backends, settings)
    running = service.start_attempt(task_id, attempt)
    if running is None:
        logger.info(
            "attempt %s is not dispatched here; nothing to do", attempt or "current", extra={"task_id": task_id}
        )
        return 0
    beat = Heartbeat(backends.store, task_id, running.attempt, settings.heartbeat_interval_s)
    beat.start()

    def to_store(event: TaskEvent) -> None:
        if event.kind is not EventKind.STATUS:  # status events are written with the transitions
            backends.store.append_event(task_id, event.kind, event.data)

    try:
        # Imported after the claim: the model client and MCP stack take over a second to load,
        # and the task shows RUNNING (and heartbeats) while they do.
        from agentfleet.agent.work import work_task

        final = work_task(running, settings, backends.artifacts, listeners=[to_store], memory=backends.memory)
    finally:
        beat.stopped.set()
    service.finish_attempt(running, final)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentfleet.agent")
    parser.add_argument("--task-id", default=os.environ.get(TASK_ID_ENV))
    parser.add_argument("--attempt", type=int, default=int(os.environ.get(ATTEMPT_ENV, "0")) or None)
    args = parser.parse_args(argv)
    if not args.task_id:
        parser.error(f"--task-id (or {TASK_ID_ENV}) is required")
    configure_logging()
    signal.signal(signal.SIGTERM, _terminated)
    settings = Settings()
    return run_attempt(args.task_id, args.attempt, settings, build_backends(settings))


def _terminated(*_: object) -> None:
    """SIGTERM (a cancel, a requeue, the attempt no longer current): the commands this process
    runs (setup) go with it; the workspace server sees its owner end and stops its own."""
    kill_all()
    os._exit(128 + signal.SIGTERM)
