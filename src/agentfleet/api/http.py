"""The HTTP API: routing, auth, request bodies and errors around the use cases in service.py.

Framework-level (werkzeug requests and responses) and free of cloud specifics: functions/main.py
mounts `Api` as the `orchestrate` Cloud Function. Every 4xx/5xx is JSON `{"error": "..."}`
saying what to fix; an unexpected exception is logged and answered with a bare 500.

One unit, over ~300 lines: the one `Api` and the input rules its handlers share (bodies, query
parameters, cursors); the routes themselves are routes.py.
"""

from __future__ import annotations

import hmac
import json
import logging
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from agentfleet import jsontext
from agentfleet.api.bodies import (
    MAX_BODY_BYTES,
    MAX_SEQ,
    MAX_UPLOAD_BYTES,
    Chain,
    Containers,
    ErrorBody,
    Health,
    MemoryBody,
    MemoryCleared,
    Submitted,
    TaskLinks,
    TaskList,
    Uploaded,
    WorkspaceResetBody,
)
from agentfleet.api.console import Console
from agentfleet.api.events import PAGE, StreamConfig, event_page, event_stream
from agentfleet.api.openapi import openapi_document as _openapi_document
from agentfleet.api.routes import is_page, public_paths, url_map
from agentfleet.api.session import Sessions
from agentfleet.errors import ConflictError, InvalidRequestError, TaskNotFoundError
from agentfleet.service import Service
from agentfleet.tasks import Task, TaskStatus

logger = logging.getLogger("agentfleet.api")

ROUTES = url_map()
PUBLIC = public_paths()
"""Paths served without the bearer token."""


