"""AgentFleet as an A2A agent: its agent card, and an AgentExecutor that works each message as a task.

A message becomes a task through the same `Service.submit` (the same validation) as POST /orchestrate:
its text parts are the query, its data parts the other TaskRequest fields (`repo_url`, `repos`, `ref`,
`files`, `options`). The task's status maps back (QUEUED, DISPATCHED, RUNNING → working; SUCCEEDED →
completed, with the summary and the patch as artifacts; FAILED → failed with the reason; CANCELLED →
canceled; a request that does not validate → rejected with what to fix), and an A2A cancel cancels
the task. A later message in the same A2A context that names no repository is a follow-up of the
context's last task (Service.followup; rejected with the reason while that task has not ended).
`agentfleet serve` mounts it beside the HTTP API (`mount`): the card at
/.well-known/agent-card.json (public), JSON-RPC at /a2a (the API's bearer token and Host checks).

The A2A task record (history, artifacts) lives in this process's memory (a2a-sdk's InMemoryTaskStore);
the AgentFleet task behind it is in the TaskStore, as every task is.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from a2a.helpers import get_data_parts, get_message_text, new_task_from_user_message, new_text_part, new_url_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    Message,
    Part,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT, TransportProtocol
from a2wsgi import ASGIMiddleware
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from werkzeug.wrappers import Request

from agentfleet.api.http import Api, HttpError, error_response
from agentfleet.errors import ConflictError, InvalidRequestError
from agentfleet.service import Service
from agentfleet.tasks import Task, TaskStatus

logger = logging.getLogger("agentfleet.a2a")

RPC_PATH = "/a2a"
CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
POLL_S = 0.5
MAX_INLINE_PATCH_BYTES = 256 * 1024
"""A patch up to this size travels inside its artifact too (a link alone may not be reachable)."""
SKILL = AgentSkill(
    id="repository-task",
    name="Work a repository task",
    description=(
        "Clone one or more git repositories, work the query in a sandbox with an AI coding agent, and "
        "return a summary and the patch. Send the query as text and the repositories as a data part: "
        '{"repo_url": "https://host/owner/repo"} or {"repos": ["URL", ...]}, optionally "ref", "files" '
        'and "options" (max_steps, timeout_s, network, push_branch, setup, check) as in POST /orchestrate. '
        "A later message in the same context, naming no repository, follows up the context's last task: it "
        "continues that task's result (and its branch)."
    ),
    tags=["code", "git", "repository", "patch"],
    examples=["Fix the failing test in tests/test_app.py", "Add type hints to src/util.py"],
    input_modes=["text/plain", "application/json"],
    output_modes=["text/plain", "text/x-diff"],
)
FOLLOWUP_FIELDS = frozenset({"query", "options", "idempotency_key"})
"""What a message that follows up its context's last task may carry (FollowupRequest's fields)."""
_REACHED: contextvars.ContextVar[str] = contextvars.ContextVar("a2a_reached", default="http://127.0.0.1:8080")
"""The scheme://host a request reached: where the card says to send messages."""


def agent_card(version: str = "0.1.0") -> AgentCard:
    return AgentCard(
        name="AgentFleet",
        description="Runs AI coding agents on git repositories: one task per message, a patch back.",
        supported_interfaces=[
            AgentInterface(
                url=f"http://127.0.0.1:8080{RPC_PATH}",  # replaced per request by the address reached
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        version=version,
        capabilities=AgentCapabilities(streaming=True),
        security_schemes={"bearer": SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(scheme="bearer"))},
        security_requirements=[SecurityRequirement(schemes={"bearer": StringList()})],
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "text/x-diff"],
        skills=[SKILL],
    )


