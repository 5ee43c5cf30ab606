"""Service.dispatch's outcomes and what it costs: the store calls one delivery makes, counted
against a stated budget (a guard that does not depend on time), on the real local backends."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentfleet.local.queue import SqliteTaskQueue
from agentfleet.ports import Backends, DispatchMessage, TaskStore
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskStatus
from tests.test_service import backends_for

FILES = {"app.py": "print('hello')\n"}


class CountingStore:
    """The store, counting the port calls made through it."""

    def __init__(self, store: TaskStore) -> None:
        self.store, self.calls = store, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)
        if not callable(method):  # an attribute (counts_locally): not a call
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


@pytest.fixture
def backends(settings: Settings) -> Backends:
    return backends_for(settings, [sys.executable, "-c", "pass"])


@pytest.fixture
def submit(backends: Backends, settings: Settings, repo_factory: Callable[..., Path]) -> Callable[[], Task]:
    repo = str(repo_factory(FILES))
    return lambda: Service(backends, settings).submit({"query": "fix it", "repo_url": repo})[0]


def counted(backends: Backends, settings: Settings) -> tuple[Service, CountingStore]:
    store = CountingStore(backends.store)
    return Service(replace(backends, store=store), settings), store  # type: ignore[arg-type]


def message_for(task: Task, **fields: Any) -> DispatchMessage:
    return DispatchMessage(**{"task_id": task.id, "attempt": task.attempt, "workspace_id": task.workspace_id, **fields})


def statuses(backends: Backends, task: Task) -> list[str]:
    return [e.data["status"] for e in backends.store.events(task.id) if e.kind is EventKind.STATUS]


def test_a_redelivery_of_an_active_task_is_a_duplicate_in_one_store_call(
    backends: Backends, settings: Settings, submit: Callable[[], Task]
) -> None:
    task = submit()
    assert Service(backends, settings).dispatch(message_for(task)).action == "launched"
    service, store = counted(backends, settings)

    outcome = service.dispatch(message_for(task))

    assert (outcome.action, outcome.detail) == ("duplicate", "DISPATCHED attempt 1")  # its agent claims nothing
    assert outcome.execution is not None
    assert sum(store.calls.values()) == 1, store.calls


def test_a_delivery_for_an_unknown_task_or_an_old_attempt_says_so(
    backends: Backends, settings: Settings, submit: Callable[[], Task]
) -> None:
    task = submit()
    requeued = backends.store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.QUEUED, changes={"attempt": 2})
    assert requeued is not None
    service = Service(backends, settings)

    unknown = service.dispatch(message_for(task, task_id="no-such-task"))
    old = service.dispatch(message_for(task, attempt=1))

    assert (unknown.action, unknown.task_id) == ("unknown", "no-such-task")
    assert (old.action, old.detail) == ("duplicate", "QUEUED attempt 2")
    assert backends.store.get(task.id) == requeued
    assert statuses(backends, task) == ["QUEUED"]


def test_a_message_naming_another_workspace_gives_the_claim_back_and_publishes_the_task_again(
    backends: Backends, settings: Settings, submit: Callable[[], Task]
) -> None:
    task = submit()
    assert isinstance(backends.queue, SqliteTaskQueue)
    backends.queue.pull(max_messages=100, lease_s=3600)  # the submit's message: out of the way
    service = Service(backends, settings)

    outcome = service.dispatch(message_for(task, workspace_id="elsewhere-0123456789"))

    assert outcome.action == "waiting"
    assert backends.store.get(task.id).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    assert statuses(backends, task) == ["QUEUED", "DISPATCHED", "QUEUED"]
    [again] = backends.queue.pull(max_messages=100, lease_s=3600)
    assert DispatchMessage.model_validate_json(again.data) == message_for(task)
    assert service.dispatch(message_for(task)).action == "launched"


def test_a_launched_dispatch_makes_four_store_calls(
    backends: Backends, settings: Settings, submit: Callable[[], Task]
) -> None:
    """Budget 4: the workspace's active tasks, the claim with its event, the look after the claim
    (racing dispatches of one workspace), the execution noted. Before: 6 (get, count_active, the
    claim, count_active, the DISPATCHED event apart, one transition per live status to note the
    execution) — on Firestore 9 calls then, 6 now (tests/gcp/test_dispatch_rpcs.py)."""
    task = submit()
    service, store = counted(backends, settings)

    outcome = service.dispatch(message_for(task))

    assert outcome.action == "launched"
    assert store.calls == {"active": 2, "transition": 1, "update": 1}, store.calls
    assert backends.store.get(task.id).execution == outcome.execution  # type: ignore[union-attr]
    assert statuses(backends, task) == ["QUEUED", "DISPATCHED"]


def test_a_delivery_to_a_busy_workspace_waits_after_one_store_call(
    backends: Backends, settings: Settings, submit: Callable[[], Task]
) -> None:
    """Budget 1: the workspace's active tasks. Before: 2 (get, then count_active)."""
    first, second = submit(), submit()
    assert Service(backends, settings).dispatch(message_for(first)).action == "launched"
    service, store = counted(backends, settings)

    outcome = service.dispatch(message_for(second))

    assert outcome.action == "waiting"
    assert store.calls == {"active": 1}, store.calls
    assert backends.store.get(second.id).status is TaskStatus.QUEUED  # type: ignore[union-attr]
