"""Showing a task to a person: its events one line each as they happen (a live line while the model
writes), and at the end what was done — the answer, the files changed, the checks, the tool calls."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from agentfleet.tasks import EventKind, Task, TaskEvent, TaskStatus


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class EventPrinter:
    """A listener that prints each event with the step, tool, tokens and elapsed time. While the
    model writes, a terminal gets one live line (tokens so far, seconds); anything else gets a
    line per progress event."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.tokens = 0
        self._live: Status | None = None

    def __call__(self, event: TaskEvent) -> None:
        if event.kind is EventKind.PROGRESS:
            self._progress(event.data)
            return
        self._end_live()
        line = self.format(event)
        if line:
            elapsed = time.monotonic() - self.started
            self.console.print(f"[dim]{elapsed:6.1f}s[/dim] {line}", highlight=False)

    def _progress(self, data: dict[str, Any]) -> None:
        text = f"model writing: {data.get('tokens', 0)} tokens, {float(data.get('elapsed_s', 0)):.0f} s"
        if not self.console.is_terminal:
            elapsed = time.monotonic() - self.started
            self.console.print(f"[dim]{elapsed:6.1f}s   … {text}[/dim]", highlight=False)
        elif self._live is None:
            self._live = self.console.status(text)
            self._live.start()
        else:
            self._live.update(text)

    def _end_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def close(self) -> None:
        self._end_live()

    def format(self, event: TaskEvent) -> str | None:
        data = event.data
        match event.kind:
            case EventKind.STATUS:
                extra = f" — {escape(_one_line(data['error']))}" if data.get("error") else ""
                return f"[bold]{data.get('status')}[/bold]{extra}"
            case EventKind.WORKSPACE if data.get("step") == "files":
                return f"[cyan]workspace[/cyan] input files: {data.get('count', 0)}"
            case EventKind.WORKSPACE:
                detail = " ".join(f"{k}={v}" for k, v in data.items() if k not in ("step", "output"))
                return f"[cyan]workspace[/cyan] {data.get('step')}: {escape(_one_line(detail, 160))}"
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
            case EventKind.CHECK:
                return f"[blue]check[/blue] {_check_line(data)}"
            case EventKind.ERROR:
                return f"[red]error[/red] {escape(_one_line(data.get('message', ''), 200))}"
            case _:
                return f"[dim]{escape(_one_line(data.get('message', str(data)), 120))}[/dim]"


def _check_line(check: dict[str, Any]) -> str:
    passed = bool(check.get("passed"))
    mark = "[green]✓ passed[/green]" if passed else "[red]✗ failed[/red]"
    code = check.get("exit_code")
    ended = f"exit {code}" if code is not None else "did not finish"
    last = "" if passed else f": {escape(_one_line((check.get('output') or '').strip()[-300:], 100))}"
    where = "" if check.get("where", ".") == "." else f" in {check.get('where')}"
    seconds = float(check.get("duration_s") or 0)
    return f"`{escape(str(check.get('command')))}`{where} {mark} ({ended}, {seconds:.1f} s){last}"


def report(task: Task, out: Console, err: Console, patch_uri: str | None = None) -> None:
    """What the task did, at its end: the answer on `out` (what a script reads), then on `err` the
    files changed (or, prominently, that none were when the query asked for a change), each check
    run, the tool calls, the patch and branch, and the error of a task that did not succeed."""
    result = task.result
    if result is not None:
        out.print(result.summary, highlight=False)
        if result.diff_stat:
            out.print(f"\n{result.diff_stat}", highlight=False)
        if result.changed:
            shown = ", ".join(result.changed[:10]) + (
                f" and {len(result.changed) - 10} more" if len(result.changed) > 10 else ""
            )
            err.print(f"changed: {len(result.changed)} file(s): {escape(shown)}")
        elif result.change_requested:
            err.print("[bold yellow]no changes made[/bold yellow] (the task asked for a change; the patch is empty)")
        else:
            err.print("changed: none")
        for number, check in enumerate(result.checks, 1):
            err.print(f"check {number}: {_check_line(check.model_dump())}", highlight=False)
        names = [c.name for c in result.tool_calls]
        counts = ", ".join(f"{name} ×{names.count(name)}" for name in dict.fromkeys(names))
        err.print(f"tool calls: {result.usage.tool_calls}" + (f" ({counts})" if counts else ""))
        if patch_uri:
            err.print(f"patch: {patch_uri}")
        if result.branch:
            err.print(f"branch: {result.branch}")
    if task.status is not TaskStatus.SUCCEEDED:
        err.print(f"[red]task {task.status.value}:[/red] {escape(task.error or '')}")
