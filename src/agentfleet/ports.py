"""The seams. Each port has a local implementation (agentfleet.local) and a gcp one
(agentfleet.gcp); implementations do not inherit from these protocols. The same contract
tests (tests/contract/) run against every implementation. This module imports no
implementation and no settings (a test checks); `agentfleet.backends` chooses them.

The retry contract, for every port: an error that is a ConnectionError or a TimeoutError means
the backend is away and a retry may help (the caller retries, requeues, or leaves the task for
the reaper); any other AgentFleetError means a person must act, and its message says what to
change. Contract violations by the caller (a bad key, a transition that would make the task
invalid) are ValueErrors.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from agentfleet.memory import MemoryEntry
from agentfleet.tasks import EventKind, Task, TaskEvent, TaskStatus

TASK_ID_ENV = "AGENTFLEET_TASK_ID"
ATTEMPT_ENV = "AGENTFLEET_ATTEMPT"
"""The environment a JobRunner starts the agent with: which task, which attempt of it."""


class DispatchMessage(BaseModel):
    """What the queue carries: which task (and which attempt of it) to dispatch."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    attempt: int
    workspace_id: str

    def attributes(self) -> dict[str, str]:
        """The message's fields as Pub/Sub attributes (a reader of the topic sees them undecoded)."""
        return {"task_id": self.task_id, "attempt": str(self.attempt), "workspace_id": self.workspace_id}


class Execution(BaseModel):
    """One run of the agent for one attempt of one task (a Cloud Run Job execution)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    task_id: str
    attempt: int
    workspace_id: str
    state: Literal["running", "succeeded", "failed", "cancelled"] = "running"
    started_at: datetime | None = None


@runtime_checkable
class TaskStore(Protocol):
    """Tasks, their ordered events and heartbeats. Every status change is one atomic
    compare-and-set; a change that does not apply returns None and changes nothing."""

    counts_locally: bool
    """Whether `count_active` is answered on this machine, without a round trip (an index in a
    local file). The service then counts after storing a task, to publish only a task whose
    workspace has room; where a count is a network call it publishes every task, and a busy
    workspace's delivery is dropped (a call less for every submission, bursts included)."""

    def create(self, task: Task, *, event: tuple[EventKind, dict[str, Any]] | None = None) -> tuple[Task, bool]:
        """Store a new task; with an idempotency_key already used, return that task and False.
        A task id that already exists raises ValueError. `event`: the new task's first event
        (seq 1), stored in the same write as the task (nothing of either when it is not created)."""
        ...

    def get(self, task_id: str) -> Task | None: ...

    def list_tasks(
        self, *, status: TaskStatus | None = None, workspace_id: str | None = None, limit: int = 100
    ) -> list[Task]:
        """Newest first."""
        ...

    def followups(self, root_id: str, limit: int = 1000) -> list[Task]:
        """The follow-ups of the chain whose first task is `root_id` (their `root_id`), oldest first."""
        ...

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
        matches; `updated_at` is set, `finished_at` too for a final status. None when it does not apply.
        `changes` may not hold `id` or `status`; changes that make the task invalid raise ValueError
        and store nothing. `event`: the change's event (kind, data), appended with the task's next
        seq in the same commit as the change: both are stored or neither, so a crash cannot leave
        a status change without its event."""
        ...

    def update(
        self, task_id: str, expected: Collection[TaskStatus], *, attempt: int, changes: dict[str, Any]
    ) -> Task | None:
        """Set `changes` (and `updated_at`) iff the status is in `expected` and the attempt matches,
        without moving the status: one compare-and-set, as `transition`, whichever of `expected`
        the task is in. None when it does not apply; ValueError, storing nothing, as `transition`."""
        ...

    def heartbeat(self, task_id: str, attempt: int) -> bool:
        """Record that the attempt is alive; False when the task moved on (cancelled, requeued)."""
        ...

    def append_event(self, task_id: str, kind: EventKind, data: dict[str, Any]) -> TaskEvent:
        """Append an event with the next `seq` (1, 2, …) for the task. Callers append only to
        tasks they know exist (the store does not pay a read per event to check)."""
        ...

    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        """Events with seq > after, in order."""
        ...

    def stale(self, older_than: datetime) -> list[Task]:
        """DISPATCHED or RUNNING tasks whose last sign of life is older than `older_than`."""
        ...

    def count_active(self, workspace_id: str) -> int:
        """How many tasks of the workspace are DISPATCHED or RUNNING."""
        ...

    def active(self, workspace_id: str) -> list[Task]:
        """The workspace's DISPATCHED or RUNNING tasks, in no set order: one query, like the count,
        for when the caller also needs to know which (a handful: the workspace's limit, a few more
        while dispatches race)."""
        ...

    def health(self) -> dict[str, Any]:
        """At least `ok` (bool), `backend` (str) and `tasks` (count); never raises."""
        ...


@runtime_checkable
class TaskQueue(Protocol):
    """Publishes task ids for dispatch (Pub/Sub topic; locally a durable SQLite queue)."""

    def publish(self, message: DispatchMessage) -> str:
        """Publish; return the message id."""
        ...

    def health(self) -> dict[str, Any]: ...


@runtime_checkable
class JobRunner(Protocol):
    """Starting, listing and stopping agent executions: the deployment, never the agent's actions."""

    def launch(self, task: Task) -> Execution:
        """Start an execution for the task's current attempt; a second launch of the same
        attempt returns the first execution and starts nothing."""
        ...

    def cancel(self, execution: str) -> None: ...

    def list_active(self) -> list[Execution]: ...

    def health(self) -> dict[str, Any]: ...


