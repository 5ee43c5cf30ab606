"""TaskStore on Firestore: tasks as documents, events in a subcollection per task.

`{collection}/{task_id}` holds a TaskDoc: the Task's JSON form under `task`, beside it copies of
the fields the queries filter and sort on, as native Firestore types (`alive_at` is the last sign
of life: heartbeat_at, or updated_at before the first heartbeat). Reading checks the copies
against the task, so a document someone edited by hand fails loudly instead of half-matching.

- `transition`, `update` and `heartbeat` compare, then commit one batch: the task under a
  last-update-time precondition and, for a transition given one, its event created at the next
  seq (a lost race on either reads again and retries both: no lock, no transaction). They compare
  against the version this store last read or wrote, when it keeps one: the precondition fails
  when that version is behind, so a current copy saves the read (a heartbeat reads anyway, so
  beats in a loop cannot starve a writer that must read). `create` is one atomic batch
  that creates the task, its first event when given one, and, with an idempotency key, a marker
  `{collection}-keys/{sha256(key)}` (all with an exists=false precondition, so the loser of a race
  gets AlreadyExists and reads the winner).
- Events are `{collection}/{task_id}/events/{seq:010d}`, written with `create()` (fails when the
  seq is taken). The store remembers the last seq per task, so an agent appending its own events
  pays one write each; on AlreadyExists it reads the real last seq and tries the next one. A seq
  is only tried after the one before it exists: no gaps, no duplicates.
- Every query is built from a QueryShape (gcp/documents.py, the schema in one place).
- Unavailability surfaces as GcpUnavailableError (a ConnectionError; GcpTimeoutError is also a
  TimeoutError), after bounded retries: callers retry, nothing hangs.

One unit, over ~400 lines: one class, the Firestore TaskStore, with its schema in documents.py and
its errors in errors.py.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.cloud import firestore

from agentfleet.errors import ConfigError
from agentfleet.gcp.documents import (
    ACTIVE,
    CHAIN,
    EVENTS_AFTER,
    LAST_EVENT,
    LIST_BY_BOTH,
    LIST_SHAPES,
    STALE,
    EventDoc,
    KeyDoc,
    QueryShape,
    TaskDoc,
    read_doc,
    utc,
)
from agentfleet.gcp.errors import CorruptDocumentError, GcpUnavailableError, translated
from agentfleet.settings import Settings
from agentfleet.tasks import LIVE, STORED, EventKind, Task, TaskEvent, TaskStatus, apply_transition, utcnow

P = ParamSpec("P")
R = TypeVar("R")
REFUSED_FIX = (
    "check AGENTFLEET_FIRESTORE_DATABASE and that the service account may use Firestore (roles/datastore.user)"
)
_TRIES = 16
"""Rounds of optimistic retry (seq taken, precondition failed, transaction aborted) before giving up:
about 10 s of backoff in all, so eight writers racing on a loaded machine all get through."""
_BACKOFF_MAX_S = 1.0
_VERSIONS = 256
"""Tasks whose last version a store keeps (the ones it is changing now: a dispatch function's
claims in flight, an agent's own task)."""


def _google_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Translate Google API errors into the family's (gcp/errors.py)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        fix = (
            "check AGENTFLEET_FIRESTORE_DATABASE and that the service account may use Firestore (roles/datastore.user)"
        )
        with translated(f"Firestore {method.__name__}", fix=fix):
            return method(*args, **kwargs)

    return wrapper


def _backoff(round_: int) -> None:
    time.sleep(random.uniform(0, min(_BACKOFF_MAX_S, 0.02 * 2**round_)))  # jitter between optimistic retries


def _event_doc(event: TaskEvent) -> EventDoc:
    return EventDoc(seq=event.seq, ts=event.ts, kind=event.kind, data=json.dumps(event.model_dump(mode="json")["data"]))


def firestore_client(settings: Settings) -> firestore.Client:
    """The deployment's Firestore database; ConfigError saying what to set when there are no credentials."""
    project = settings.require("project_id")
    try:
        return firestore.Client(project=project, database=settings.firestore_database)
    except DefaultCredentialsError as exc:
        raise ConfigError(
            "no Google Cloud credentials: run `gcloud auth application-default login`, set "
            "GOOGLE_APPLICATION_CREDENTIALS, or FIRESTORE_EMULATOR_HOST for the emulator"
        ) from exc


