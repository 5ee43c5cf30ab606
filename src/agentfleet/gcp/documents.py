"""The Firestore documents of the TaskStore and the queries it runs: its schema, in one place.

`TaskDoc` holds a Task's JSON form under `task` and, beside it, copies of the fields the queries
filter and sort on as native Firestore types; reading checks the copies against the task, so a
document edited by hand fails loudly instead of half-matching. Every query the store runs is one
of QUERY_SHAPES, and `firestore_indexes.json` lists the composite indexes those shapes need
(a test checks the two against each other both ways).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from agentfleet.errors import describe_validation_error
from agentfleet.gcp.errors import CorruptDocumentError
from agentfleet.tasks import STORED, EventKind, Task, TaskStatus

Direction = Literal["ASCENDING", "DESCENDING"]
ASC: Direction = "ASCENDING"
DESC: Direction = "DESCENDING"


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
CHAIN = QueryShape("tasks", ("root_id",), (("created_at", ASC),))
EVENTS_AFTER = QueryShape("events", (), (("seq", ASC),))
LAST_EVENT = QueryShape("events", (), (("seq", DESC),))
QUERY_SHAPES = (
    LIST_ALL,
    LIST_BY_STATUS,
    LIST_BY_WORKSPACE,
    LIST_BY_BOTH,
    STALE,
    ACTIVE,
    CHAIN,
    EVENTS_AFTER,
    LAST_EVENT,
)
LIST_SHAPES = {(False, False): LIST_ALL, (True, False): LIST_BY_STATUS, (False, True): LIST_BY_WORKSPACE}


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _copies(task: Task) -> dict[str, Any]:
    """The task's fields that the queries filter and sort on, as TaskDoc stores them."""
    alive = task.heartbeat_at or task.updated_at
    return {
        "status": task.status,
        "attempt": task.attempt,
        "workspace_id": task.workspace_id,
        "created_at": utc(task.created_at),
        "alive_at": utc(alive),
        "root_id": task.root_id,
    }


class TaskDoc(BaseModel):
    """A task document: the task, and the copies of its fields that the queries use."""

    model_config = ConfigDict(extra="forbid")

    task: Task
    status: TaskStatus
    attempt: int
    workspace_id: str
    created_at: datetime
    alive_at: datetime
    root_id: str | None = None
    """The chain's first task, for a follow-up (documents from before follow-ups have none)."""

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


def read_doc(model: type[BaseModel], snap: Any) -> Any:
    """The snapshot validated as `model`; CorruptDocumentError naming the document otherwise."""
    try:
        return model.model_validate(snap.to_dict(), context=STORED)
    except ValidationError as exc:
        raise CorruptDocumentError(
            f"Firestore document {snap.reference.path} is not a valid {model.__name__}: "
            f"{describe_validation_error(exc)}"
        ) from None
