"""TaskStore on Firestore: tasks as documents, events in a subcollection per task.

`{collection}/{task_id}` holds a TaskDoc: the Task's JSON form under `task`, beside it copies of
the fields the queries filter and sort on, as native Firestore types (`alive_at` is the last sign
of life: heartbeat_at, or updated_at before the first heartbeat). Reading checks the copies
against the task, so a document someone edited by hand fails loudly instead of half-matching.

- `transition` is one transaction (read, compare, write); `create` is one atomic batch that
  creates the task and, with an idempotency key, a marker `{collection}-keys/{sha256(key)}`
  (both with an exists=false precondition, so the loser of a race gets AlreadyExists and reads
  the winner); `heartbeat` reads, then updates with a last-update-time precondition: no lock.
- Events are `{collection}/{task_id}/events/{seq:010d}`, written with `create()` (fails when the
  seq is taken). The store remembers the last seq per task, so an agent appending its own events
  pays one write each; on AlreadyExists it reads the real last seq and tries the next one. A seq
  is only tried after the one before it exists: no gaps, no duplicates.
- Every query is built from a QueryShape below; `firestore_indexes.json` lists the composite
  indexes those shapes need, and a test checks the two against each other.
- Unavailability surfaces as StoreUnavailableError (a ConnectionError; StoreTimeoutError is
  also a TimeoutError), after bounded retries: callers retry, nothing hangs.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, ParamSpec, TypeVar

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.cloud import firestore
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from agentfleet.errors import AgentFleetError, ConfigError, describe_validation_error
from agentfleet.settings import Settings
from agentfleet.tasks import TRUSTED, EventKind, Task, TaskEvent, TaskStatus, apply_transition, utcnow

P = ParamSpec("P")
R = TypeVar("R")
Direction = Literal["ASCENDING", "DESCENDING"]
ASC: Direction = "ASCENDING"
DESC: Direction = "DESCENDING"
LIVE = (TaskStatus.DISPATCHED, TaskStatus.RUNNING)
_TRIES = 8
"""Rounds of optimistic retry (seq taken, precondition failed, transaction aborted) before giving up."""


class StoreUnavailableError(AgentFleetError, ConnectionError):
    """Firestore cannot be reached, or is too contended, right now; a retry may succeed."""


class StoreTimeoutError(StoreUnavailableError, TimeoutError):
    """Firestore did not answer within the store's deadline."""


class StoreError(AgentFleetError, RuntimeError):
    """Firestore refused the request (permissions, missing database); a retry will not help."""


class CorruptDocumentError(AgentFleetError, ValueError):
    """A stored document is not what the store writes (edited by hand, or by other code)."""


@dataclass(frozen=True)
class QueryShape:
    """One query the store runs: equality (`==` or `in`) fields, then ordered (and range) fields."""

    collection: Literal["tasks", "events"]
    equality: tuple[str, ...]
    order: tuple[tuple[str, Direction], ...]

    @property
    def needs_composite_index(self) -> bool:
        return len(self.equality) + len(self.order) > 1

    def index_fields(self) -> list[tuple[str, Direction]]:
        """The composite index serving it: equality fields, ordered fields, then __name__."""
        fields: list[tuple[str, Direction]] = [(f, ASC) for f in self.equality] + list(self.order)
        return [*fields, ("__name__", fields[-1][1])]


LIST_ALL = QueryShape("tasks", (), (("created_at", DESC),))
LIST_BY_STATUS = QueryShape("tasks", ("status",), (("created_at", DESC),))
LIST_BY_WORKSPACE = QueryShape("tasks", ("workspace_id",), (("created_at", DESC),))
LIST_BY_BOTH = QueryShape("tasks", ("status", "workspace_id"), (("created_at", DESC),))
STALE = QueryShape("tasks", ("status",), (("alive_at", ASC),))
ACTIVE = QueryShape("tasks", ("workspace_id", "status"), ())
EVENTS_AFTER = QueryShape("events", (), (("seq", ASC),))
LAST_EVENT = QueryShape("events", (), (("seq", DESC),))
QUERY_SHAPES = (LIST_ALL, LIST_BY_STATUS, LIST_BY_WORKSPACE, LIST_BY_BOTH, STALE, ACTIVE, EVENTS_AFTER, LAST_EVENT)
_LIST_SHAPES = {(False, False): LIST_ALL, (True, False): LIST_BY_STATUS, (False, True): LIST_BY_WORKSPACE}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _copies(task: Task) -> dict[str, Any]:
    """The task's fields that the queries filter and sort on, as TaskDoc stores them."""
    alive = task.heartbeat_at or task.updated_at
    return {"status": task.status, "attempt": task.attempt, "workspace_id": task.workspace_id,
            "created_at": _utc(task.created_at), "alive_at": _utc(alive)}  # fmt: skip