class FirestoreTaskStore:
    counts_locally = False  # a count is an aggregation query: intake publishes without one

    def __init__(self, client: firestore.Client, collection: str, *, timeout_s: float = 30.0) -> None:
        """`timeout_s`: how long one call keeps retrying a transient failure before it raises."""
        self.client = client
        self.timeout_s = timeout_s
        self.tasks = client.collection(collection)
        self.keys = client.collection(f"{collection}-keys")
        transient = (gexc.ServiceUnavailable, gexc.ResourceExhausted)
        read = Retry(if_exception_type(*transient, gexc.DeadlineExceeded, gexc.InternalServerError), timeout=timeout_s)
        # Writes are not retried on a deadline: the write may have landed, and a second try would fail.
        self._read: dict[str, Any] = {"retry": read, "timeout": min(timeout_s, 20.0)}
        write = Retry(if_exception_type(*transient), timeout=timeout_s)
        self._write: dict[str, Any] = {"retry": write, "timeout": min(timeout_s, 20.0)}
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        self._versions: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        """Per task (the latest _VERSIONS), the last version this store read or wrote (as JSON: no
        caller holds it) with its update time: the precondition of the next change, which needs no
        read while it is current."""
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreTaskStore:
        return cls(firestore_client(settings), settings.tasks_collection)

    def _shaped(self, base: Any, shape: QueryShape, *values: Any, bound: tuple[str, Any] | None = None) -> Any:
        """The query of `shape`: equality values in shape order (a list means `in`), an optional
        range (operator, value) on the first ordered field, then its ordering."""
        query = base
        for field, value in zip(shape.equality, values, strict=True):
            op = "in" if isinstance(value, list) else "=="
            query = query.where(filter=firestore.FieldFilter(field, op, value))
        if bound is not None:
            query = query.where(filter=firestore.FieldFilter(shape.order[0][0], *bound))
        for field, direction in shape.order:
            query = query.order_by(field, direction=direction)
        if shape.order:
            query = query.order_by("__name__", direction=shape.order[-1][1])
        return query

    def _tasks_of(self, query: Any) -> list[Task]:
        return [read_doc(TaskDoc, snap).task for snap in query.stream(**self._read)]

    # --- tasks ---------------------------------------------------------------------------

    @_google_errors
    def create(self, task: Task, *, event: tuple[EventKind, dict[str, Any]] | None = None) -> tuple[Task, bool]:
        key = task.request.idempotency_key
        marker = self.keys.document(hashlib.sha256(key.encode()).hexdigest()) if key is not None else None
        batch = self.client.batch()
        batch.create(self.tasks.document(task.id), TaskDoc.of(task).fields())
        if marker is not None:
            batch.create(marker, KeyDoc(task_id=task.id).model_dump())
        if event is not None:
            self._add_event(batch, TaskEvent(task_id=task.id, seq=1, kind=event[0], data=event[1]))
        try:
            batch.commit(**self._write)
        except gexc.AlreadyExists:
            snap = marker.get(**self._read) if marker is not None else None
            if snap is None or not snap.exists:
                raise ValueError(f"a task with id {task.id!r} already exists") from None
            first = self.get(read_doc(KeyDoc, snap).task_id)
            if first is None:
                raise CorruptDocumentError(f"{snap.reference.path} names a task that does not exist") from None
            return first, False
        self._remember(task.id, 0 if event is None else 1)
        return task, True

    @_google_errors
    def get(self, task_id: str) -> Task | None:
        found = self._read_version(task_id)
        return found[0] if found else None

    @_google_errors
    def list_tasks(
        self, *, status: TaskStatus | None = None, workspace_id: str | None = None, limit: int = 100
    ) -> list[Task]:
        """Newest first (created_at, then id, descending)."""
        if limit <= 0:  # Firestore reads limit(0) as "no limit"
            return []
        shape = LIST_SHAPES.get((status is not None, workspace_id is not None), LIST_BY_BOTH)
        values = [TaskStatus(status).value] if status is not None else []
        values += [workspace_id] if workspace_id is not None else []
        return self._tasks_of(self._shaped(self.tasks, shape, *values).limit(limit))

    @_google_errors
    def followups(self, root_id: str, limit: int = 1000) -> list[Task]:
        """Oldest first (created_at, then id)."""
        if limit <= 0:
            return []
        return self._tasks_of(self._shaped(self.tasks, CHAIN, root_id).limit(limit))

    @_google_errors
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
        matches, with `event` at the next seq in the same commit. None when it does not apply;
        ValueError (nothing stored) when the changed task would be invalid."""
        allowed = {TaskStatus(s) for s in expected}
        return self._compare_and_set(
            task_id,
            lambda task: task.status in allowed and attempt in (None, task.attempt),
            lambda task: apply_transition(task, TaskStatus(new), changes or {}),
            event,
        )

    @_google_errors
    def update(
        self, task_id: str, expected: Collection[TaskStatus], *, attempt: int, changes: dict[str, Any]
    ) -> Task | None:
        """Set `changes` iff the status is in `expected` and the attempt matches; the status stays."""
        allowed = {TaskStatus(s) for s in expected}
        return self._compare_and_set(
            task_id,
            lambda task: task.status in allowed and task.attempt == attempt,
            lambda task: apply_transition(task, task.status, changes),
        )

    @_google_errors
    def heartbeat(self, task_id: str, attempt: int) -> bool:
        """Record that the attempt is alive; False when the task moved on (cancelled, requeued).
        A beat reads the task first, even when this store keeps a current copy: from the copy a
        beat is one commit, and beats that cheap starve a writer that must read first (a cancel
        from another process lost all its rounds to a beater in a loop). The copy saves a read
        where a user waits (a claim, noting the execution, a finish), not on the agent's beats."""
        beaten = self._compare_and_set(
            task_id,
            lambda task: task.status in LIVE and task.attempt == attempt,
            lambda task: task.model_copy(update={"heartbeat_at": utcnow()}),
            read_first=True,
        )
        return beaten is not None

    def _compare_and_set(
        self,
        task_id: str,
        applies: Callable[[Task], bool],
        change: Callable[[Task], Task],
        event: tuple[EventKind, dict[str, Any]] | None = None,
        *,
        read_first: bool = False,
    ) -> Task | None:
        """`change(task)` (and `event` at the next seq) in one commit iff `applies(task)`; None when
        it does not. Without a transaction: the task as read (or as this store last wrote or read
        it), then a commit under a last-update-time precondition, so a writer that lost the race
        looks again and, once another writer has moved the task on, answers None. One call when
        this store's copy is current, two when it must read; one more to find the last seq when
        it does not know it. Transactions cost four calls and, on the emulator's pessimistic
        locks, kept racing losers aborting each other."""
        ref = self.tasks.document(task_id)
        known = None if read_first else self._version(task_id)
        last = self._known_seq(task_id) if event is not None else None
        for round_ in range(_TRIES):
            read, known = known is None, known or self._read_version(task_id)
            if known is None:
                return None
            task, version = known
            if not applies(task):
                if read:
                    return None
                known = None  # this store's copy may be behind: read before answering
                continue
            moved = change(task)
            batch = self.client.batch()
            batch.update(ref, TaskDoc.of(moved).fields(), option=self.client.write_option(last_update_time=version))
            if event is not None:
                last = self._stored_last_seq(task_id) if last is None else last
                self._add_event(batch, TaskEvent(task_id=task_id, seq=last + 1, kind=event[0], data=event[1]))
            try:
                [written, *_] = batch.commit(**self._write)
            except gexc.FailedPrecondition:  # the task changed since that version: read it again
                known = None
                if read:  # lost a race (a copy kept from before only fell behind: no wait)
                    _backoff(round_)
                continue
            except gexc.AlreadyExists:  # another writer took the seq: find the last one, try both again
                known, last = None, None
                _backoff(round_)
                continue
            self._keep_version(task_id, (moved, written.update_time))
            if last is not None:
                self._remember(task_id, last + 1)
            return moved
        raise GcpUnavailableError(f"task {task_id} is too contended to change now; try again")

    def _version(self, task_id: str) -> tuple[Task, Any] | None:
        with self._lock:
            kept = self._versions.get(task_id)
        return None if kept is None else (Task.model_validate_json(kept[0], context=STORED), kept[1])

    def _keep_version(self, task_id: str, version: tuple[Task, Any]) -> None:
        kept = (version[0].model_dump_json(), version[1])
        with self._lock:
            self._versions[task_id] = kept
            self._versions.move_to_end(task_id)
            while len(self._versions) > _VERSIONS:
                self._versions.popitem(last=False)

    def _read_version(self, task_id: str) -> tuple[Task, Any] | None:
        """The stored task and its update time (kept as this store's copy); None when there is none."""
        snap = self.tasks.document(task_id).get(**self._read)
        if not snap.exists:
            return None
        found = (read_doc(TaskDoc, snap).task, snap.update_time)
        self._keep_version(task_id, found)
        return found

    @_google_errors
    def stale(self, older_than: datetime) -> list[Task]:
        """DISPATCHED or RUNNING tasks whose last heartbeat (or change, before the first) is older."""
        live = [s.value for s in LIVE]
        found = self._tasks_of(self._shaped(self.tasks, STALE, live, bound=("<", utc(older_than))))
        return sorted(found, key=lambda t: (utc(t.created_at), t.id))

    @_google_errors
    def count_active(self, workspace_id: str) -> int:
        query = self._shaped(self.tasks, ACTIVE, workspace_id, [s.value for s in LIVE])
        return self._count(query, self._read)

    @_google_errors
    def active(self, workspace_id: str) -> list[Task]:
        return self._tasks_of(self._shaped(self.tasks, ACTIVE, workspace_id, [s.value for s in LIVE]))

    @staticmethod
    def _count(query: Any, call: dict[str, Any]) -> int:
        [[result]] = query.count(alias="n").get(**call)
        return int(result.value)

    # --- events --------------------------------------------------------------------------

    def _events(self, task_id: str) -> Any:
        return self.tasks.document(task_id).collection("events")

    def _remember(self, task_id: str, seq: int) -> None:
        """Note `seq` as stored for the task (bounded: the oldest tasks are forgotten first)."""
        with self._lock:
            self._last_seq[task_id] = max(seq, self._last_seq.get(task_id, 0))
            self._last_seq.move_to_end(task_id)
            while len(self._last_seq) > 10_000:
                self._last_seq.popitem(last=False)

    def _known_seq(self, task_id: str) -> int | None:
        """The last seq this store stored for the task; None when it does not know."""
        with self._lock:
            return self._last_seq.get(task_id)

    def _add_event(self, batch: Any, event: TaskEvent) -> None:
        """Add the creation of `event` at its seq to `batch` (the commit fails when the seq is taken)."""
        batch.create(self._events(event.task_id).document(f"{event.seq:010d}"), _event_doc(event).model_dump())

    def _stored_last_seq(self, task_id: str) -> int:
        found = list(self._shaped(self._events(task_id), LAST_EVENT).limit(1).stream(**self._read))
        return int(read_doc(EventDoc, found[0]).seq) if found else 0

    @_google_errors
    def append_event(self, task_id: str, kind: EventKind, data: dict[str, Any]) -> TaskEvent:
        """Append an event with the next `seq` (1, 2, …) for the task: one write when this store
        knows the last seq, a read and a retry when another writer took it."""
        event = TaskEvent(task_id=task_id, seq=0, kind=kind, data=data)
        stored = event.model_dump(mode="json")
        last = self._known_seq(task_id)
        for round_ in range(_TRIES * 4):
            seq = (self._stored_last_seq(task_id) if last is None else last) + 1
            doc = _event_doc(event.model_copy(update={"seq": seq}))
            try:
                self._events(task_id).document(f"{seq:010d}").create(doc.model_dump(), **self._write)
            except gexc.AlreadyExists:
                last = None
                if round_ >= _TRIES:
                    _backoff(_TRIES)
                continue
            self._remember(task_id, seq)
            return event.model_copy(update={"seq": seq, "data": stored["data"]})
        raise GcpUnavailableError(f"too many writers are appending events to task {task_id}; try again")

    @_google_errors
    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        """Events with seq > after, in order."""
        if limit <= 0:
            return []
        query = self._shaped(self._events(task_id), EVENTS_AFTER, bound=(">", after)).limit(limit)
        docs: list[EventDoc] = [read_doc(EventDoc, snap) for snap in query.stream(**self._read)]
        return [TaskEvent(task_id=task_id, seq=d.seq, ts=d.ts, kind=d.kind, data=json.loads(d.data)) for d in docs]

    # --- health --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Backend, collection, whether Firestore answers and how many tasks it holds; never raises."""
        quick = min(self.timeout_s, 5.0)
        report: dict[str, Any] = {"backend": "firestore", "collection": self.tasks.id, "ok": False, "tasks": None}
        try:
            report["tasks"] = self._count(self.tasks, {"retry": Retry(timeout=quick), "timeout": quick})
        except (gexc.GoogleAPIError, GoogleAuthError, OSError, ValueError) as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            return report
        report["ok"] = True
        return report