@runtime_checkable
class ArtifactStore(Protocol):
    """Patches, logs, input files and workspace snapshots, addressed by a relative key."""

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store `data` under `key`, replacing what was there; return the key."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The bytes under `key`; KeyError when there are none."""
        ...

    def put_file(self, key: str, path: Path) -> str:
        """Store a local file under `key`; return the key."""
        ...

    def get_file(self, key: str, dest: Path) -> Path:
        """Write the object under `key` to `dest`; KeyError when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool:
        """Remove the object under `key`; False when there was none."""
        ...

    def uri(self, key: str) -> str:
        """Where a person can find the artifact (a path or gs:// URI)."""
        ...

    def get_file_version(self, key: str, dest: Path) -> str:
        """Write the object under `key` to `dest` and return its version (an opaque token: the
        GCS generation); KeyError when there is none."""
        ...

    def put_file_if(self, key: str, path: Path, *, version: str | None) -> str | None:
        """Store a local file under `key` only if the stored object is still at `version`
        (None: only if there is no object). Return the new version, or None when another writer
        got there first (nothing is stored). Concurrent writers never interleave: a reader sees
        one whole version or another."""
        ...


@runtime_checkable
class MemoryStore(Protocol):
    """What each workspace keeps of its finished tasks and its agents' notes (agentfleet.memory):
    bounded entries, searched by their words. Workspaces never see each other's entries."""

    def add(self, entry: MemoryEntry) -> MemoryEntry:
        """Keep `entry` (clipped to the bounds) and return what was kept; past KEEP_PER_WORKSPACE
        entries of its workspace, the oldest go."""
        ...

    def recent(self, workspace_id: str, limit: int = 20) -> list[MemoryEntry]:
        """The workspace's entries, newest first."""
        ...

    def search(self, workspace_id: str, query: str, limit: int = 5) -> list[MemoryEntry]:
        """The workspace's entries sharing a search term with `query` (memory.terms), the most
        shared first, then the newest; none for a query with no terms."""
        ...

    def clear(self, workspace_id: str) -> int:
        """Forget every entry of the workspace; how many there were."""
        ...

    def health(self) -> dict[str, Any]:
        """At least `ok` (bool) and `backend` (str); never raises."""
        ...


@dataclass(frozen=True)
class Backends:
    """One implementation of each port, as `agentfleet.backends.build_backends` chooses them."""

    store: TaskStore
    queue: TaskQueue
    jobs: JobRunner
    artifacts: ArtifactStore
    memory: MemoryStore
