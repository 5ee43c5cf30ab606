"""The use cases against the real local backends: exactly-once dispatch, scheduling per
workspace, cancel, and the reaper — with the real agent entry point as the execution."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from agentfleet.errors import ConflictError
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.local.queue import SqliteTaskQueue
from agentfleet.local.store import SqliteTaskStore
from agentfleet.ports import Backends, DispatchMessage
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskStatus, utcnow
from agentfleet.testing.polling import wait_for
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

FILES = {"app.py": "print('hello')\n"}


def backends_for(settings: Settings, command: list[str] | None = None) -> Backends:
    settings.home.mkdir(parents=True, exist_ok=True)
    return Backends(
        store=SqliteTaskStore(settings.home / "tasks.db"),
        queue=SqliteTaskQueue(settings.home / "queue.db"),
        jobs=LocalJobRunner(settings, command=command, grace_s=2.0),
        artifacts=LocalArtifactStore(settings.artifacts_dir),
        memory=SqliteMemoryStore(settings.home / "memory.db"),
    )


def drain(service: Service, queue: SqliteTaskQueue) -> list[str]:
    """Feed every queued message to dispatch once, like the local dispatcher does."""
    outcomes = []
    for delivery in queue.pull(max_messages=100, lease_s=30):
        message = DispatchMessage.model_validate_json(delivery.data)
        outcomes.append(service.dispatch(message).action)
        queue.ack(delivery.message_id)
    return outcomes


@pytest.fixture
def idle_command() -> list[str]:
    """An execution that does nothing and exits: for tests of dispatch alone."""
    import sys

    return [sys.executable, "-c", "pass"]


def test_a_duplicate_delivery_launches_one_execution(repo_factory, settings, idle_command) -> None:
    backends = backends_for(settings, idle_command)
    service = Service(backends, settings)
    task, _ = service.submit({"query": "x", "repo_url": str(repo_factory(FILES))})
    message = DispatchMessage(task_id=task.id, attempt=1, workspace_id=task.workspace_id)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(service.dispatch(message).action)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("launched") == 1, results
    assert set(results) - {"launched"} <= {"duplicate", "waiting"}, "the others are no-ops"
    stored = backends.store.get(task.id)
    assert stored and stored.status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING) and stored.execution


def test_a_second_task_on_a_busy_workspace_waits_then_runs(repo_factory, settings, idle_command) -> None:
    backends = backends_for(settings, idle_command)
    service = Service(backends, settings)
    repo = str(repo_factory(FILES))
    first, _ = service.submit({"query": "one", "repo_url": repo})
    second, _ = service.submit({"query": "two", "repo_url": repo})
    assert sorted(drain(service, backends.queue)) == ["launched", "waiting"]
    assert backends.store.get(second.id).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    backends.store.transition(first.id, [TaskStatus.DISPATCHED], TaskStatus.SUCCEEDED)
    assert service.schedule_next(first.workspace_id)
    assert drain(service, backends.queue) == ["launched"]


def test_a_task_stored_while_its_workspace_is_busy_is_published_when_the_running_one_ends(
    repo_factory, settings, idle_command
) -> None:
    """It is not published at submission (its delivery would only find the workspace busy); the
    finish of the task ahead of it publishes it, and that delivery runs it."""
    backends = backends_for(settings, idle_command)
    service = Service(backends, settings)
    queue = backends.queue
    assert isinstance(queue, SqliteTaskQueue)
    repo = str(repo_factory(FILES))
    first, _ = service.submit({"query": "one", "repo_url": repo})
    assert drain(service, queue) == ["launched"]
    second, _ = service.submit({"query": "two", "repo_url": repo})
    assert drain(service, queue) == [], "nothing published while the workspace is busy"
    assert backends.store.get(second.id).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    running = service.start_attempt(first.id)
    assert running is not None
    assert service.finish_attempt(running, running.model_copy(update={"status": TaskStatus.SUCCEEDED}))
    assert drain(service, queue) == ["launched"]
    assert backends.store.get(second.id).status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)  # type: ignore[union-attr]


def test_a_task_whose_workspace_cannot_be_counted_is_published(repo_factory, settings, idle_command) -> None:
    """The count after storing it fails (the store is unreachable for a moment): it is published
    anyway, so it is never left QUEUED with no message until the reaper's pass."""
    backends = backends_for(settings, idle_command)
    repo = str(repo_factory(FILES))
    Service(backends, settings).submit({"query": "one", "repo_url": repo})
    assert drain(Service(backends, settings), backends.queue) == ["launched"]

    class CountFails:
        def __getattr__(self, name: str) -> object:
            return getattr(backends.store, name)

        def count_active(self, workspace_id: str) -> int:
            raise ConnectionError("the store is unreachable")

    flaky = Service(replace(backends, store=CountFails()), settings)  # type: ignore[arg-type]
    second, created = flaky.submit({"query": "two", "repo_url": repo})
    assert created and backends.store.get(second.id).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    assert drain(Service(backends, settings), backends.queue) == ["waiting"], "published: its delivery came"


