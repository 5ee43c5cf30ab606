"""TaskStore on a SQLite file, shared by threads and processes (the local stand-in for Firestore).

The API's server threads, the dispatcher and the reaper use one store object; the agent
processes open their own on the same file to write events and heartbeats. So: WAL mode, a
busy timeout, a connection per reading thread and one for the writes (sqlite.ThreadConnections),
and every write is one `BEGIN IMMEDIATE` transaction, which takes the database's write lock before it reads. A
compare-and-set read inside it cannot be overtaken by another thread or process.

The full Task is kept as its JSON (`doc`); the columns beside it are copies of the fields the
queries filter and sort on. Datetimes are ISO-8601 UTC strings in one fixed format (microseconds,
+00:00), so comparing the strings compares the times.

Each index is one page more that every insert (and status change) writes to the WAL: `stale`
finds the few live tasks by status (tasks_status_workspace), and only follow-ups are in the
follow-up index (partial: a first task's root_id is null). An older file loses the indexes these
replaced when it is opened.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentfleet.local import sqlite
from agentfleet.tasks import LIVE, STORED, EventKind, Task, TaskEvent, TaskStatus, apply_transition, utcnow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    workspace_id TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    heartbeat_at TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status_workspace ON tasks (status, workspace_id);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at, id);
CREATE INDEX IF NOT EXISTS tasks_followups ON tasks (json_extract(doc, '$.root_id'), created_at, id)
    WHERE json_extract(doc, '$.root_id') IS NOT NULL;
DROP INDEX IF EXISTS tasks_status_heartbeat;
DROP INDEX IF EXISTS tasks_root;
CREATE TABLE IF NOT EXISTS events (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
"""