class TaskDoc(BaseModel):
    """A task document: the task, and the copies of its fields that the queries use."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    status: TaskStatus
    attempt: int
    workspace_id: str
    created_at: datetime
    alive_at: datetime

    @classmethod
    def of(cls, task: Task) -> TaskDoc:
        return cls(task=task, **_copies(task))

    @model_validator(mode="after")
    def _copies_match(self) -> TaskDoc:
        for name, value in _copies(self.task).items():
            if getattr(self, name) != value:
                source = "heartbeat_at or updated_at" if name == "alive_at" else name
                raise ValueError(f"the copy {name} disagrees with the task's {source}")
        return self

    def fields(self) -> dict[str, Any]:
        """The document as Firestore stores it (timestamps native, the task as JSON types)."""
        return {**self.__dict__, "task": self.task.model_dump(mode="json"), "status": self.status.value}


class EventDoc(BaseModel):
    """An event document; `data` is JSON text (Firestore maps cannot hold arrays of arrays)."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    ts: datetime
    kind: EventKind
    data: str


class KeyDoc(BaseModel):
    """The idempotency marker: which task an idempotency key created."""

    model_config = ConfigDict(extra="forbid")

    task_id: str


def _read(model: type[BaseModel], snap: Any) -> Any:
    """The snapshot validated as `model`; CorruptDocumentError naming the document otherwise."""
    try:
        return model.model_validate(snap.to_dict(), context=TRUSTED)
    except ValidationError as exc:
        raise CorruptDocumentError(
            f"Firestore document {snap.reference.path} is not a valid {model.__name__}: "
            f"{describe_validation_error(exc)}"
        ) from None


def _google_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Translate Google API errors into the store's: retryable ones into ConnectionError/TimeoutError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        what = f"Firestore {method.__name__}"
        try:
            return method(*args, **kwargs)
        except (gexc.DeadlineExceeded, gexc.RetryError) as exc:
            raise StoreTimeoutError(f"{what} gave up after retrying: {exc}") from exc
        except (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.ResourceExhausted, gexc.Aborted) as exc:
            raise StoreUnavailableError(f"{what} failed, try again: {exc}") from exc
        except gexc.GoogleAPICallError as exc:
            raise StoreError(
                f"{what} was refused ({exc}); check AGENTFLEET_FIRESTORE_DATABASE and that the service "
                "account may use Firestore (roles/datastore.user)"
            ) from exc

    return wrapper


def _backoff(round_: int) -> None:
    time.sleep(random.uniform(0, 0.02 * 2**round_))  # jitter between optimistic retries


