"""The web console: server-rendered pages over the same API, at / and /console/ (routes.PAGES).

Who may see it: with an API token, a person signs in once with it (POST /console/login) and gets
an HttpOnly, SameSite=Strict session cookie (session.py); a request with the bearer header is let
in as well. The cookie is good for the console's routes only: the JSON API takes the bearer token
alone, so no route outside this module can be driven by a browser's ambient credentials. Without a
token (a platform authenticates in front) the console is open and still issues a session, for CSRF.

What it changes it changes through the API's own routes, called in process with the server's token
(`Api.call`): a form gets the same validation, rules and error messages as any client, and the
follow-up and memory forms are written against their routes' contract alone. Every state-changing
form carries the session's CSRF token, and a POST whose Origin is another site is refused.

Everything shown is escaped by the templates; the Content-Security-Policy allows this origin's
script and styles only, so even markup that got through would run nothing.

One unit, over ~300 lines: the console's one gate (sessions, CSRF, origin) and the pages behind it;
their HTML is pages.py's.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from agentfleet.api.bodies import MAX_BODY_BYTES, MAX_SEQ
from agentfleet.api.diffview import STYLE_CSS, FileDiff, render_patch
from agentfleet.api.events import PAGE, event_stream, settled
from agentfleet.api.pages import render, repositories, sse_step, step, task_body
from agentfleet.api.routes import PAGES, Page, page_map
from agentfleet.api.session import COOKIE, LIFETIME_S, Session, Sessions
from agentfleet.errors import AgentFleetError, InvalidRequestError, TaskNotFoundError
from agentfleet.tasks import Task, TaskEvent, TaskStatus, utcnow

if TYPE_CHECKING:
    from agentfleet.api.http import Api

logger = logging.getLogger("agentfleet.console")
PAGE_MAP = page_map()
BY_ENDPOINT = {page.endpoint: page for page in PAGES}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
MAX_EVENTS = 5000
"""Steps a task page renders at once (the rest of a very long task: GET /tasks/{id}/events)."""
MAX_PATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class View:
    """Who is looking: their session, its CSRF token, and a cookie to set with this answer."""

    session: Session | None
    csrf: str = ""
    signed_in: bool = False
    cookie: str | None = None


class Console:
    def __init__(self, api: Api, sessions: Sessions) -> None:
        self.api = api
        self.service = api.service
        self.sessions = sessions

    def __call__(self, request: Request) -> Response:
        self.api.admit(request, public=True)  # the Host and Origin rules of a loopback server
        try:
            endpoint, args = PAGE_MAP.bind("localhost").match(request.path, request.method)
        except HTTPException as exc:
            return _secured(self._error(exc.code or 404, f"no page {request.method} {request.path}"))
        page = BY_ENDPOINT[str(endpoint)]
        view = self._view(request, page)
        if isinstance(view, Response):
            return _secured(view)
        try:
            response: Response = getattr(self, page.endpoint)(request, view, **args)
        except TaskNotFoundError as exc:
            response = self._error(404, str(exc), view)
        except InvalidRequestError as exc:
            response = self._error(400, str(exc), view)
        if view.cookie:
            _set_session(response, view.cookie, request)
        return _secured(response)

    # --- who may ----------------------------------------------------------------------------

    def _view(self, request: Request, page: Page) -> View | Response:
        """The visitor's view, or the answer for one who may not: the sign-in form, or a refusal."""
        if page.public:
            return View(None)
        if self.api.bearer_matches(request):  # a program with the token: no cookie, no CSRF to check
            issued, _ = self.sessions.issue()
            return View(issued, self.sessions.csrf(issued))
        session: Session | None = self.sessions.read(request.cookies.get(COOKIE))
        cookie = None
        if session is None and self.sessions.token is None:
            session, cookie = self.sessions.issue()
        if session is None:
            if request.method == "GET":
                return redirect(f"/console/login?next={quote(request.full_path.rstrip('?'), safe='/?=&')}", 303)
            return self._error(401, "sign in first: the API token is needed for this")
        if request.method == "POST":
            request.max_content_length = MAX_BODY_BYTES
            if not _same_origin(request) or not self.sessions.csrf_matches(session, request.form.get("csrf")):
                return self._error(403, "the form is out of date or from another page: reload it and send it again")
        return View(session, self.sessions.csrf(session), session.signed_in, cookie)

    def login_form(self, request: Request, view: View) -> Response:
        if self.sessions.token is None:
            return redirect("/", 303)
        return _html(render("login.html", view=None, next=_local_path(request.args.get("next")), message=None))

    def login(self, request: Request, view: View) -> Response:
        request.max_content_length = MAX_BODY_BYTES
        target = _local_path(request.form.get("next"))
        if not _same_origin(request):
            return self._error(403, "the sign-in form came from another site")
        if not self.sessions.token_matches(request.form.get("token", "")):
            page = render("login.html", view=None, next=target, message="That is not the server's API token.")
            return _html(page, 401)
        _, cookie = self.sessions.issue()
        response = redirect(target, 303)
        _set_session(response, cookie, request)
        return response

    def logout(self, request: Request, view: View) -> Response:
        response = redirect("/console/login", 303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
        return response

    # --- pages ------------------------------------------------------------------------------

    def task_list(self, request: Request, view: View) -> Response:
        raw_status = (request.args.get("status") or "").upper()
        status = TaskStatus(raw_status) if raw_status in TaskStatus.__members__ else None
        text = (request.args.get("q") or "").strip()[:200]
        tasks = self.service.tasks(status=status, limit=200)
        if text:
            tasks = [t for t in tasks if text.lower() in " ".join([t.request.query, *repositories(t)]).lower()]
        values = {"tasks": tasks, "statuses": [s.value for s in TaskStatus], "status": status or "", "q": text}
        return _html(render("tasks.html", view=view, now=utcnow(), message=None, **values))

    def new_task(self, request: Request, view: View) -> Response:
        return _html(render("new.html", view=view, form=defaultdict(str), message=None))

    def submit(self, request: Request, view: View) -> Response:
        status, answer = self.api.call("POST", "/orchestrate", task_body(request.form), host=request.host)
        if status in (200, 202):
            return redirect(f"/console/tasks/{answer['task_id']}", 303)
        form = defaultdict(str, request.form.to_dict())
        return _html(render("new.html", view=view, form=form, message=_said(answer, status)), status)

    def task_page(
        self, request: Request, view: View, task_id: str, message: str | None = None, status: int = 200
    ) -> Response:
        """The task; with `message`, the answer to a form that did not go through (with its `status`)."""
        task = self.service.task(task_id)
        events = self._events(task_id)
        last = events[-1].seq if events else 0
        live = not settled(task, self.api.stream.settle_s)
        diff, clipped = self._diff(task)
        parent_id = getattr(task, "parent_id", None)
        followers = self.service.tasks(workspace_id=task.workspace_id, limit=200)
        values = {
            "task": task,
            "steps": [shown for event in events if (shown := step(event)) is not None],
            "stream": f"/console/tasks/{task.id}/events?after={last}" if live else None,
            "diff": diff,
            "diff_clipped": clipped,
            "parent_id": parent_id,
            "children": [t for t in followers if getattr(t, "parent_id", None) == task.id],
        }
        return _html(render("task.html", view=view, now=utcnow(), message=message, **values), status)

    def steps(self, request: Request, view: View, task_id: str) -> Response:
        self.service.task(task_id)
        after = _cursor(request.headers.get("Last-Event-ID") or request.args.get("after"))
        stream = event_stream(self.service, task_id, after, self.api.stream, render=sse_step)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(stream, mimetype="text/event-stream", headers=headers)

    def cancel(self, request: Request, view: View, task_id: str) -> Response:
        status, answer = self.api.call("POST", f"/tasks/{quote(task_id)}/cancel", host=request.host)
        if status == 200:
            return redirect(f"/console/tasks/{task_id}", 303)
        return self.task_page(request, view, task_id, message=_said(answer, status), status=status)

    def followup(self, request: Request, view: View, task_id: str) -> Response:
        body: dict[str, Any] = {"query": request.form.get("query", "")}
        if request.form.get("push_branch") == "on":
            body["options"] = {"push_branch": True}
        status, answer = self.api.call("POST", f"/tasks/{quote(task_id)}/followup", body, host=request.host)
        if status in (200, 201, 202) and isinstance(answer, dict) and answer.get("task_id"):
            return redirect(f"/console/tasks/{answer['task_id']}", 303)
        return self.task_page(request, view, task_id, message=_said(answer, status), status=status)

    def memory(self, request: Request, view: View, workspace_id: str) -> Response:
        values: dict[str, Any] = {"workspace_id": workspace_id, "memory": None, "entries": [], "raw": ""}
        values["unavailable"] = None
        status, answer = self.api.call("GET", f"/workspaces/{quote(workspace_id)}/memory", host=request.host)
        if status == 200:
            values.update(memory=answer, entries=_entries(answer), raw=json.dumps(answer, indent=2))
        else:
            values["unavailable"] = _said(answer, status)
        return _html(render("memory.html", view=view, message=None, **values), status)

    def clear_memory(self, request: Request, view: View, workspace_id: str) -> Response:
        status, answer = self.api.call("DELETE", f"/workspaces/{quote(workspace_id)}/memory", host=request.host)
        if status >= 400:
            return self._error(status, _said(answer, status), view)
        return redirect(f"/console/workspaces/{workspace_id}/memory", 303)

    def static(self, request: Request, view: View, name: str) -> Response:
        if name == "pygments.css":
            body, mimetype = STYLE_CSS, "text/css"
        elif name in STATIC:
            body, mimetype = resources.files("agentfleet.api").joinpath("static", name).read_text(), STATIC[name]
        else:
            return self._error(404, f"no static file {name!r}")
        return Response(body, mimetype=mimetype, headers={"Cache-Control": "public, max-age=300"})

    # --- reading ----------------------------------------------------------------------------

    def _events(self, task_id: str) -> list[TaskEvent]:
        events: list[TaskEvent] = []
        while len(events) < MAX_EVENTS:
            page = self.service.events(task_id, after=events[-1].seq if events else 0, limit=PAGE)
            events += page
            if len(page) < PAGE:
                break
        return events

    def _diff(self, task: Task) -> tuple[list[FileDiff], str]:
        key = task.result.patch if task.result else None
        if not key:
            return [], ""
        try:
            data = self.service.backends.artifacts.get_bytes(key)
        except (KeyError, OSError, AgentFleetError) as exc:
            logger.warning("the patch %s of task %s cannot be read: %s", key, task.id, exc)
            return [], "The patch cannot be read now."
        clipped = f"Only the first {MAX_PATCH_BYTES} bytes are shown." if len(data) > MAX_PATCH_BYTES else ""
        return render_patch(data[:MAX_PATCH_BYTES].decode("utf-8", errors="replace")), clipped

    def _error(self, status: int, message: str, view: View | None = None) -> Response:
        return _html(render("error.html", view=view, status=status, message=message), status)


# --- helpers ----------------------------------------------------------------------------------


def _entries(answer: Any) -> list[dict[str, Any]]:
    """The memory's entries: the first list of objects in the answer (its shape is the route's)."""
    if isinstance(answer, dict):
        for value in answer.values():
            if isinstance(value, list) and all(isinstance(item, dict) for item in value):
                return value
    return []


def _said(answer: Any, status: int) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return str(answer["error"])
    return f"the server answered {status}"


def _cursor(raw: str | None) -> int:
    try:
        return min(max(int(raw or 0), 0), MAX_SEQ)
    except ValueError:
        return 0


def _local_path(raw: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


def _same_origin(request: Request) -> bool:
    """A POST a page of this server sent: its Origin (sent by browsers with every POST) names this
    host, and it is not marked cross-site."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()


def _set_session(response: Response, cookie: str, request: Request) -> None:
    secure = _https(request)
    response.set_cookie(COOKIE, cookie, max_age=LIFETIME_S, path="/", httponly=True, samesite="Strict", secure=secure)


def _https(request: Request) -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https"


def _html(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/html", headers={"Cache-Control": "no-store"})


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response
