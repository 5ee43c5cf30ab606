"""The one route table of the HTTP API: routing (a werkzeug Map) and the OpenAPI document's
paths are both built from it, so a route and its documentation cannot drift apart.

A new route is one `Route` here and one `Api._<endpoint>` handler in http.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from werkzeug.routing import Map, Rule

from agentfleet.api.bodies import (
    MAX_BODY_BYTES,
    MAX_SEQ,
    MAX_UPLOAD_BYTES,
    Chain,
    Containers,
    EventPage,
    Health,
    MemoryBody,
    MemoryCleared,
    Submitted,
    TaskList,
    Uploaded,
    WorkspaceResetBody,
)
from agentfleet.tasks import FollowupRequest, Task, TaskRequest, TaskStatus

Schema = type[BaseModel] | dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One documented answer: its body's model (or a plain JSON schema) and what it means."""

    body: Schema
    description: str
    stream: str = ""
    """When the route can also answer text/event-stream: what the stream holds."""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    """In OpenAPI's form: /tasks/{task_id}."""
    endpoint: str
    """The handler: `Api._<endpoint>`."""
    summary: str
    replies: dict[int, Reply]
    errors: dict[int, str] = field(default_factory=dict)
    """Error statuses (an ErrorBody each) beyond those every route may answer."""
    parameters: tuple[dict[str, Any], ...] = ()
    body: type[BaseModel] | None = None
    upload: bool = False
    """The body is a file: raw bytes, or multipart/form-data."""
    public: bool = False
    """Served without the bearer token."""

    @property
    def rule(self) -> str:
        """The path in werkzeug's form: /tasks/<task_id>."""
        return self.path.replace("{", "<").replace("}", ">")


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


NOT_FOUND = "No task has that id"
BAD_QUERY = "A query parameter is invalid"
STREAM = (
    "Each event as `id: <seq>`, `event: <kind>`, `data: <TaskEvent JSON>`; `: keep-alive` comments during "
    "silence; a final `event: end` once the task has ended."
)
ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/orchestrate",
        "submit",
        "Submit a task",
        replies={
            202: Reply(Submitted, "The task was created and queued"),
            200: Reply(Submitted, "The idempotency key was used before, for this request: that task"),
        },
        errors={
            400: "Malformed JSON, unknown fields, wrong types or an invalid request",
            409: "The idempotency key was used before for a different request",
            413: f"The body is larger than {MAX_BODY_BYTES} bytes",
            415: "The body is not application/json",
        },
        body=TaskRequest,
    ),
    Route(
        "POST",
        "/files",
        "upload_file",
        "Upload an input file: the raw body with ?name=, or multipart/form-data with a `file` part; a task "
        "names it in `files` by its key or its bare name (a later upload of a name replaces it)",
        replies={201: Reply(Uploaded, "The file was stored")},
        errors={
            400: "No name, a name that is not allowed, or no `file` part",
            413: f"The file is larger than {MAX_UPLOAD_BYTES} bytes",
        },
        parameters=(_query("name", {"type": "string", "maxLength": 257}, "The file's name (`a.md` or `batch/a.md`)"),),
        upload=True,
    ),
    Route(
        "GET",
        "/tasks",
        "list_tasks",
        "List tasks, newest first",
        replies={200: Reply(TaskList, "The tasks")},
        errors={400: BAD_QUERY},
        parameters=(
            _query("status", {"type": "string", "enum": [s.value for s in TaskStatus]}, "Only this status"),
            _query("workspace", {"type": "string"}, "Only this workspace id"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "At most"),
        ),
    ),
    Route(
        "GET",
        "/tasks/{task_id}",
        "get_task",
        "Get a task",
        replies={200: Reply(Task, "The task")},
        errors={404: NOT_FOUND},
        parameters=(_path_param("task_id"),),
    ),
    Route(
        "GET",
        "/tasks/{task_id}/events",
        "events",
        "A task's events: a page of JSON, or a live stream with Accept: text/event-stream",
        replies={200: Reply(EventPage, "A page of events (JSON), or a Server-Sent Events stream", stream=STREAM)},
        errors={400: BAD_QUERY, 404: NOT_FOUND},
        parameters=(
            _path_param("task_id"),
            _query(
                "after", {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0}, "Events with seq > after"
            ),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}, "At most"),
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                "description": "Resume a stream after this seq (wins over `after`)",
            },
        ),
    ),
    Route(
        "POST",
        "/tasks/{task_id}/cancel",
        "cancel",
        "Cancel a task that has not ended",
        replies={200: Reply(Task, "The cancelled task")},
        errors={404: NOT_FOUND, 409: "The task has already ended"},
        parameters=(_path_param("task_id"),),
    ),
    Route(
        "POST",
        "/tasks/{task_id}/followup",
        "followup",
        "Follow up an ended task: a new task on the same repositories, starting from its result (its pushed "
        "branch, or its patch on its base), with the chain so far in the prompt; it pushes to the chain's branch",
        replies={
            202: Reply(Submitted, "The follow-up was created and queued"),
            200: Reply(Submitted, "The idempotency key was used before, for this follow-up: that task"),
        },
        errors={
            400: "Malformed JSON, unknown fields, wrong types or an invalid request",
            404: NOT_FOUND,
            409: "The task has not ended (or its change was not kept), or the idempotency key was used for "
            "a different request",
            413: f"The body is larger than {MAX_BODY_BYTES} bytes",
            415: "The body is not application/json",
        },
        parameters=(_path_param("task_id"),),
        body=FollowupRequest,
    ),
    Route(
        "GET",
        "/tasks/{task_id}/chain",
        "chain",
        "The follow-up chain a task belongs to: its first task, then each follow-up in order",
        replies={200: Reply(Chain, "The chain")},
        errors={404: NOT_FOUND},
        parameters=(_path_param("task_id"),),
    ),
    Route(
        "GET",
        "/containers",
        "containers",
        "Active agent executions, by workspace",
        replies={200: Reply(Containers, "The active executions")},
    ),
    Route(
        "POST",
        "/workspaces/{workspace_id}/reset",
        "reset_workspace",
        "Forget what a workspace keeps between tasks: its checkout (ignored files included), setup markers "
        "and snapshot; the next task starts from a fresh clone",
        replies={200: Reply(WorkspaceResetBody, "The workspace was reset")},
        errors={400: "That is not a workspace id", 409: "A task of the workspace is dispatched or running"},
        parameters=(_path_param("workspace_id"),),
    ),
    Route(
        "GET",
        "/workspaces/{workspace_id}/memory",
        "memory",
        "What the workspace keeps of its finished tasks and its agents' notes (newest first, or those matching `q`)",
        replies={200: Reply(MemoryBody, "The workspace's memory entries")},
        errors={400: "That is not a workspace id, or a query parameter is invalid"},
        parameters=(
            _path_param("workspace_id"),
            _query("q", {"type": "string", "maxLength": 1000}, "Only the entries matching these words, best first"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "At most"),
        ),
    ),
    Route(
        "DELETE",
        "/workspaces/{workspace_id}/memory",
        "clear_memory",
        "Forget the workspace's memory: later tasks see none of what came before",
        replies={200: Reply(MemoryCleared, "The memory was cleared")},
        errors={400: "That is not a workspace id"},
        parameters=(_path_param("workspace_id"),),
    ),
    Route(
        "GET",
        "/health",
        "health",
        "Health of the API; each backend's report only with the token",
        replies={200: Reply(Health, "Every backend is healthy"), 503: Reply(Health, "A backend reports ok: false")},
        public=True,
    ),
    Route(
        "GET",
        "/openapi.json",
        "openapi",
        "This document",
        replies={200: Reply({"type": "object"}, "The OpenAPI document")},
    ),
)
"""Every route of the API."""
COMMON_ERRORS = {
    401: "Missing or wrong bearer token",
    403: "A local server: the Host header names another server, or a web page sent the request",
    500: "Unexpected server error",
    503: "A backend (store, queue, job runner) cannot be reached; retry after Retry-After seconds",
}
PUBLIC_ERRORS = {403: COMMON_ERRORS[403], 500: COMMON_ERRORS[500]}