def test_on_a_store_that_counts_over_the_network_a_busy_workspace_s_task_is_published_uncounted(
    repo_factory, settings, idle_command
) -> None:
    """Firestore's count is a round trip (counts_locally False): intake does not pay it, and the
    busy workspace's delivery is dropped at dispatch instead."""
    backends = backends_for(settings, idle_command)
    repo = str(repo_factory(FILES))
    Service(backends, settings).submit({"query": "one", "repo_url": repo})
    assert drain(Service(backends, settings), backends.queue) == ["launched"]
    counted: list[str] = []

    class RemoteCounts:
        counts_locally = False

        def __getattr__(self, name: str) -> object:
            return getattr(backends.store, name)

        def count_active(self, workspace_id: str) -> int:
            counted.append(workspace_id)
            return backends.store.count_active(workspace_id)

    remote = Service(replace(backends, store=RemoteCounts()), settings)  # type: ignore[arg-type]
    remote.submit({"query": "two", "repo_url": repo})
    assert counted == [], "intake made no count"
    assert drain(remote, backends.queue) == ["waiting"], "published, and dropped at dispatch"


def test_an_attempt_starts_once_and_a_finish_after_a_cancel_records_nothing(
    repo_factory, settings, idle_command
) -> None:
    service = Service(backends_for(settings, idle_command), settings)
    task, _ = service.submit({"query": "x", "repo_url": str(repo_factory(FILES))})
    assert service.start_attempt(task.id) is None, "QUEUED: not dispatched yet"
    service.store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED, attempt=1)
    assert service.start_attempt(task.id, attempt=2) is None, "another attempt"
    running = service.start_attempt(task.id)
    assert running is not None and running.status is TaskStatus.RUNNING and running.heartbeat_at is not None
    assert service.start_attempt(task.id) is None, "a second execution of the attempt does nothing"
    service.cancel(task.id)
    done = running.model_copy(update={"status": TaskStatus.SUCCEEDED})
    assert service.finish_attempt(running, done) is False
    statuses = [e.data["status"] for e in service.events(task.id) if e.kind is EventKind.STATUS]
    assert statuses == ["QUEUED", "RUNNING", "CANCELLED"] and service.task(task.id).status is TaskStatus.CANCELLED


def test_cancelling_a_finished_task_is_a_conflict(repo_factory, settings, idle_command) -> None:
    service = Service(backends_for(settings, idle_command), settings)
    task, _ = service.submit({"query": "x", "repo_url": str(repo_factory(FILES))})
    assert service.cancel(task.id).status is TaskStatus.CANCELLED
    with pytest.raises(ConflictError, match="is CANCELLED"):
        service.cancel(task.id)


def test_the_reaper_requeues_a_silent_task_then_fails_it_after_the_last_attempt(repo_factory, settings) -> None:
    configured = settings.model_copy(update={"max_attempts": 2, "heartbeat_timeout_s": 5})
    backends = backends_for(configured, ["true"])
    service = Service(backends, configured)
    task, _ = service.submit({"query": "x", "repo_url": str(repo_factory(FILES))})
    drain(service, backends.queue)
    old = utcnow() - timedelta(seconds=60)
    backends.store.transition(
        task.id, [TaskStatus.DISPATCHED], TaskStatus.RUNNING, changes={"heartbeat_at": old, "updated_at": old}
    )
    report = service.reap()
    assert report.requeued == [task.id]
    requeued = backends.store.get(task.id)
    assert requeued and requeued.status is TaskStatus.QUEUED and requeued.attempt == 2
    assert drain(service, backends.queue) == ["launched"]
    backends.store.transition(
        task.id, [TaskStatus.DISPATCHED], TaskStatus.RUNNING, changes={"heartbeat_at": old, "updated_at": old}
    )
    assert service.reap().failed == [task.id]
    failed = backends.store.get(task.id)
    assert failed and failed.status is TaskStatus.FAILED
    assert failed.error and "no heartbeat" in failed.error and "attempt 2 of 2" in failed.error