def task_body(message: Message, idempotency_key: str) -> dict[str, Any]:
    """The TaskRequest body a message asks for: its data parts (JSON objects) merged in order, the
    query from its text parts unless a data part gives one. Validation is the service's."""
    body: dict[str, Any] = {}
    for data in get_data_parts(message.parts):
        if not isinstance(data, dict):
            raise InvalidRequestError(
                "a data part must be a JSON object of task fields (repo_url, repos, ref, files, options)"
            )
        body.update(data)
    text = get_message_text(message).strip()
    if text and "query" not in body:
        body["query"] = text
    body.setdefault("idempotency_key", idempotency_key)
    return _whole_numbers(body)


def _whole_numbers(value: Any) -> Any:
    """JSON numbers as protobuf carries them (every one a double) back to ints where whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


class TaskExecutor(AgentExecutor):
    """Each A2A task is one AgentFleet task, submitted, followed and cancelled through the Service."""

    def __init__(self, service: Service, poll_s: float = POLL_S) -> None:
        self.service = service
        self.poll_s = poll_s
        self._submitted: dict[str, asyncio.Future[tuple[Task, bool]]] = {}
        """A2A task id → its AgentFleet task, once submitted (what cancel needs)."""
        self._latest: dict[str, str] = {}
        """A2A context id → the AgentFleet task its last message made (what a follow-up follows)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message, a2a_id, context_id = context.message, context.task_id, context.context_id
        if message is None or a2a_id is None or context_id is None:
            raise InvalidRequestError("an A2A request without a message")
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(message))
        updater = TaskUpdater(event_queue, a2a_id, context_id)
        try:
            body = task_body(message, idempotency_key=f"a2a-{a2a_id}")
        except InvalidRequestError as exc:
            await updater.reject(updater.new_agent_message([new_text_part(f"invalid request: {exc}")]))
            return
        submitted = asyncio.ensure_future(asyncio.to_thread(self._submit, context_id, body))
        self._submitted[a2a_id] = submitted
        try:
            task, _ = await asyncio.shield(submitted)  # a cancel while submitting still finds the task
        except (InvalidRequestError, ConflictError) as exc:
            self._submitted.pop(a2a_id, None)
            await updater.reject(updater.new_agent_message([new_text_part(f"invalid request: {exc}")]))
            return
        self._latest[context_id] = task.id
        try:
            final = await self._follow(task, updater)
            await self._finish(final, updater)
        finally:
            self._submitted.pop(a2a_id, None)

    def _submit(self, context_id: str, body: dict[str, Any]) -> tuple[Task, bool]:
        """A new task; or, in a context that made one before and naming no repository (only a query,
        options), a follow-up of the context's last task."""
        earlier = self._latest.get(context_id)
        if earlier is None or set(body) - FOLLOWUP_FIELDS:
            return self.service.submit(body)
        return self.service.followup(earlier, body)

    async def _follow(self, task: Task, updater: TaskUpdater) -> Task:
        """Poll the task until it ends, reporting each status it passes through as `working`."""
        shown: TaskStatus | None = None
        while not task.status.final:
            if task.status is not shown:
                shown = task.status
                note = f"AgentFleet task {task.id} is {task.status.value} (workspace {task.workspace_id})"
                metadata = {"agentfleet_task_id": task.id, "status": task.status.value}
                await updater.start_work(updater.new_agent_message([new_text_part(note)], metadata=metadata))
            await asyncio.sleep(self.poll_s)
            task = await asyncio.to_thread(self.service.task, task.id)
        return task

    async def _finish(self, task: Task, updater: TaskUpdater) -> None:
        metadata = {"agentfleet_task_id": task.id, "status": task.status.value}
        if task.status is TaskStatus.SUCCEEDED and task.result is not None:
            summary = task.result.summary
            await updater.add_artifact([new_text_part(summary)], name="summary", metadata=metadata)
            if task.result.patch:
                parts = await asyncio.to_thread(self._patch_parts, task.result.patch, task.result.diff_stat)
                await updater.add_artifact(parts, name="patch", metadata={**metadata, "key": task.result.patch})
            await updater.complete(updater.new_agent_message([new_text_part(summary)], metadata=metadata))
        elif task.status is TaskStatus.CANCELLED:
            await updater.cancel(updater.new_agent_message([new_text_part("cancelled")], metadata=metadata))
        else:
            reason = task.error or "the task failed without a reason"
            await updater.failed(updater.new_agent_message([new_text_part(reason)], metadata=metadata))

    def _patch_parts(self, key: str, diff_stat: str) -> list[Part]:
        """The patch as a link (file:// locally, gs:// in the cloud) and, when small, its text."""
        artifacts = self.service.backends.artifacts
        where = artifacts.uri(key)
        link = Path(where).as_uri() if where.startswith("/") else where
        parts = [new_url_part(link, media_type="text/x-diff", filename="patch.diff")]
        if diff_stat:
            parts.append(new_text_part(diff_stat))
        data = artifacts.get_bytes(key)
        if len(data) <= MAX_INLINE_PATCH_BYTES:
            parts.append(new_text_part(data.decode("utf-8", errors="replace"), media_type="text/x-diff"))
        return parts

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        a2a_id, context_id = context.task_id or "", context.context_id or ""
        submitted = self._submitted.get(a2a_id)
        if submitted is not None:
            try:
                task, _ = await submitted
            except (InvalidRequestError, ConflictError):
                task = None
            if task is not None:
                try:
                    await asyncio.to_thread(self.service.cancel, task.id)
                except ConflictError:
                    logger.info("A2A cancel of task %s, which had already ended", task.id, extra={"task_id": task.id})
        updater = TaskUpdater(event_queue, a2a_id, context_id)
        await updater.cancel(updater.new_agent_message([new_text_part("cancelled")]))


