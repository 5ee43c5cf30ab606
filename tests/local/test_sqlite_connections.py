"""Regression guards, not timings: the SQLite connections the local backends open.

Budget: per backend object, one connection for all its writes (the writers take turns on it),
and one per thread that reads, each opened on first use; 0 more after them, whatever is written
(a fresh connection per write cost ~20 ms: the checkpoint the last connection to close runs). A
forked child opens its own and leaves the parent's alone.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from agentfleet.api import Api
from agentfleet.backends import build_backends
from agentfleet.local import sqlite
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.queue import SqliteTaskQueue
from agentfleet.ports import DispatchMessage
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.polling import wait_for

PER_THREAD_AFTER_WARM_UP = 0


class Opened:
    """Counts the connections agentfleet.local.sqlite opens, by (thread name, file name)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        real = sqlite.connect

        def counting(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
            self.counts[(threading.current_thread().name, Path(path).name)] += 1
            return real(path, check_same_thread=check_same_thread)

        monkeypatch.setattr(sqlite, "connect", counting)

    def total(self) -> int:
        return sum(self.counts.values())


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    return Opened(monkeypatch)


def message(n: int) -> DispatchMessage:
    return DispatchMessage(task_id=f"task{n}", attempt=1, workspace_id="ws-1")


def test_queue_writes_open_no_connection_after_a_threads_first(tmp_path: Path, opened: Opened) -> None:
    queue = SqliteTaskQueue(tmp_path / "queue.db", max_delivery_attempts=100)
    queue.publish(message(0)), queue.pending()  # warm-up: the write connection, this thread's
    opened.counts.clear()

    for n in range(1, 21):
        queue.publish(message(n))
        for delivery in queue.pull(max_messages=2, lease_s=30):
            if n % 3 == 0:
                queue.nack(delivery.message_id)
            elif n % 3 == 1:
                queue.dead_letter(delivery.message_id, "guard")
            else:
                queue.ack(delivery.message_id)
    queue.pending(), queue.dead_letters(), queue.health()

    assert opened.total() == PER_THREAD_AFTER_WARM_UP


def test_the_writing_threads_share_one_queue_connection_and_each_reader_keeps_one(
    tmp_path: Path, opened: Opened
) -> None:
    queue = SqliteTaskQueue(tmp_path / "queue.db")
    opened.counts.clear()

    def publish_many() -> None:
        for n in range(10):
            queue.publish(message(n))
        queue.pending()

    threads = [threading.Thread(target=publish_many, name=f"writer-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert {thread for thread, _ in opened.counts} == {f"writer-{i}" for i in range(4)}
    assert sorted(opened.counts.values()) == [1, 1, 1, 2]  # each one to read; the first writer the write one
    assert queue.pending() == 40


def test_job_runner_calls_open_no_connection_after_a_threads_first(
    settings: Settings, tmp_path: Path, opened: Opened
) -> None:
    runner = LocalJobRunner(settings, command=[sys.executable, "-c", "pass"], grace_s=0.5)
    tasks = [Task(request=TaskRequest(query="q", repo_url="https://github.com/acme/widgets")) for _ in range(6)]
    runner.list_active(), runner.cancel(runner.launch(tasks.pop()).name)  # warm-up: reads and writes
    opened.counts.clear()

    for task in tasks:
        execution = runner.launch(task)
        runner.launch(task)  # a repeated launch: the recorded execution
        runner.get(execution.name)
        runner.cancel(execution.name)
    runner.list_active(), runner.health()

    def ended() -> bool:
        return all(getattr(runner.get(f"agent-{t.workspace_id}-{t.id}-1"), "state", "") != "running" for t in tasks)

    wait_for(ended)

    mine = {key: n for key, n in opened.counts.items() if key[0] == threading.current_thread().name}
    assert mine == {}
    # Each process's watcher thread records its exit on the write connection: no more than one of its own.
    assert all(n <= 1 for n in opened.counts.values()), opened.counts


def test_a_forked_child_opens_its_own_connection_and_the_parents_still_works(tmp_path: Path) -> None:
    queue = SqliteTaskQueue(tmp_path / "queue.db")
    queue.publish(message(0))
    pid = os.fork()
    if pid == 0:  # the child: publish through the inherited object, then leave without cleanup
        try:
            queue.publish(message(1))
            os._exit(0 if queue.pending() == 2 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    queue.publish(message(2))
    assert queue.pending() == 3


def test_an_intake_request_opens_no_connection_after_the_first(tmp_path: Path, opened: Opened) -> None:
    config = Settings(home=tmp_path / "home", _env_file=None)  # type: ignore[call-arg]
    api = Api(Service(build_backends(config), config))
    body = {"query": "fix it", "repo_url": "https://github.com/acme/widgets"}
    assert api.call("POST", "/orchestrate", body)[0] == 202  # warm-up: this thread's connections
    opened.counts.clear()

    statuses = [api.call("POST", "/orchestrate", {**body, "query": f"fix {n}"})[0] for n in range(20)]

    assert statuses == [202] * 20
    assert opened.total() == PER_THREAD_AFTER_WARM_UP


STATEMENTS_PER_INTAKE = [
    "BEGIN IMMEDIATE",
    "INSERT INTO tasks",
    "INSERT INTO events",
    "COMMIT",
    "SELECT COUNT(*) FROM",
    "INSERT INTO messages",
]
"""Budget of one POST /orchestrate on the local backends: the task and its first event in one
transaction, the count of its workspace's active tasks (one indexed read: it is published only
when the workspace has room), then the dispatch message as one statement (its own transaction)."""


def test_an_intake_request_runs_its_budget_of_statements_and_a_dispatcher_page_two_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    real = sqlite.connect

    def traced(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
        conn = real(path, check_same_thread=check_same_thread)
        conn.set_trace_callback(lambda sql: statements.append(" ".join(sql.split()[:3])))
        return conn

    monkeypatch.setattr(sqlite, "connect", traced)
    config = Settings(home=tmp_path / "home", _env_file=None)  # type: ignore[call-arg]
    backends = build_backends(config)
    service = Service(backends, config)
    api = Api(service)
    body = {"query": "fix it", "repo_url": "https://github.com/acme/widgets"}
    assert api.call("POST", "/orchestrate", body)[0] == 202  # warm-up: the connections and their pragmas
    statements.clear()

    assert api.call("POST", "/orchestrate", {**body, "query": "fix again"})[0] == 202
    assert statements == STATEMENTS_PER_INTAKE

    queue = backends.queue
    assert isinstance(queue, SqliteTaskQueue)
    deliveries = queue.pull(max_messages=10, lease_s=30)
    statements.clear()
    queue.ack(*(d.message_id for d in deliveries))
    assert len(deliveries) == 2 and statements == ["DELETE FROM messages"], "a page is acked in one write"