def agent_pids(task_id: str) -> list[int]:
    """The agent processes working on `task_id`, found by their command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").split()
        except (OSError, ValueError):
            continue
        # one argument each, or (forked by the warm launcher) one title that reads the same
        if b"agentfleet.agent" in cmdline and task_id.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def agent_settings(settings: Settings, llm_url: str, **changes: object) -> Settings:
    return settings.model_copy(update={"gpt_oss_url": llm_url, "heartbeat_interval_s": 0.5, **changes})


def test_a_submitted_task_runs_in_its_own_agent_process_to_success(repo_factory, settings, monkeypatch) -> None:
    script = [reply(None, tool_call("exec", {"command": "python3 app.py"})), reply("It prints hello.")]
    with ScriptedLLM(script) as llm:
        configured = agent_settings(settings, llm.url)
        monkeypatch.setenv("GPT_OSS_URL", llm.url)
        monkeypatch.setenv("AGENTFLEET_HOME", str(settings.home))
        backends = backends_for(configured)
        service = Service(backends, configured)
        task, _ = service.submit({"query": "What does app.py print?", "repo_url": str(repo_factory(FILES))})
        assert drain(service, backends.queue) == ["launched"]
        wait_for(lambda: backends.store.get(task.id).status.final, what="the task to end")  # type: ignore[union-attr]
    final = backends.store.get(task.id)
    assert final and final.status is TaskStatus.SUCCEEDED, final.error if final else None
    assert final.result and final.result.summary == "It prints hello."
    events = backends.store.events(task.id)
    statuses = [e.data["status"] for e in events if e.kind.value == "status"]
    assert statuses == ["QUEUED", "DISPATCHED", "RUNNING", "SUCCEEDED"]
    assert any(e.kind.value == "tool_result" and "hello" in e.data["output"] for e in events)


def test_an_agent_killed_mid_task_is_retried_by_the_reaper(repo_factory, settings, monkeypatch, tmp_path) -> None:
    slow = reply(None, tool_call("exec", {"command": "sleep 600"}))
    script = [slow, reply(None, tool_call("exec", {"command": "echo second"})), reply("done on retry")]
    with ScriptedLLM(script) as llm:
        configured = agent_settings(settings, llm.url, heartbeat_timeout_s=2.0, max_attempts=2)
        monkeypatch.setenv("GPT_OSS_URL", llm.url)
        monkeypatch.setenv("AGENTFLEET_HOME", str(settings.home))
        monkeypatch.setenv("AGENTFLEET_HEARTBEAT_INTERVAL_S", "0.5")
        backends = backends_for(configured)
        service = Service(backends, configured)
        task, _ = service.submit({"query": "x", "repo_url": str(repo_factory(FILES))})
        drain(service, backends.queue)
        wait_for(lambda: len(llm.requests) >= 1, what="the first model request")
        [pid] = agent_pids(task.id)
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: not backends.jobs.list_active(), what="the agent to die")
        wait_for(lambda: bool(service.reap().requeued), timeout_s=30, what="the reaper to requeue")
        assert backends.store.get(task.id).attempt == 2  # type: ignore[union-attr]
        assert drain(service, backends.queue) == ["launched"]
        wait_for(lambda: backends.store.get(task.id).status.final, what="the retry to end")  # type: ignore[union-attr]
    final = backends.store.get(task.id)
    assert final and final.status is TaskStatus.SUCCEEDED and final.attempt == 2
    assert final.result and final.result.summary == "done on retry"


class _DownQueue:
    """A queue that cannot be reached (until `up` is set), in front of the real local one."""

    def __init__(self, queue: SqliteTaskQueue) -> None:
        self.queue, self.up = queue, False

    def publish(self, message: DispatchMessage) -> str:
        if not self.up:
            raise ConnectionError("the queue is unreachable")
        return self.queue.publish(message)

    def health(self) -> dict[str, object]:
        return {"ok": self.up}


def test_a_task_whose_publish_fails_stays_queued_and_the_reaper_publishes_it_later(
    settings: Settings, repo_factory: Callable[..., Path], idle_command: list[str]
) -> None:
    real = backends_for(settings, idle_command)
    assert isinstance(real.queue, SqliteTaskQueue)
    down = _DownQueue(real.queue)
    service = Service(replace(real, queue=down), settings)
    task, created = service.submit({"query": "q", "repo_url": str(repo_factory(FILES))})
    assert created and real.store.get(task.id).status is TaskStatus.QUEUED
    assert drain(service, real.queue) == []
    down.up = True
    assert service.reap().rescheduled == [task.workspace_id]
    assert drain(service, real.queue) == ["launched"]


class _StaleFirstLook:
    """The store, except that its first `active` answers none: as if another dispatch of the
    workspace claimed between this dispatch's look and its claim."""

    def __init__(self, store: SqliteTaskStore) -> None:
        self.store, self.stale = store, True

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def active(self, workspace_id: str) -> list[Task]:
        if self.stale:
            self.stale = False
            return []
        return self.store.active(workspace_id)