class _Reached:
    """ASGI middleware: note the scheme and Host a request reached, for the card it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host") or "127.0.0.1"
            _REACHED.set(f"{scope.get('scheme', 'http')}://{host}")
        await self.app(scope, receive, send)


async def _card_for_request(card: AgentCard) -> AgentCard:
    served = AgentCard()
    served.CopyFrom(card)
    served.supported_interfaces[0].url = _REACHED.get() + RPC_PATH
    return served


def a2a_app(service: Service, poll_s: float = POLL_S) -> ASGIApp:
    """The A2A endpoint as an ASGI app (Starlette): the card route and the JSON-RPC route."""
    card = agent_card()
    handler = DefaultRequestHandler(TaskExecutor(service, poll_s), InMemoryTaskStore(), card)
    routes = [
        *create_agent_card_routes(card, card_modifier=_card_for_request),
        *create_jsonrpc_routes(handler, RPC_PATH),
    ]
    return _Reached(Starlette(routes=routes))


class WithA2A:
    """A WSGI app: the A2A endpoint (through the API's gate) beside the API, which serves the rest."""

    def __init__(self, api: Api, a2a: ASGIApp) -> None:
        self.api = api
        self.http = Request.application(api)
        self.a2a = ASGIMiddleware(a2a, wait_time=5.0)  # type: ignore[arg-type]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in (RPC_PATH, CARD_PATH):
            return self.http(environ, start_response)  # type: ignore[no-any-return]
        try:
            self.api.admit(Request(environ), public=path == CARD_PATH)
        except HttpError as exc:
            return error_response(exc.status, exc.message, exc.headers)(environ, start_response)
        return self.a2a(environ, _without_hop_by_hop(start_response))  # type: ignore[arg-type]


HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


def _without_hop_by_hop(start_response: Any) -> Any:
    """start_response dropping the headers a WSGI app may not set (PEP 3333), which the ASGI side's
    event stream sets (Connection: keep-alive); the WSGI server handles the connection itself."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        kept = [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]
        return start_response(status, kept, exc_info)

    return start


def mount(api: Api) -> WithA2A:
    """The API with AgentFleet's A2A endpoint beside it (what `agentfleet serve` serves)."""
    return WithA2A(api, a2a_app(api.service))
