"""What one dispatch costs on Firestore: the RPCs Service.dispatch makes through a FirestoreTaskStore
against the emulator, counted on the client's API object, against a stated budget (a guard that
does not depend on time). The store is fresh, as in a dispatch function instance that has never
seen the task: it knows neither the task's version nor its last event seq."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentfleet.gcp.store import FirestoreTaskStore
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.local.queue import SqliteTaskQueue
from agentfleet.ports import Backends, DispatchMessage
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskRequest, TaskStatus

RPCS = ("batch_get_documents", "begin_transaction", "commit", "get_document", "run_aggregation_query", "run_query")


def counting_rpcs(store: FirestoreTaskStore) -> Counter[str]:
    """Count the Firestore RPCs made through `store`'s client from now on."""
    calls: Counter[str] = Counter()
    api = store.client._firestore_api  # the client's one generated API object: every call passes here

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return method(*args, **kwargs)

        return call

    for name in RPCS:
        setattr(api, name, counted(name, getattr(api, name)))
    return calls


@pytest.fixture
def dispatcher(gcp_settings: Settings, tmp_path: Path) -> Callable[[], tuple[Service, Counter[str]]]:
    """A fresh dispatch function's service: its own Firestore store (RPCs counted), local rest."""

    def make() -> tuple[Service, Counter[str]]:
        store = FirestoreTaskStore.from_settings(gcp_settings)
        backends = Backends(
            store=store,
            queue=SqliteTaskQueue(tmp_path / "queue.db"),
            jobs=LocalJobRunner(gcp_settings, command=[sys.executable, "-c", "pass"], grace_s=2.0),
            artifacts=LocalArtifactStore(tmp_path / "artifacts"),
            memory=SqliteMemoryStore(tmp_path / "memory.db"),
        )
        calls = counting_rpcs(store)
        return Service(backends, gcp_settings), calls

    return make


def stored(gcp_settings: Settings, repo: str = "https://github.com/acme/widgets") -> Task:
    """A QUEUED task with its first event, stored by another process (the orchestrate function)."""
    task = Task(request=TaskRequest(query="fix it", repo_url=repo))
    FirestoreTaskStore.from_settings(gcp_settings).create(task, event=(EventKind.STATUS, {"status": "QUEUED"}))
    return task


def message_for(task: Task) -> DispatchMessage:
    return DispatchMessage(task_id=task.id, attempt=task.attempt, workspace_id=task.workspace_id)


def test_a_launched_dispatch_makes_six_firestore_calls(gcp_settings: Settings, dispatcher: Callable) -> None:
    """Budget 6: the active query; the claim: a read, the last-seq query, one commit (task and
    event); the active query after the claim; the execution noted: one commit on the claim's
    version. Before: 9 (a read; a count; a read and an update; a count; the last-seq query and
    the event's create; a read and an update to note the execution)."""
    task = stored(gcp_settings)
    service, calls = dispatcher()

    outcome = service.dispatch(message_for(task))

    assert outcome.action == "launched"
    assert calls == {"run_query": 3, "batch_get_documents": 1, "commit": 2}, calls
    check = FirestoreTaskStore.from_settings(gcp_settings)
    assert check.get(task.id).execution == outcome.execution  # type: ignore[union-attr]
    assert [e.data["status"] for e in check.events(task.id)] == ["QUEUED", "DISPATCHED"]


def test_a_delivery_to_a_busy_workspace_makes_one_firestore_call(gcp_settings: Settings, dispatcher: Callable) -> None:
    """Budget 1: the active query. Before: 2 (a read of the task, then a count)."""
    first, second = stored(gcp_settings), stored(gcp_settings)
    assert dispatcher()[0].dispatch(message_for(first)).action == "launched"
    service, calls = dispatcher()

    outcome = service.dispatch(message_for(second))

    assert outcome.action == "waiting"
    assert calls == {"run_query": 1}, calls
    check = FirestoreTaskStore.from_settings(gcp_settings).get(second.id)
    assert check is not None and check.status is TaskStatus.QUEUED
