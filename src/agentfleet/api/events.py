"""A task's events over HTTP: pages of JSON, and a Server-Sent Events stream that polls the store.

A task is *settled* when it has ended and `settle_s` has passed since: the final status event is
stored with the final transition, but an agent cancelled or reaped mid-step may still append its
last events until its process stops, so "ended" alone could still miss them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from agentfleet.api.bodies import EventPage
from agentfleet.tasks import Task, TaskEvent, utcnow

PAGE = 1000


class Events(Protocol):
    """Where a task and its events are read (the service)."""

    def get(self, task_id: str) -> Task | None: ...

    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]: ...


@dataclass(frozen=True)
class StreamConfig:
    poll_s: float = 0.25
    """How often the stream looks for new events."""
    keepalive_s: float = 15.0
    """Silence after which the stream sends a `: keep-alive` comment."""
    settle_s: float = 1.0
    """How long after a task ended its last events may still arrive."""


def settled(task: Task | None, settle_s: float) -> bool:
    if task is None:
        return True
    if not task.status.final:
        return False
    ended = task.finished_at or task.updated_at
    return utcnow() - ended >= timedelta(seconds=settle_s)


def event_page(store: Events, task: Task, after: int, limit: int, settle_s: float) -> EventPage:
    """Events with seq > after; `final` once the task settled and nothing is left to read."""
    done = settled(task, settle_s)  # read before the events: an event appended later is not missed
    events = store.events(task.id, after=after, limit=limit)
    next_after = events[-1].seq if events else after
    return EventPage(events=events, next_after=next_after, final=done and len(events) < limit)


def format_event(event: TaskEvent) -> str:
    return f"id: {event.seq}\nevent: {event.kind.value}\ndata: {event.model_dump_json()}\n\n"


def format_end(task: Task | None, last_seq: int) -> str:
    data = {"status": task.status.value if task else None, "last_seq": last_seq}
    return f"event: end\ndata: {json.dumps(data)}\n\n"


def event_stream(
    store: Events,
    task_id: str,
    after: int,
    config: StreamConfig,
    render: Callable[[TaskEvent], str] = format_event,
) -> Iterator[str]:
    """Every event after `after`, in order, as SSE (each as `render` writes it: the API's JSON, or
    the console's HTML); then `event: end` once the task settled."""
    quiet_since = time.monotonic()
    while True:
        task = store.get(task_id)
        done = settled(task, config.settle_s)
        events = store.events(task_id, after=after, limit=PAGE)
        for event in events:
            yield render(event)
            after = event.seq
        if events:
            quiet_since = time.monotonic()
            if len(events) == PAGE:
                continue
        elif done:
            yield format_end(task, after)
            return
        elif time.monotonic() - quiet_since >= config.keepalive_s:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        time.sleep(config.poll_s)