class FirestoreTaskStore:
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
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreTaskStore:
        project = settings.require("project_id")
        try:
            client = firestore.Client(project=project, database=settings.firestore_database)
        except DefaultCredentialsError as exc:
            raise ConfigError(
                "no Google Cloud credentials: run `gcloud auth application-default login`, set "
                "GOOGLE_APPLICATION_CREDENTIALS, or FIRESTORE_EMULATOR_HOST for the emulator"
            ) from exc
        return cls(client, settings.tasks_collection)

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
        return [_read(TaskDoc, snap).task for snap in query.stream(**self._read)]

    # --- tasks ---------------------------------------------------------------------------

    @_google_errors
    def create(self, task: Task) -> tuple[Task, bool]:
        key = task.request.idempotency_key
        marker = self.keys.document(hashlib.sha256(key.encode()).hexdigest()) if key is not None else None
        batch = self.client.batch()
        batch.create(self.tasks.document(task.id), TaskDoc.of(task).fields())
        if marker is not None:
            batch.create(marker, KeyDoc(task_id=task.id).model_dump())
        try:
            batch.commit(**self._write)
        except gexc.AlreadyExists:
            snap = marker.get(**self._read) if marker is not None else None
            if snap is None or not snap.exists:
                raise ValueError(f"a task with id {task.id!r} already exists") from None
            first = self.get(_read(KeyDoc, snap).task_id)
            if first is None:
                raise CorruptDocumentError(f"{snap.reference.path} names a task that does not exist") from None
            return first, False
        self._remember(task.id, 0)
        return task, True

    @_google_errors
    def get(self, task_id: str) -> Task | None:
        snap = self.tasks.document(task_id).get(**self._read)
        return _read(TaskDoc, snap).task if snap.exists else None

    @_google_errors
    def list_tasks(
        self, *, status: TaskStatus | None = None, workspace_id: str | None = None, limit: int = 100
    ) -> list[Task]:
        """Newest first (created_at, then id, descending)."""
        if limit <= 0:  # Firestore reads limit(0) as "no limit"
            return []
        shape = _LIST_SHAPES.get((status is not None, workspace_id is not None), LIST_BY_BOTH)
        values = [TaskStatus(status).value] if status is not None else []
        values += [workspace_id] if workspace_id is not None else []
        return self._tasks_of(self._shaped(self.tasks, shape, *values).limit(limit))

    @_google_errors
    def transition(
        self,
        task_id: str,
        expected: Collection[TaskStatus],
        new: TaskStatus,
        *,
        attempt: int | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Task | None:
        """Set `new` (and `changes`) iff the status is in `expected` and, when given, the attempt
        matches: one transaction. None when it does not apply; ValueError (nothing stored) when the
        changed task would be invalid."""
        allowed = {TaskStatus(s) for s in expected}
        ref = self.tasks.document(task_id)

        def compare_and_set(transaction: firestore.Transaction) -> Task | None:
            snap = ref.get(transaction=transaction, **self._read)
            if not snap.exists:
                return None
            task: Task = _read(TaskDoc, snap).task
            if task.status not in allowed or (attempt is not None and task.attempt != attempt):
                return None
            moved = apply_transition(task, TaskStatus(new), changes or {})
            transaction.set(ref, TaskDoc.of(moved).fields())
            return moved

        run = firestore.transactional(compare_and_set)
        for round_ in range(_TRIES):
            try:
                return run(self.client.transaction(max_attempts=3))
            except gexc.Aborted:  # contention on the read: start over
                pass
            except ValueError as exc:
                if not isinstance(exc.__cause__, gexc.Aborted):  # not "failed to commit in N attempts"
                    raise
            _backoff(round_)
        raise StoreUnavailableError(f"task {task_id} is too contended to change now; try again")

    @_google_errors
    def heartbeat(self, task_id: str, attempt: int) -> bool:
        """Record that the attempt is alive; False when the task moved on (cancelled, requeued).
        Read, then write with a last-update-time precondition: no transaction lock is held."""
        ref = self.tasks.document(task_id)
        for round_ in range(_TRIES):
            snap = ref.get(**self._read)
            if not snap.exists:
                return False
            task: Task = _read(TaskDoc, snap).task
            if task.status not in LIVE or task.attempt != attempt:
                return False
            beaten = TaskDoc.of(task.model_copy(update={"heartbeat_at": utcnow()}))
            try:
                ref.update(beaten.fields(), option=self.client.write_option(last_update_time=snap.update_time),
                           **self._write)  # fmt: skip
            except gexc.FailedPrecondition:  # changed since the read: look again
                _backoff(round_)
                continue
            return True
        raise StoreUnavailableError(f"task {task_id} is too contended to heartbeat now; try again")

    @_google_errors
    def stale(self, older_than: datetime) -> list[Task]:
        """DISPATCHED or RUNNING tasks whose last heartbeat (or change, before the first) is older."""
        live = [s.value for s in LIVE]
        found = self._tasks_of(self._shaped(self.tasks, STALE, live, bound=("<", _utc(older_than))))
        return sorted(found, key=lambda t: (_utc(t.created_at), t.id))

    @_google_errors
    def count_active(self, workspace_id: str) -> int:
        query = self._shaped(self.tasks, ACTIVE, workspace_id, [s.value for s in LIVE])
        return self._count(query, self._read)

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

    def _stored_last_seq(self, task_id: str) -> int:
        found = list(self._shaped(self._events(task_id), LAST_EVENT).limit(1).stream(**self._read))
        return int(_read(EventDoc, found[0]).seq) if found else 0

    @_google_errors
    def append_event(self, task_id: str, kind: EventKind, data: dict[str, Any]) -> TaskEvent:
        """Append an event with the next `seq` (1, 2, …) for the task: one write when this store
        knows the last seq, a read and a retry when another writer took it."""
        event = TaskEvent(task_id=task_id, seq=0, kind=kind, data=data)
        stored = event.model_dump(mode="json")
        with self._lock:
            last = self._last_seq.get(task_id)
        for round_ in range(_TRIES * 4):
            seq = (self._stored_last_seq(task_id) if last is None else last) + 1
            doc = EventDoc(seq=seq, ts=event.ts, kind=event.kind, data=json.dumps(stored["data"]))
            try:
                self._events(task_id).document(f"{seq:010d}").create(doc.model_dump(), **self._write)
            except gexc.AlreadyExists:
                last = None
                if round_ >= _TRIES:
                    _backoff(_TRIES)
                continue
            self._remember(task_id, seq)
            return event.model_copy(update={"seq": seq, "data": stored["data"]})
        raise StoreUnavailableError(f"too many writers are appending events to task {task_id}; try again")

    @_google_errors
    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        """Events with seq > after, in order."""
        if limit <= 0:
            return []
        query = self._shaped(self._events(task_id), EVENTS_AFTER, bound=(">", after)).limit(limit)
        docs: list[EventDoc] = [_read(EventDoc, snap) for snap in query.stream(**self._read)]
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