def iso(value: datetime) -> str:
    """The one stored form of a datetime: UTC, microseconds, +00:00 (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def _task(row: sqlite3.Row) -> Task:
    return Task.model_validate_json(row["doc"], context=STORED)


def _columns(task: Task) -> tuple[Any, ...]:
    """The queried copies of the task's fields, then its JSON, in the table's column order."""
    return (
        task.status.value,
        task.attempt,
        task.workspace_id,
        task.request.idempotency_key,
        iso(task.created_at),
        iso(task.updated_at),
        _iso_or_none(task.heartbeat_at),
        task.model_dump_json(),
    )


class SqliteTaskStore(sqlite.ThreadConnections):
    counts_locally = True  # an indexed read of this file: the service publishes only a task with room

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    # --- tasks ---------------------------------------------------------------------------

    def create(self, task: Task, *, event: tuple[EventKind, dict[str, Any]] | None = None) -> tuple[Task, bool]:
        key = task.request.idempotency_key
        with self._write() as conn:
            if key is not None:
                row = conn.execute("SELECT doc FROM tasks WHERE idempotency_key = ?", (key,)).fetchone()
                if row is not None:
                    return _task(row), False
            try:  # the primary key refuses a taken id (the idempotency key was looked up above)
                conn.execute(
                    "INSERT INTO tasks (id, status, attempt, workspace_id, idempotency_key, created_at, updated_at,"
                    " heartbeat_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (task.id, *_columns(task)),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"a task with id {task.id!r} already exists") from None
            if event is not None:  # a new task's first event (seq 1)
                self._insert_event(conn, TaskEvent(task_id=task.id, seq=0, kind=event[0], data=event[1]))
        return task, True

    def get(self, task_id: str) -> Task | None:
        row = self._conn().execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else _task(row)

    def list_tasks(
        self, *, status: TaskStatus | None = None, workspace_id: str | None = None, limit: int = 100
    ) -> list[Task]:
        """Newest first (created_at, then id, descending)."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(TaskStatus(status).value)
        if workspace_id is not None:
            where.append("workspace_id = ?")
            params.append(workspace_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn().execute(
            f"SELECT doc FROM tasks {clause} ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit)
        )
        return [_task(row) for row in rows.fetchall()]

    def followups(self, root_id: str, limit: int = 1000) -> list[Task]:
        """Oldest first (created_at, then id); `root_id` is read from the stored task itself."""
        rows = self._conn().execute(
            "SELECT doc FROM tasks WHERE json_extract(doc, '$.root_id') = ? ORDER BY created_at, id LIMIT ?",
            (root_id, limit),
        )
        return [_task(row) for row in rows.fetchall()]

    def transition(
        self,
        task_id: str,
        expected: Collection[TaskStatus],
        new: TaskStatus,
        *,
        attempt: int | None = None,
        changes: dict[str, Any] | None = None,
        event: tuple[EventKind, dict[str, Any]] | None = None,
    ) -> Task | None:
        """Set `new` (and `changes`) iff the status is in `expected` and, when given, the attempt
        matches; None (and nothing changed) when it does not apply or the task is unknown.
        Raises ValueError, storing nothing, when the changed task would be invalid. `event` is
        inserted in the same transaction."""
        return self._change(task_id, expected, new, attempt, changes or {}, event)

    def update(
        self, task_id: str, expected: Collection[TaskStatus], *, attempt: int, changes: dict[str, Any]
    ) -> Task | None:
        """Set `changes` iff the status is in `expected` and the attempt matches; the status stays."""
        return self._change(task_id, expected, None, attempt, changes, None)

    def _change(
        self,
        task_id: str,
        expected: Collection[TaskStatus],
        new: TaskStatus | None,
        attempt: int | None,
        changes: dict[str, Any],
        event: tuple[EventKind, dict[str, Any]] | None,
    ) -> Task | None:
        """The compare-and-set of `transition` and `update` (`new` None: the status stays)."""
        allowed = {TaskStatus(s).value for s in expected}
        with self._write() as conn:
            row = conn.execute("SELECT status, attempt, doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None or row["status"] not in allowed or (attempt is not None and row["attempt"] != attempt):
                return None
            current = _task(row)
            task = apply_transition(current, TaskStatus(new or current.status), changes)
            conn.execute(
                "UPDATE tasks SET status = ?, attempt = ?, workspace_id = ?, idempotency_key = ?, created_at = ?,"
                " updated_at = ?, heartbeat_at = ?, doc = ? WHERE id = ?",
                (*_columns(task), task_id),
            )
            if event is not None:
                self._insert_event(conn, TaskEvent(task_id=task_id, seq=0, kind=event[0], data=event[1]))
        return task

    def heartbeat(self, task_id: str, attempt: int) -> bool:
        """Record that the attempt is alive; False when the task moved on (cancelled, requeued)."""
        now = iso(utcnow())
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET heartbeat_at = ?, doc = json_set(doc, '$.heartbeat_at', ?)"
                " WHERE id = ? AND attempt = ? AND status IN (?, ?)",
                (now, now, task_id, attempt, *LIVE),
            )
        return cursor.rowcount == 1

    def stale(self, older_than: datetime) -> list[Task]:
        """DISPATCHED or RUNNING tasks whose last heartbeat (or change, before the first) is older."""
        rows = self._conn().execute(
            "SELECT doc FROM tasks WHERE status IN (?, ?) AND COALESCE(heartbeat_at, updated_at) < ?"
            " ORDER BY created_at, id",
            (*LIVE, iso(older_than)),
        )
        return [_task(row) for row in rows.fetchall()]

    def count_active(self, workspace_id: str) -> int:
        row = (
            self._conn()
            .execute("SELECT COUNT(*) FROM tasks WHERE workspace_id = ? AND status IN (?, ?)", (workspace_id, *LIVE))
            .fetchone()
        )
        return int(row[0])

    def active(self, workspace_id: str) -> list[Task]:
        rows = self._conn().execute(
            "SELECT doc FROM tasks WHERE workspace_id = ? AND status IN (?, ?)", (workspace_id, *LIVE)
        )
        return [_task(row) for row in rows.fetchall()]

    # --- events --------------------------------------------------------------------------

    def append_event(self, task_id: str, kind: EventKind, data: dict[str, Any]) -> TaskEvent:
        """Append an event with the next `seq` (1, 2, …) for the task."""
        with self._write() as conn:
            return self._insert_event(conn, TaskEvent(task_id=task_id, seq=0, kind=kind, data=data))

    @staticmethod
    def _insert_event(conn: sqlite3.Connection, event: TaskEvent) -> TaskEvent:
        """Store the event with the task's next seq; the event as stored."""
        stored = event.model_dump(mode="json")
        row = conn.execute(
            "INSERT INTO events (task_id, seq, ts, kind, data)"
            " SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM events WHERE task_id = ? RETURNING seq",
            (event.task_id, iso(event.ts), stored["kind"], json.dumps(stored["data"]), event.task_id),
        ).fetchone()
        return event.model_copy(update={"seq": row["seq"], "data": stored["data"]})

    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        """Events with seq > after, in order."""
        rows = self._conn().execute(
            "SELECT seq, ts, kind, data FROM events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (task_id, after, limit),
        )
        return [
            TaskEvent(
                task_id=task_id,
                seq=row["seq"],
                ts=datetime.fromisoformat(row["ts"]),
                kind=EventKind(row["kind"]),
                data=json.loads(row["data"]),
            )
            for row in rows.fetchall()
        ]

    # --- health --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Backend, path, whether the database answers and how many tasks it holds; never raises."""
        report: dict[str, Any] = {"backend": "sqlite", "path": str(self.path), "ok": False, "tasks": None}
        try:
            row = self._conn().execute("SELECT COUNT(*) FROM tasks").fetchone()
        except (sqlite3.Error, OSError) as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            return report
        report.update(ok=True, tasks=int(row[0]))
        return report
