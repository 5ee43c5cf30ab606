"""Showing a task's events to a person, one line each, as they happen."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from agentfleet.tasks import EventKind, TaskEvent


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class EventPrinter:
    """A listener that prints each event with the step, tool, tokens and elapsed time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.tokens = 0

    def __call__(self, event: TaskEvent) -> None:
        line = self.format(event)
        if line:
            elapsed = time.monotonic() - self.started
            self.console.print(f"[dim]{elapsed:6.1f}s[/dim] {line}", highlight=False)

    def format(self, event: TaskEvent) -> str | None:
        data = event.data
        match event.kind:
            case EventKind.STATUS:
                extra = f" — {escape(_one_line(data['error']))}" if data.get("error") else ""
                return f"[bold]{data.get('status')}[/bold]{extra}"
            case EventKind.WORKSPACE:
                detail = " ".join(f"{k}={v}" for k, v in data.items() if k != "step")
                return f"[cyan]workspace[/cyan] {data.get('step')}: {escape(detail)}"
            case EventKind.LLM:
                self.tokens += (data.get("prompt_tokens") or 0) + (data.get("completion_tokens") or 0)
                calls = ", ".join(data.get("tool_calls") or []) or "no tool call"
                said = escape(_one_line(data.get("content") or "", 70))
                return f"[magenta]step {data.get('step')}[/magenta] model → {calls} ({self.tokens} tok) {said}"
            case EventKind.TOOL_CALL:
                return f"  [yellow]{data.get('name')}[/yellow] {escape(_one_line(data.get('arguments', ''), 90))}"
            case EventKind.TOOL_RESULT:
                mark = "[red]✗[/red]" if data.get("is_error") else "[green]✓[/green]"
                return f"  {mark} {escape(_one_line(data.get('output', ''), 90))}"
            case EventKind.ERROR:
                return f"[red]error[/red] {escape(_one_line(data.get('message', ''), 200))}"
            case _:
                return f"[dim]{escape(_one_line(data.get('message', str(data)), 120))}[/dim]"
