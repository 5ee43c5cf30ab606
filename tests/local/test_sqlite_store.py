"""SqliteTaskStore beyond the contract: several processes on one file, the file's format, health."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentfleet.local.store import SqliteTaskStore
from agentfleet.tasks import EventKind, Task, TaskRequest, TaskStatus

EVENTS_PER_PROCESS = 100

# Each child opens its own store on the file, says "ready", waits for "go" on stdin (so both
# start together), races QUEUED → DISPATCHED, then appends its events.
CHILD = """
import json, sys
from pathlib import Path
from agentfleet.local.store import SqliteTaskStore
from agentfleet.tasks import EventKind, TaskStatus

path, task_id, writer, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = SqliteTaskStore(Path(path))
print("ready", flush=True)
sys.stdin.readline()
won = store.transition(task_id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED, attempt=1) is not None
seqs = [store.append_event(task_id, EventKind.LOG, {"writer": writer, "i": i}).seq for i in range(count)]
print(json.dumps({"won": won, "seqs": seqs}), flush=True)
"""


def new_task() -> Task:
    return Task(request=TaskRequest(query="fix the bug", repo_url="https://github.com/acme/widgets"))


def test_two_processes_on_one_file_lose_no_event_and_one_wins_the_transition(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    task, _ = store.create(new_task())
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), task.id, writer, str(EVENTS_PER_PROCESS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for writer in ("a", "b")
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # release both before waiting for either
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            child.kill()
    assert [child.returncode for child in children] == [0, 0]
    results = [json.loads(out) for out in outputs]

    assert sum(r["won"] for r in results) == 1
    stored = store.get(task.id)
    assert stored is not None and stored.status is TaskStatus.DISPATCHED
    assert sorted(results[0]["seqs"] + results[1]["seqs"]) == list(range(1, 2 * EVENTS_PER_PROCESS + 1))
    events = store.events(task.id)
    assert [e.seq for e in events] == list(range(1, 2 * EVENTS_PER_PROCESS + 1))
    for writer in ("a", "b"):
        assert [e.data["i"] for e in events if e.data["writer"] == writer] == list(range(EVENTS_PER_PROCESS))


def test_the_file_is_in_wal_mode_with_times_in_one_sortable_utc_format(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    task, _ = store.create(new_task())
    store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED)
    store.heartbeat(task.id, 1)
    store.append_event(task.id, EventKind.LOG, {"text": "hi"})

    with sqlite3.connect(path) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        times = conn.execute("SELECT created_at, updated_at, heartbeat_at FROM tasks").fetchone()
        times += conn.execute("SELECT ts FROM events").fetchone()

    assert mode == "wal"
    for value in times:
        assert len(value) == len("2025-01-01T00:00:00.000000+00:00") and value.endswith("+00:00"), value
    beaten = store.get(task.id)
    assert beaten is not None and beaten.heartbeat_at is not None


def test_health_reports_the_path_and_says_not_ok_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    store = SqliteTaskStore(path)
    assert store.health() == {"backend": "sqlite", "path": str(path), "ok": True, "tasks": 0}

    store.close()
    for leftover in tmp_path.glob("tasks.db*"):
        leftover.unlink()
    path.write_bytes(b"this is not a database" * 100)
    health = store.health()

    assert health["ok"] is False
    assert health["path"] == str(path)
    assert "error" in health


def test_a_stored_task_stays_readable_after_a_symlink_makes_its_two_repositories_one(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    request = TaskRequest(query="q", repos=[str(first), str(second)])
    store = SqliteTaskStore(tmp_path / "tasks.db")
    task, _ = store.create(Task(request=request))
    second.rmdir()
    second.symlink_to(first)  # the two paths now resolve to one repository

    read = store.get(task.id)
    moved = store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED)

    assert read is not None and read.request == request
    assert moved is not None and moved.status is TaskStatus.DISPATCHED
    with pytest.raises(ValueError, match="listed twice"):  # a new submission is refused: it can be fixed
        TaskRequest(query="q", repos=[str(first), str(second)])


def test_a_file_of_the_older_format_loses_the_indexes_this_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    task, _ = SqliteTaskStore(path).create(new_task())
    with sqlite3.connect(path) as conn:  # as the older format left it
        conn.execute("DROP INDEX tasks_followups")
        conn.execute("CREATE INDEX tasks_root ON tasks (json_extract(doc, '$.root_id'), created_at, id)")
        conn.execute("CREATE INDEX tasks_status_heartbeat ON tasks (status, heartbeat_at)")

    store = SqliteTaskStore(path)

    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"tasks_followups", "tasks_status_workspace", "tasks_created"} <= names
    assert not names & {"tasks_root", "tasks_status_heartbeat"}
    assert store.get(task.id) == task
