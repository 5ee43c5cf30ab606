"""The web console's HTML: Jinja templates (api/templates/, autoescaped: every value shown is text,
whatever it holds) and the views they show — a task's row, an event as a readable step (in the
page, or as a message of the page's event stream); and the task request the submit form means.

Rendering only; what is shown and who may see it is console.py's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from agentfleet.tasks import EventKind, Task, TaskEvent, TaskStatus, utcnow

COLLAPSE_LINES = 12
COLLAPSE_CHARS = 1200
"""A step's text longer than this is shown folded (<details>), its first line as the summary."""


@dataclass(frozen=True)
class Step:
    """One event as the task page shows it."""

    seq: int
    kind: str
    title: str
    text: str = ""
    error: bool = False

    @property
    def folded(self) -> bool:
        return self.text.count("\n") >= COLLAPSE_LINES or len(self.text) > COLLAPSE_CHARS

    @property
    def first_line(self) -> str:
        line = self.text.strip().split("\n", 1)[0]
        return line if len(line) <= 120 else line[:119] + "…"

    @property
    def size(self) -> str:
        return f"{self.text.count(chr(10)) + 1} lines, {len(self.text)} characters"


def _arguments(raw: Any) -> str:
    """Tool arguments, pretty when they are a JSON object."""
    try:
        return json.dumps(json.loads(str(raw)), indent=2, ensure_ascii=False)
    except ValueError:
        return str(raw)


def step(event: TaskEvent) -> Step | None:
    """The event as a step, or None for what the page does not list (the model's progress ticks)."""
    data, seq, kind = event.data, event.seq, event.kind
    match kind:
        case EventKind.PROGRESS:
            return None
        case EventKind.STATUS:
            error = str(data.get("error") or "")
            return Step(seq, kind, f"status: {data.get('status')}", error, bool(error))
        case EventKind.LLM:
            calls = ", ".join(data.get("tool_calls") or []) or "no tool call"
            tokens = (data.get("prompt_tokens") or 0) + (data.get("completion_tokens") or 0)
            title = f"step {data.get('step')} · model → {calls} ({tokens} tokens)"
            return Step(seq, kind, title, str(data.get("content") or ""))
        case EventKind.TOOL_CALL:
            return Step(seq, kind, f"call {data.get('name')}", _arguments(data.get("arguments", "")))
        case EventKind.TOOL_RESULT:
            mark = "✗" if data.get("is_error") else "✓"
            title = f"{mark} {data.get('name')} ({float(data.get('elapsed_s') or 0):.1f} s)"
            return Step(seq, kind, title, str(data.get("output") or ""), bool(data.get("is_error")))
        case EventKind.CHECK:
            verdict = "passed" if data.get("passed") else "failed"
            title = f"check `{data.get('command')}` {verdict} (exit {data.get('exit_code')})"
            return Step(seq, kind, title, str(data.get("output") or ""), not data.get("passed"))
        case EventKind.WORKSPACE:
            detail = " ".join(f"{k}={v}" for k, v in data.items() if k not in ("step", "output"))
            return Step(seq, kind, f"workspace {data.get('step')}: {detail}", str(data.get("output") or ""))
        case _:
            return Step(seq, kind, str(data.get("message") or kind), "", kind is EventKind.ERROR)


def age(when: datetime, now: datetime | None = None) -> str:
    seconds = max(0, int(((now or utcnow()) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def repositories(task: Task) -> list[str]:
    request = task.request
    urls = [request.repo_url] if request.repo_url else []
    urls += [repo if isinstance(repo, str) else repo.url for repo in request.repos]
    return urls


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("agentfleet.api", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(age=age, repositories=repositories)
    return env


def render(template: str, **values: Any) -> str:
    return environment().get_template(template).render(**values)


def render_step(event: TaskEvent) -> str | None:
    shown = step(event)
    return None if shown is None else environment().get_template("step.html").render(step=shown)


def task_body(form: Any) -> dict[str, Any]:
    """The TaskRequest the submit form describes (validated by the API like any other)."""
    repos = [line.strip() for line in str(form.get("repos", "")).splitlines() if line.strip()]
    options: dict[str, Any] = {}
    for name in ("check", "setup"):
        if str(form.get(name, "")).strip():
            options[name] = str(form.get(name))
    steps = str(form.get("max_steps", "")).strip()
    if steps:
        options["max_steps"] = int(steps) if steps.isdigit() else steps
    for name in ("network", "push_branch"):
        if form.get(name) == "on":
            options[name] = True
    body: dict[str, Any] = {"query": str(form.get("query", "")), "options": options}
    if len(repos) == 1:
        body["repo_url"] = repos[0]
    elif repos:
        body["repos"] = repos
    if str(form.get("ref", "")).strip():
        body["ref"] = str(form.get("ref")).strip()
    return body


def sse_step(event: TaskEvent) -> str:
    """One event for the task page's stream: the step's HTML, the model's progress as text, and a
    status change as its own `status` event too."""
    if event.kind is EventKind.PROGRESS:
        data = event.data
        return f"id: {event.seq}\nevent: progress\ndata: model writing: {int(data.get('tokens') or 0)} tokens\n\n"
    html = (render_step(event) or "").replace("\r\n", "\n").replace("\r", "\n")
    message = f"id: {event.seq}\nevent: step\n" + "".join(f"data: {line}\n" for line in html.split("\n")) + "\n"
    if event.kind is EventKind.STATUS and event.data.get("status") in TaskStatus.__members__:
        message += f"event: status\ndata: {event.data['status']}\n\n"
    return message