class HttpError(Exception):
    """An answer other than success: its status, the message for the client, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(
    body: BaseModel | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return Response(text, status=status, headers=headers, mimetype="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(ErrorBody(error=message), status, headers)


def reap_response(service: Service) -> Response:
    """Run the reaper once and report what it did (the `reap` function, for Cloud Scheduler)."""
    try:
        report = service.reap()
    except Exception:
        logger.exception("reap failed")
        return error_response(500, "internal error while reaping; see the server logs")
    logger.info("reaped: %s", asdict(report))
    return json_response(asdict(report))


class Api:
    """The `orchestrate` HTTP function: call it with a request, get a response."""

    def __init__(
        self,
        service: Service,
        stream: StreamConfig | None = None,
        *,
        token: str | None = None,
        hosts: frozenset[str] | None = None,
    ) -> None:
        """`token`: the bearer token (default: AGENTFLEET_API_TOKEN; none: no auth, for a platform
        that authenticates in front). `hosts`: when given, the only Host headers served and the
        only origins (http://HOST) a browser may send from: a loopback server's defence against
        DNS rebinding and cross-site requests."""
        self.service = service
        self.stream = stream or StreamConfig()
        configured = service.settings.api_token.get_secret_value() if service.settings.api_token else None
        token = token or configured
        self._token = token.encode() if token else None
        self.hosts = hosts
        self.console = Console(self, Sessions(self._token))

    def __call__(self, request: Request) -> Response:
        try:
            return self._handle(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
            return _without_reading_the_body(response) if exc.status == 413 else response
        except InvalidRequestError as exc:
            return error_response(400, f"invalid request: {exc}")
        except TaskNotFoundError as exc:
            return error_response(404, f"{exc}; list tasks with GET /tasks")
        except ConflictError as exc:
            return error_response(409, str(exc))
        except (ConnectionError, TimeoutError) as exc:
            logger.warning("a backend is unreachable on %s %s: %s", request.method, request.path, exc)
            return error_response(503, "a backend is unreachable; try again shortly", {"Retry-After": "5"})
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal error; see the server logs")

    def _handle(self, request: Request) -> Response:
        if is_page(request.path):
            return self.console(request)
        self.admit(request, public=request.path in PUBLIC)
        endpoint, args = self._route(request)
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        return handler(request, **args)

    def admit(self, request: Request, *, public: bool = False) -> None:
        """HttpError unless this server should answer the request: its Host (and Origin) checks, and
        the bearer token unless the path is `public`. Whatever else is mounted beside the API (the A2A
        endpoint) passes the same gate."""
        if self.hosts is not None:
            self._check_host(request, self.hosts)
        if not public:
            self._authorize(request)

    @staticmethod
    def _check_host(request: Request, hosts: frozenset[str]) -> None:
        host = request.headers.get("Host", "")
        if host.lower() not in hosts:
            raise HttpError(403, f"Host {host[:100]!r} is not this server; use http://{min(hosts)}")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in {f"http://{h}" for h in hosts}:
            raise HttpError(403, f"requests from the web origin {origin[:100]!r} are refused")

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token)

    def bearer_matches(self, request: Request) -> bool:
        """The request carries this server's token in its Authorization header."""
        return self._token is not None and self._authorized(request)

    def call(self, method: str, path: str, body: Any = None, *, host: str = "localhost") -> tuple[int, Any]:
        """This API's answer (status, JSON) to a request made in process with the server's own token:
        the console's forms go through the same routes, rules and errors as any client."""
        headers = [("Host", host)]
        if self._token is not None:
            headers.append(("Authorization", f"Bearer {self._token.decode()}"))
        environ = EnvironBuilder(path=path, method=method, json=body, headers=headers).get_environ()
        response = self(Request(environ))
        data = response.get_data()
        return response.status_code, json.loads(data) if data else None

    def _authorize(self, request: Request) -> None:
        if not self._authorized(request):
            raise HttpError(
                401,
                "missing or wrong bearer token: send the header 'Authorization: Bearer <AGENTFLEET_API_TOKEN>'",
                {"WWW-Authenticate": 'Bearer realm="agentfleet"'},
            )

    @staticmethod
    def _route(request: Request) -> tuple[str, dict[str, Any]]:
        try:
            endpoint, args = ROUTES.bind("localhost").match(request.path, request.method)
        except MethodNotAllowed as exc:
            allowed = sorted(exc.valid_methods or [])
            raise HttpError(
                405,
                f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed)}",
                {"Allow": ", ".join(allowed)},
            ) from None
        except HTTPException:
            raise HttpError(
                404, f"no route {request.method} {request.path}; the routes are listed at GET /openapi.json"
            ) from None
        return str(endpoint), dict(args)

    # --- handlers -------------------------------------------------------------------------

    def _submit(self, request: Request) -> Response:
        return _submitted(*self.service.submit(read_json_body(request)))

    def _followup(self, request: Request, task_id: str) -> Response:
        self._task(task_id)  # an unknown task is a 404 before its body is read
        return _submitted(*self.service.followup(task_id, read_json_body(request)))

    def _chain(self, request: Request, task_id: str) -> Response:
        task = self._task(task_id)
        return json_response(Chain(root_id=task.root_id or task.id, tasks=self.service.chain(task_id)))

    def _upload_file(self, request: Request) -> Response:
        with tempfile.NamedTemporaryFile(prefix="agentfleet-upload-") as tmp:
            name = read_upload(request, tmp)
            tmp.flush()
            stored = self.service.upload_input(name, Path(tmp.name))
        body = Uploaded(key=stored.key, name=stored.name, size=stored.size)
        return json_response(body, 201, {"Location": f"/files/{stored.key}"})

    def _get_task(self, request: Request, task_id: str) -> Response:
        return json_response(self._task(task_id))

    def _list_tasks(self, request: Request) -> Response:
        status = _status_param(request.args.get("status"))
        limit = int_param(request, "limit", default=100, maximum=1000, minimum=1)
        workspace = request.args.get("workspace") or None
        tasks = self.service.tasks(status=status, workspace_id=workspace, limit=limit)
        return json_response(TaskList(tasks=tasks))

    def _events(self, request: Request, task_id: str) -> Response:
        task = self._task(task_id)
        if request.method == "GET" and "text/event-stream" in request.headers.get("Accept", ""):
            after = _last_event_id(request)
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            stream = _logged(event_stream(self.service, task_id, after, self.stream), task_id)
            return Response(stream, mimetype="text/event-stream", headers=headers)
        after = int_param(request, "after", default=0, minimum=0, maximum=MAX_SEQ)
        limit = int_param(request, "limit", default=PAGE, minimum=1, maximum=PAGE)
        return json_response(event_page(self.service, task, after, limit, self.stream.settle_s))

    def _cancel(self, request: Request, task_id: str) -> Response:
        return json_response(self.service.cancel(task_id))

    def _containers(self, request: Request) -> Response:
        workspaces: dict[str, list[Any]] = defaultdict(list)
        executions = self.service.executions()
        for execution in executions:
            workspaces[execution.workspace_id].append(execution)
        return json_response(Containers(workspaces=workspaces, count=len(executions)))

    def _reset_workspace(self, request: Request, workspace_id: str) -> Response:
        reset = self.service.reset_workspace(workspace_id)
        return json_response(WorkspaceResetBody(workspace_id=reset.workspace_id, removed=reset.removed))

    def _memory(self, request: Request, workspace_id: str) -> Response:
        limit = int_param(request, "limit", default=50, maximum=200, minimum=1)
        query = request.args.get("q") or None
        if query is not None and len(query) > 1000:
            raise InvalidRequestError("q: at most 1000 characters")
        entries = self.service.memory(workspace_id, query, limit)
        return json_response(MemoryBody(workspace_id=workspace_id, entries=entries))

    def _clear_memory(self, request: Request, workspace_id: str) -> Response:
        removed = self.service.clear_memory(workspace_id)
        return json_response(MemoryCleared(workspace_id=workspace_id, removed=removed))

    def _health(self, request: Request) -> Response:
        reports = self.service.health()
        ok = all(report.get("ok") is not False for report in reports.values())
        shown = reports if self._authorized(request) else {}  # the public answer: up or not, no details
        return json_response(Health(status="ok" if ok else "degraded", backends=shown), 200 if ok else 503)

    def _openapi(self, request: Request) -> Response:
        return json_response(_openapi_document())

    def _task(self, task_id: str) -> Task:
        return self.service.task(task_id)