def url_map() -> Map:
    """The werkzeug routing of the table: each rule's endpoint is the route's handler name."""
    return Map(
        [Rule(route.rule, methods=[route.method], endpoint=route.endpoint) for route in ROUTES],
        strict_slashes=False,
        merge_slashes=False,
    )


def public_paths() -> frozenset[str]:
    return frozenset(p for route in ROUTES if route.public for p in (route.path, route.path + "/"))


# --- the web console -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    """One route of the web console (api/console.py): HTML for people, signed in by a session cookie.
    Not in the OpenAPI document, which is the contract of the JSON API: its routes take the bearer
    token only, and never the console's cookie."""

    method: str
    path: str
    endpoint: str
    """The handler: `Console.<endpoint>`."""
    summary: str
    public: bool = False
    """Served without signing in (the sign-in form and the static files)."""

    @property
    def rule(self) -> str:
        return self.path.replace("{", "<").replace("}", ">")


PAGES: tuple[Page, ...] = (
    Page("GET", "/", "task_list", "The tasks, newest first, filtered by status and text"),
    Page("GET", "/console/login", "login_form", "The sign-in form", public=True),
    Page("POST", "/console/login", "login", "Sign in with the API token: sets the session cookie", public=True),
    Page("POST", "/console/logout", "logout", "Sign out"),
    Page("GET", "/console/new", "new_task", "The submit form"),
    Page("POST", "/console/tasks", "submit", "Submit the form's task (POST /orchestrate)"),
    Page("GET", "/console/tasks/{task_id}", "task_page", "A task: its steps (live), summary, diff, follow-up"),
    Page("GET", "/console/tasks/{task_id}/events", "steps", "A task's steps as Server-Sent Events of HTML"),
    Page("POST", "/console/tasks/{task_id}/cancel", "cancel", "Cancel the task (POST /tasks/{id}/cancel)"),
    Page("POST", "/console/tasks/{task_id}/followup", "followup", "A follow-up (POST /tasks/{id}/followup)"),
    Page("GET", "/console/workspaces/{workspace_id}/memory", "memory", "A workspace's memory"),
    Page("POST", "/console/workspaces/{workspace_id}/memory/clear", "clear_memory", "Clear a workspace's memory"),
    Page("GET", "/console/static/{name}", "static", "The console's stylesheets and script", public=True),
)
"""Every route of the web console."""


def is_page(path: str) -> bool:
    """Whether a path is the console's (it owns / and /console/...; the JSON API has the rest)."""
    return path == "/" or path == "/console" or path.startswith("/console/")


def page_map() -> Map:
    return Map(
        [Rule(page.rule, methods=[page.method], endpoint=page.endpoint) for page in PAGES],
        strict_slashes=False,
        merge_slashes=False,
    )
