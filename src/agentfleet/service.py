"""Use cases: submit, follow up, dispatch, start and finish an attempt, cancel, reap, schedule, reset a
workspace, and the reads the API serves. Entry points (HTTP, CloudEvents, the CLI, the agent
process) parse their input, build backends from settings and call one of these.

One unit, over ~300 lines: every use case of the control plane, each a method of the one Service
over the ports (the place a new transition goes).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agentfleet.errors import (
    AgentFleetError,
    ConflictError,
    InvalidRequestError,
    RetryableError,
    TaskNotFoundError,
    describe_validation_error,
)
from agentfleet.followups import followup_task
from agentfleet.memory import MemoryEntry
from agentfleet.names import WORKSPACE_ID, snapshot_key, upload_key
from agentfleet.ports import Backends, DispatchMessage, Execution
from agentfleet.runtime.workspaces import reset_workspace_files
from agentfleet.settings import Settings
from agentfleet.tasks import (
    LIVE,
    NOT_FINAL,
    EventKind,
    FollowupRequest,
    Task,
    TaskEvent,
    TaskRequest,
    TaskStatus,
    utcnow,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchOutcome:
    action: Literal["launched", "duplicate", "waiting", "unknown", "failed"]
    task_id: str
    execution: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class WorkspaceReset:
    workspace_id: str
    removed: list[str]
    """What there was to remove: "checkout", "setup markers", "snapshot"."""


@dataclass(frozen=True)
class Upload:
    key: str
    name: str
    size: int


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)


class Service:
    def __init__(self, backends: Backends, settings: Settings) -> None:
        self.backends = backends
        self.settings = settings
        self.store = backends.store

    # --- submit -------------------------------------------------------------------------

    def parse_request(self, body: Any) -> TaskRequest:
        try:
            return TaskRequest.model_validate(body, context=self.settings.validation_context())
        except ValidationError as exc:
            raise InvalidRequestError(describe_validation_error(exc)) from None

    def submit(self, body: Any) -> tuple[Task, bool]:
        """Validate, store QUEUED, publish (on a local store only when its workspace has room:
        _room_after_create). Returns (task, created); a repeated idempotency key returns the first
        task and publishes nothing."""
        request = body if isinstance(body, TaskRequest) else self.parse_request(body)
        return self._create(Task(request=request))

    def followup(self, parent_id: str, body: Any) -> tuple[Task, bool]:
        """A new task continuing the ended task `parent_id`'s result (followups.py), stored and
        published like a submitted one. ConflictError while the parent has not ended."""
        parent = self.task(parent_id)
        try:
            asked = body if isinstance(body, FollowupRequest) else FollowupRequest.model_validate(body)
        except ValidationError as exc:
            raise InvalidRequestError(describe_validation_error(exc)) from None
        return self._create(followup_task(parent, asked, self.settings.validation_context()))

    def _create(self, new: Task) -> tuple[Task, bool]:
        task, created = self.store.create(new, event=(EventKind.STATUS, {"status": TaskStatus.QUEUED.value}))
        if not created and (task.request, task.parent_id) != (new.request, new.parent_id):
            raise ConflictError(
                f"idempotency_key {new.request.idempotency_key!r} was used for a different request (task {task.id}); "
                "send that request again, or use a new key for this one"
            )
        if created and (not self.store.counts_locally or self._room_after_create(task)):
            self._publish(task)
        return task, created

    def _room_after_create(self, task: Task) -> bool:
        """Whether a task just stored should be published now, on a store that counts locally
        (TaskStore.counts_locally). A task of a busy workspace is not: its delivery would only find
        the workspace busy (a message, a pull, a dispatch and an ack, for nothing); the task ahead
        of it publishes the workspace's oldest QUEUED task when it ends (schedule_next). The count
        comes after the task is stored, so a task ahead that ends meanwhile either ended before the
        count (room: published here) or schedules after it and finds this one QUEUED: none is left
        asleep. A count that cannot be made publishes (a delivery that finds the workspace busy is
        harmless)."""
        try:
            return self._has_room(task.workspace_id)
        except (ConnectionError, TimeoutError) as exc:
            logger.warning("could not count the active tasks of workspace %s (%s); publishing", task.workspace_id, exc)
            return True

    def _has_room(self, workspace_id: str) -> bool:
        """Whether the workspace can take another task now."""
        return self.store.count_active(workspace_id) < self.settings.max_concurrent_per_workspace

    def _publish(self, task: Task) -> bool:
        """Publish the task for dispatch. A queue that cannot be reached loses nothing: the task
        is stored QUEUED, and the reaper's next pass publishes the queued tasks of idle workspaces."""
        message = DispatchMessage(task_id=task.id, attempt=task.attempt, workspace_id=task.workspace_id)
        try:
            self.backends.queue.publish(message)
        except (ConnectionError, TimeoutError) as exc:
            logger.warning(
                "task %s is queued but not yet published (%s); the reaper will publish it",
                task.id,
                exc,
                extra={"task_id": task.id},
            )
            return False
        return True

    # --- input files --------------------------------------------------------------------

    def upload_input(self, name: str, path: Path) -> Upload:
        """Keep the file at `path` as the input file `name` (POST /files): its key, which a task's
        `files` names (a bare name means the upload of that name). A new upload of a name replaces it."""
        try:
            key = upload_key(name)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
        size = path.stat().st_size
        self.backends.artifacts.put_file(key, path)
        return Upload(key=key, name=name, size=size)

    # --- dispatch -----------------------------------------------------------------------

    def dispatch(self, message: DispatchMessage) -> DispatchOutcome:
        """QUEUED→DISPATCHED exactly once per attempt, then launch. Duplicates are no-ops.

        Cheapest answer first: the workspace's active tasks (one query) end a delivery of a task
        already active ("duplicate") and one to a busy workspace ("waiting": the task, while QUEUED,
        is published again when the workspace has room; a stray delivery of an ended or unknown
        task to a busy workspace also gets it, since telling would cost every busy delivery a read).
        The claim itself compares status and attempt; the task is read only when it did not apply,
        to say why ("unknown", "duplicate")."""
        active = self.store.active(message.workspace_id)
        mine = next((t for t in active if t.id == message.task_id), None)
        if mine is not None:
            return _duplicate(mine)
        if len(active) >= self.settings.max_concurrent_per_workspace:
            return DispatchOutcome("waiting", message.task_id, detail=f"workspace {message.workspace_id} is busy")
        claimed = self._move(
            message.task_id,
            [TaskStatus.QUEUED],
            TaskStatus.DISPATCHED,
            attempt=message.attempt,
            event={"attempt": message.attempt},
        )
        if claimed is None:
            task = self.store.get(message.task_id)
            return _duplicate(task) if task else DispatchOutcome("unknown", message.task_id, detail="no such task")
        if claimed.workspace_id != message.workspace_id:  # the room above was counted in another workspace
            self._give_back(claimed, f"the message named workspace {message.workspace_id}")
            self.schedule_next(claimed.workspace_id)  # publishes it again, rightly named, when there is room
            return DispatchOutcome("waiting", claimed.id, detail=f"the message named workspace {message.workspace_id}")
        if self._lost_workspace_race(claimed):
            self._give_back(claimed, f"workspace {claimed.workspace_id} was claimed first")
            # The winner may have ended while this claim still counted as active, and found no room
            # to schedule: wake the workspace, or it sleeps until the reaper's next pass.
            self.schedule_next(claimed.workspace_id)
            return DispatchOutcome("waiting", claimed.id, detail=f"workspace {claimed.workspace_id} was claimed first")
        return self._launch(claimed)

    def _give_back(self, claimed: Task, reason: str) -> None:
        """DISPATCHED→QUEUED for the claimed attempt, with the reason in its status event."""
        event = {"attempt": claimed.attempt, "reason": reason}
        self._move(claimed.id, [TaskStatus.DISPATCHED], TaskStatus.QUEUED, attempt=claimed.attempt, event=event)

    def _lost_workspace_race(self, claimed: Task) -> bool:
        """The look-then-claim above is not atomic: dispatches of two tasks of one workspace can
        both find room. After claiming, each looks again; one that finds the workspace over its
        limit gives way when others claimed before it (by claim time, then id: an order all
        racers agree on), so the first claimers keep the slots."""
        limit = self.settings.max_concurrent_per_workspace
        active = self.store.active(claimed.workspace_id)
        if len(active) <= limit:
            return False
        # Running or launched ones first (their updated_at moved on), then by claim time.
        order = sorted(
            active, key=lambda t: (t.status is TaskStatus.DISPATCHED and not t.execution, t.updated_at, t.id)
        )
        return claimed.id not in {t.id for t in order[:limit]}

    def _launch(self, task: Task) -> DispatchOutcome:
        try:
            execution = self.backends.jobs.launch(task)
        except (OSError, ConnectionError, TimeoutError) as exc:
            # Transient: give the attempt back to the queue and let the platform redeliver.
            self._give_back(task, f"could not launch: {exc}")
            raise RetryableError(f"could not launch task {task.id}: {exc}") from exc
        except AgentFleetError as exc:
            self._fail(task, f"could not launch: {exc}")
            return DispatchOutcome("failed", task.id, detail=str(exc))
        self._record_execution(task, execution.name)
        return DispatchOutcome("launched", task.id, execution.name)

    def _record_execution(self, task: Task, name: str) -> None:
        """Note the execution without moving the status (the agent may already be RUNNING)."""
        self.store.update(task.id, LIVE, attempt=task.attempt, changes={"execution": name})

    def _fail(self, task: Task, reason: str) -> None:
        if self._move(task.id, NOT_FINAL, TaskStatus.FAILED, changes={"error": reason}, event={"error": reason}):
            self.schedule_next(task.workspace_id)

    # --- cancel -------------------------------------------------------------------------

    def cancel(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task {task_id}")
        cancelled = self._move(task_id, NOT_FINAL, TaskStatus.CANCELLED, changes={"error": "cancelled"})
        if cancelled is None:
            current = self.store.get(task_id)
            state = current.status.value if current else "gone"
            raise ConflictError(
                f"task {task_id} is {state}; only a QUEUED, DISPATCHED or RUNNING task can be cancelled"
            )
        if task.execution and task.status in LIVE:
            self.backends.jobs.cancel(task.execution)
        self.schedule_next(task.workspace_id)
        return cancelled

    # --- an attempt, from inside the agent's execution -------------------------------------

    def start_attempt(self, task_id: str, attempt: int | None = None) -> Task | None:
        """DISPATCHED→RUNNING for the attempt (None: the task's current one): the running task, or
        None when that attempt is not dispatched (cancelled, requeued, unknown): nothing to do."""
        task = self.store.get(task_id)
        if task is None:
            return None
        attempt = attempt or task.attempt
        now = utcnow()
        changes = {"started_at": now, "heartbeat_at": now}
        event = {"attempt": attempt}
        return self._move(
            task_id, [TaskStatus.DISPATCHED], TaskStatus.RUNNING, attempt=attempt, changes=changes, event=event
        )

    def finish_attempt(self, running: Task, final: Task) -> bool:
        """RUNNING→the final status with the result, then schedule the workspace's next task. False
        when the attempt was no longer current (cancelled or requeued meanwhile): nothing recorded."""
        changes = {"result": final.result, "error": final.error, "usage": final.usage}
        event = {"error": final.error} if final.error else {}
        moved = self._move(
            running.id, [TaskStatus.RUNNING], final.status, attempt=running.attempt, changes=changes, event=event
        )
        self.schedule_next(running.workspace_id)
        return moved is not None

    def _move(
        self,
        task_id: str,
        expected: Collection[TaskStatus],
        new: TaskStatus,
        *,
        attempt: int | None = None,
        changes: dict[str, Any] | None = None,
        event: dict[str, Any] | None = None,
    ) -> Task | None:
        """A transition with its status event (the new status and `event`),
        stored in one commit: both or neither."""
        data = {"status": new.value, **(event or {})}
        return self.store.transition(
            task_id, expected, new, attempt=attempt, changes=changes, event=(EventKind.STATUS, data)
        )

    # --- reads ----------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        return self.store.get(task_id)

    def task(self, task_id: str) -> Task:
        """The task; TaskNotFoundError when there is none."""
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFoundError(f"no task {task_id}")
        return task

    def tasks(
        self, *, status: TaskStatus | None = None, workspace_id: str | None = None, limit: int = 100
    ) -> list[Task]:
        return self.store.list_tasks(status=status, workspace_id=workspace_id, limit=limit)

    def chain(self, task_id: str) -> list[Task]:
        """The follow-up chain the task belongs to, its first task first, then in order of creation."""
        task = self.task(task_id)
        root = self.store.get(task.root_id) if task.root_id else task
        return ([root] if root else []) + self.store.followups(task.root_id or task.id)

    def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
        return self.store.events(task_id, after=after, limit=limit)

    def executions(self) -> list[Execution]:
        return self.backends.jobs.list_active()

    def health(self) -> dict[str, dict[str, Any]]:
        """Each backend's own report; one that fails to report is `ok: false`, logged."""
        parts = {"store": self.store, "queue": self.backends.queue, "jobs": self.backends.jobs}
        return {name: _health_of(name, part) for name, part in parts.items()}

    # --- workspaces ------------------------------------------------------------------------

    def reset_workspace(self, workspace_id: str) -> WorkspaceReset:
        """Forget what persists of a workspace between tasks (its checkout with ignored files,
        setup markers, its snapshot): the next task starts from a fresh clone and runs setup.
        ConflictError while a task of the workspace is dispatched or running."""
        _check_workspace_id(workspace_id)
        busy = ConflictError(
            f"workspace {workspace_id} has a task dispatched or running; cancel it or let it end, then reset"
        )
        if self.store.count_active(workspace_id):
            raise busy
        try:
            removed = reset_workspace_files(self.settings, workspace_id)
        except TimeoutError:
            raise busy from None
        if self.backends.artifacts.delete(snapshot_key(workspace_id)):
            removed.append("snapshot")
        logger.info("reset workspace %s: %s", workspace_id, ", ".join(removed) or "nothing to remove")
        return WorkspaceReset(workspace_id=workspace_id, removed=removed)

    def memory(self, workspace_id: str, query: str | None = None, limit: int = 50) -> list[MemoryEntry]:
        """A workspace's memory: newest first, or with `query` the entries that match it best."""
        _check_workspace_id(workspace_id)
        if query:
            return self.backends.memory.search(workspace_id, query, limit=limit)
        return self.backends.memory.recent(workspace_id, limit=limit)

    def clear_memory(self, workspace_id: str) -> int:
        """Forget a workspace's memory; how many entries it held."""
        _check_workspace_id(workspace_id)
        removed = self.backends.memory.clear(workspace_id)
        logger.info("cleared the memory of workspace %s: %d entries", workspace_id, removed)
        return removed

    # --- reap and schedule ----------------------------------------------------------------

    def reap(self) -> ReapReport:
        """Requeue (attempt+1) or fail tasks whose heartbeat went stale; wake idle workspaces."""
        report = ReapReport()
        cutoff = utcnow() - timedelta(seconds=self.settings.heartbeat_timeout_s)
        stale = self.store.stale(cutoff)
        for task in stale:
            self._reap_one(task, report)
        just_published = {t.workspace_id for t in stale if t.id in report.requeued}
        queued = {t.workspace_id for t in self.store.list_tasks(status=TaskStatus.QUEUED, limit=1000)}
        for workspace in queued - just_published:
            if self.schedule_next(workspace):
                report.rescheduled.append(workspace)
        return report

    def _reap_one(self, task: Task, report: ReapReport) -> None:
        silent = f"no heartbeat for {self.settings.heartbeat_timeout_s}s"
        if task.execution:
            self.backends.jobs.cancel(task.execution)
        if task.attempt < self.settings.max_attempts:
            changes = {"attempt": task.attempt + 1, "execution": None, "heartbeat_at": None, "error": None}
            event = {"attempt": task.attempt + 1, "reason": f"{silent}; retrying"}
            requeued = self._move(task.id, LIVE, TaskStatus.QUEUED, attempt=task.attempt, changes=changes, event=event)
            if requeued:
                report.requeued.append(task.id)
                self._publish(requeued)
            return
        reason = f"{silent} on attempt {task.attempt} of {self.settings.max_attempts}; giving up"
        failed = {"error": reason}
        if self._move(task.id, LIVE, TaskStatus.FAILED, attempt=task.attempt, changes=failed, event=failed):
            report.failed.append(task.id)

    def schedule_next(self, workspace_id: str) -> bool:
        """Publish the oldest QUEUED task of the workspace when it has room; True when published."""
        if not self._has_room(workspace_id):
            return False
        queued = self.store.list_tasks(status=TaskStatus.QUEUED, workspace_id=workspace_id, limit=1000)
        if not queued:
            return False
        return self._publish(min(queued, key=lambda t: t.created_at))


def _duplicate(task: Task) -> DispatchOutcome:
    """A delivery for an attempt that is not QUEUED (any more): a no-op."""
    return DispatchOutcome("duplicate", task.id, task.execution, f"{task.status.value} attempt {task.attempt}")


def _health_of(name: str, backend: Any) -> dict[str, Any]:
    try:
        return dict(backend.health())
    except Exception as exc:  # top-level handler of a health check: the report says what failed
        logger.exception("health check of the %s failed", name)
        return {"ok": False, "error": f"{type(exc).__name__}: health check failed"}


def _check_workspace_id(workspace_id: str) -> None:
    if not WORKSPACE_ID.match(workspace_id):
        raise InvalidRequestError(f"workspace id {workspace_id[:100]!r} is not one (see a task's workspace_id)")
