"""The bodies of the HTTP API's responses: pydantic models, from which the responses are built
and the OpenAPI document describes them, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentfleet.memory import MemoryEntry
from agentfleet.ports import Execution
from agentfleet.tasks import Task, TaskEvent, TaskStatus

MAX_BODY_BYTES = 1024 * 1024
MAX_UPLOAD_BYTES = 32 * 1024 * 1024
"""The largest input file POST /files takes (the request limit of Cloud Functions)."""
"""The largest request body the API reads (1 MiB)."""
MAX_SEQ = 2**63 - 1
"""The largest event seq a client may pass (`after`, `Last-Event-ID`): the stores' 64-bit integers."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Body):
    """Every 4xx and 5xx response."""

    error: str = Field(description="What is wrong and what to do about it")


class TaskLinks(_Body):
    self: str
    events: str
    cancel: str


class Submitted(_Body):
    task_id: str
    status: TaskStatus
    workspace_id: str
    links: TaskLinks


class TaskList(_Body):
    tasks: list[Task] = Field(description="Newest first")


class Chain(_Body):
    root_id: str = Field(description="The chain's first task")
    tasks: list[Task] = Field(description="The first task, then its follow-ups in the order they were made")


class EventPage(_Body):
    events: list[TaskEvent]
    next_after: int = Field(description="Pass as `after` to get the next page")
    final: bool = Field(description="The task has ended and every one of its events was returned")


class Containers(_Body):
    workspaces: dict[str, list[Execution]] = Field(description="Active executions by workspace id")
    count: int


class Uploaded(_Body):
    key: str = Field(description="The artifact key; a task's `files` names it (or the bare name)")
    name: str
    size: int = Field(description="Bytes stored")


class WorkspaceResetBody(_Body):
    workspace_id: str
    removed: list[str] = Field(description="What there was to remove: checkout, setup markers, snapshot")


class MemoryBody(_Body):
    workspace_id: str
    entries: list[MemoryEntry] = Field(description="Newest first; with `q`, the best matches first")


class MemoryCleared(_Body):
    workspace_id: str
    removed: int = Field(description="How many entries the memory held")


class Health(_Body):
    status: Literal["ok", "degraded"]
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Each backend's own health report (only to a request with the token)"
    )
