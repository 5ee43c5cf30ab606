"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models' JSON schemas.

The response bodies are pydantic models too (defined here): `agentfleet.api` builds every
response from them, so the document cannot drift from what the server sends.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from agentfleet.ports import Execution
from agentfleet.tasks import Task, TaskEvent, TaskRequest, TaskStatus

MAX_BODY_BYTES = 1024 * 1024
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


class EventPage(_Body):
    events: list[TaskEvent]
    next_after: int = Field(description="Pass as `after` to get the next page")
    final: bool = Field(description="The task has ended and every one of its events was returned")


class Containers(_Body):
    workspaces: dict[str, list[Execution]] = Field(description="Active executions by workspace id")
    count: int


class WorkspaceResetBody(_Body):
    workspace_id: str
    removed: list[str] = Field(description="What there was to remove: checkout, setup markers, snapshot")


class Health(_Body):
    status: Literal["ok", "degraded"]
    backends: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Each backend's own health report (only to a request with the token)"
    )


_MODELS: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
    (TaskRequest, "validation"),
    (Task, "serialization"),
    (Submitted, "serialization"),
    (TaskList, "serialization"),
    (EventPage, "serialization"),
    (Containers, "serialization"),
    (Health, "serialization"),
    (WorkspaceResetBody, "serialization"),
    (ErrorBody, "serialization"),
]


def _json(ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths(refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def error(description: str) -> dict[str, Any]:
        return _json(refs["ErrorBody"], description)

    refused = error("A local server: the Host header names another server, or a web page sent the request")
    common = {
        "401": error("Missing or wrong bearer token"),
        "403": refused,
        "500": error("Unexpected server error"),
        "503": error("A backend (store, queue, job runner) cannot be reached; retry after Retry-After seconds"),
    }
    not_found = error("No task has that id")
    bad_query = error("A query parameter is invalid")
    submit_errors = {
        "400": error("Malformed JSON, unknown fields, wrong types or an invalid request"),
        "413": error(f"The body is larger than {MAX_BODY_BYTES} bytes"),
        "415": error("The body is not application/json"),
    }
    events_ok = _json(refs["EventPage"], "A page of events (JSON), or a Server-Sent Events stream")
    events_ok["content"]["text/event-stream"] = {
        "schema": {"type": "string"},
        "description": "Each event as `id: <seq>`, `event: <kind>`, `data: <TaskEvent JSON>`; "
        "`: keep-alive` comments during silence; a final `event: end` once the task has ended.",
    }
    return {
        "/orchestrate": {
            "post": {
                "operationId": "submitTask",
                "summary": "Submit a task",
                "requestBody": {"required": True, "content": {"application/json": {"schema": refs["TaskRequest"]}}},
                "responses": {
                    "202": _json(refs["Submitted"], "The task was created and queued"),
                    "200": _json(refs["Submitted"], "The idempotency key was used before, for this request: that task"),
                    "409": error("The idempotency key was used before for a different request"),
                    **submit_errors,
                    **common,
                },
            }
        },
        "/tasks": {
            "get": {
                "operationId": "listTasks",
                "summary": "List tasks, newest first",
                "parameters": [
                    _query("status", {"type": "string", "enum": [s.value for s in TaskStatus]}, "Only this status"),
                    _query("workspace", {"type": "string"}, "Only this workspace id"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "At most"),
                ],
                "responses": {"200": _json(refs["TaskList"], "The tasks"), "400": bad_query, **common},
            }
        },
        "/tasks/{task_id}": {
            "get": {
                "operationId": "getTask",
                "summary": "Get a task",
                "parameters": [_TASK_ID],
                "responses": {"200": _json(refs["Task"], "The task"), "404": not_found, **common},
            }
        },
        "/tasks/{task_id}/events": {
            "get": {
                "operationId": "taskEvents",
                "summary": "A task's events: a page of JSON, or a live stream with Accept: text/event-stream",
                "parameters": [
                    _TASK_ID,
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0},
                        "Events with seq > after",
                    ),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}, "At most"),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                        "description": "Resume a stream after this seq (wins over `after`)",
                    },
                ],
                "responses": {"200": events_ok, "400": bad_query, "404": not_found, **common},
            }
        },
        "/tasks/{task_id}/cancel": {
            "post": {
                "operationId": "cancelTask",
                "summary": "Cancel a task that has not ended",
                "parameters": [_TASK_ID],
                "responses": {
                    "200": _json(refs["Task"], "The cancelled task"),
                    "404": not_found,
                    "409": error("The task has already ended"),
                    **common,
                },
            }
        },
        "/containers": {
            "get": {
                "operationId": "listContainers",
                "summary": "Active agent executions, by workspace",
                "responses": {"200": _json(refs["Containers"], "The active executions"), **common},
            }
        },
        "/workspaces/{workspace_id}/reset": {
            "post": {
                "operationId": "resetWorkspace",
                "summary": "Forget what a workspace keeps between tasks: its checkout (ignored files "
                "included), setup markers and snapshot; the next task starts from a fresh clone",
                "parameters": [{"name": "workspace_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(refs["WorkspaceResetBody"], "The workspace was reset"),
                    "400": error("That is not a workspace id"),
                    "409": error("A task of the workspace is dispatched or running"),
                    **common,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Health of the API; each backend's report only with the token",
                "security": [],
                "responses": {
                    "200": _json(refs["Health"], "Every backend is healthy"),
                    "503": _json(refs["Health"], "A backend reports ok: false"),
                    "403": refused,
                    "500": common["500"],
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document"), **common},
            }
        },
    }


_DESCRIPTION = """Run AI coding agents on git repositories.

Every error is JSON `{"error": "..."}`: 400 for invalid input, 401 without the bearer token (when
the server has one: a local `agentfleet serve` always has one), 403 when a local server is asked
for another host or from a web page, 404 for an unknown task or route, 405 (with `Allow`) for a
wrong method, 409 for a change the task's state does not allow (or an idempotency key reused for a
different request), 413 for a body over 1 MiB, 415 for a body that is not application/json, 500
for a server fault."""


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; callers must not change it)."""
    names, defs = models_json_schema(_MODELS, ref_template="#/components/schemas/{model}")
    refs = {model.__name__: ref for (model, _mode), ref in names.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "AgentFleet", "version": "0.1.0", "description": _DESCRIPTION},
        "paths": _paths(refs),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "AGENTFLEET_API_TOKEN; a local `agentfleet serve` without one keeps its own in "
                    "$AGENTFLEET_HOME/api-token (or a Google identity token when the function is behind IAM)",
                }
            },
        },
        "security": [{"bearer": []}],
    }