def _submitted(task: Task, created: bool) -> Response:
    links = TaskLinks(self=f"/tasks/{task.id}", events=f"/tasks/{task.id}/events", cancel=f"/tasks/{task.id}/cancel")
    body = Submitted(task_id=task.id, status=task.status, workspace_id=task.workspace_id, links=links)
    return json_response(body, 202 if created else 200, {"Location": links.self})


# --- input ------------------------------------------------------------------------------------


def read_json_body(request: Request) -> Any:
    """The request's JSON body: application/json, at most MAX_BODY_BYTES, well-formed."""
    if request.mimetype != "application/json":
        got = request.mimetype or "no Content-Type"
        raise HttpError(415, f"the body must be JSON: send 'Content-Type: application/json' (got {got})")
    too_large = HttpError(413, f"the body is larger than {MAX_BODY_BYTES} bytes; send input files by reference")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    if not raw.strip():
        raise HttpError(400, "the body is empty; send a task request as a JSON object (see GET /openapi.json)")
    try:
        body = jsontext.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise HttpError(400, "the body is not UTF-8 text; send JSON encoded as UTF-8") from None
    except jsontext.JsonTextError as exc:
        raise HttpError(400, f"the body is refused: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def read_upload(request: Request, dest: IO[bytes]) -> str:
    """Copy an uploaded file into `dest` (at most MAX_UPLOAD_BYTES) and return its name: the raw
    body named by ?name=, or the `file` part of multipart/form-data (named by ?name= or its filename)."""
    too_large = HttpError(413, f"the file is larger than {MAX_UPLOAD_BYTES} bytes; split it or link to it")
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES + 64 * 1024:
        raise too_large
    name = request.args.get("name") or ""
    if request.mimetype == "multipart/form-data":
        request.max_content_length = MAX_UPLOAD_BYTES + 64 * 1024
        try:
            part = request.files.get("file")
        except RequestEntityTooLarge:
            raise too_large from None
        if part is None:
            raise HttpError(400, "no `file` part in the form; send the file as a part named 'file'")
        name = name or (part.filename or "")
        source: IO[bytes] = part.stream
    else:
        source = request.stream
    if not name:
        raise HttpError(400, "the file has no name: add ?name=<file name> to the URL")
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > MAX_UPLOAD_BYTES:
            raise too_large
        dest.write(chunk)
    return name


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    return default if raw in (None, "") else _bounded_int(raw, f"query parameter {name!r}", minimum, maximum)


def _bounded_int(raw: str, what: str, minimum: int, maximum: int | None) -> int:
    upper = f" and at most {maximum}" if maximum is not None else ""
    message = f"{what} must be a whole number at least {minimum}{upper} (got {raw[:50]!r})"
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, message) from None
    if value < minimum or (maximum is not None and value > maximum):
        raise HttpError(400, message)
    return value


def _last_event_id(request: Request) -> int:
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        return _bounded_int(header.strip(), "header 'Last-Event-ID'", 0, MAX_SEQ)
    return int_param(request, "after", default=0, minimum=0, maximum=MAX_SEQ)


def _status_param(raw: str | None) -> TaskStatus | None:
    if not raw:
        return None
    try:
        return TaskStatus(raw.upper())
    except ValueError:
        valid = ", ".join(s.value for s in TaskStatus)
        raise HttpError(400, f"unknown status {raw[:50]!r}; use one of {valid}") from None


def _logged(stream: Iterator[str], task_id: str) -> Iterator[str]:
    """The stream, ended (without `event: end`) and logged when it fails after the response started."""
    try:
        yield from stream
    except Exception:
        logger.exception("the event stream of task %s failed", task_id, extra={"task_id": task_id})


def _without_reading_the_body(response: Response) -> Response:
    """functions-framework reads the whole body of every request answered by a non-streamed response
    (to spare the client a reset); sent as a one-chunk stream, a 413 leaves the rest of the body unread."""
    response.response = iter([response.get_data()])
    return response