def test_a_dispatch_that_raced_past_the_workspace_limit_gives_the_slot_back(
    repo_factory: Callable[..., Path], settings: Settings, idle_command: list[str]
) -> None:
    real = backends_for(settings, idle_command)
    assert isinstance(real.store, SqliteTaskStore)
    repo = str(repo_factory(FILES))
    first, _ = Service(real, settings).submit({"query": "one", "repo_url": repo})
    second, _ = Service(real, settings).submit({"query": "two", "repo_url": repo})
    real.store.transition(first.id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED, attempt=1)  # claimed first
    racing = Service(replace(real, store=_StaleFirstLook(real.store)), settings)  # type: ignore[arg-type]
    outcome = racing.dispatch(DispatchMessage(task_id=second.id, attempt=1, workspace_id=second.workspace_id))
    assert outcome.action == "waiting"
    assert real.store.get(second.id).status is TaskStatus.QUEUED  # type: ignore[union-attr]
    assert [e.name for e in real.jobs.list_active() if e.task_id == second.id] == []


def test_a_slot_given_back_after_the_winner_ended_wakes_the_workspace(
    repo_factory: Callable[..., Path], settings: Settings, idle_command: list[str]
) -> None:
    """The winner ends while the loser's claim still counts, so the winner's schedule_next finds
    no room; the loser, giving its slot back, publishes the workspace's next task itself."""
    real = backends_for(settings, idle_command)
    assert isinstance(real.store, SqliteTaskStore)
    repo = str(repo_factory(FILES))
    first, _ = Service(real, settings).submit({"query": "one", "repo_url": repo})
    second, _ = Service(real, settings).submit({"query": "two", "repo_url": repo})
    real.queue.pull(max_messages=100, lease_s=3600)  # the two submit messages: out of the way
    real.store.transition(first.id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED, attempt=1)  # the winner

    class WinnerEndsMidRace(_StaleFirstLook):
        def active(self, workspace_id: str) -> list[Task]:
            if self.stale:
                return super().active(workspace_id)
            listed = self.store.active(workspace_id)  # the look after the claim: both claims
            if real.store.transition(first.id, [TaskStatus.DISPATCHED], TaskStatus.SUCCEEDED):
                assert not Service(real, settings).schedule_next(first.workspace_id)  # no room: the loser counts
            return listed

    racing = Service(replace(real, store=WinnerEndsMidRace(real.store)), settings)  # type: ignore[arg-type]
    outcome = racing.dispatch(DispatchMessage(task_id=second.id, attempt=1, workspace_id=second.workspace_id))
    assert outcome.action == "waiting"
    assert drain(Service(real, settings), real.queue) == ["launched"]
    assert real.store.get(second.id).status in (TaskStatus.DISPATCHED, TaskStatus.RUNNING)  # type: ignore[union-attr]


def test_concurrent_dispatches_of_one_workspace_launch_at_most_its_limit(
    repo_factory: Callable[..., Path], settings: Settings, idle_command: list[str]
) -> None:
    backends = backends_for(settings, idle_command)
    service = Service(backends, settings)
    repo = str(repo_factory(FILES))
    tasks = [service.submit({"query": f"t{i}", "repo_url": repo})[0] for i in range(3)]
    barrier = threading.Barrier(len(tasks))
    outcomes: list[str] = []

    def dispatch(task_id: str, workspace: str) -> None:
        barrier.wait()
        outcomes.append(service.dispatch(DispatchMessage(task_id=task_id, attempt=1, workspace_id=workspace)).action)

    threads = [threading.Thread(target=dispatch, args=(t.id, t.workspace_id)) for t in tasks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("launched") == 1, outcomes
    statuses = [backends.store.get(t.id).status for t in tasks]  # type: ignore[union-attr]
    assert statuses.count(TaskStatus.QUEUED) == 2
