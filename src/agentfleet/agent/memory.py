"""Repository memory on the agent's side: what the prompt shows of it before the loop (the
repository's AGENTS.md files, agent/instructions.py; the digest of the workspace's MemoryStore),
and the entry kept when the task ends (its query, final answer, changed files, the setup that
prepared the checkout, the acceptance checks run and the test commands the agent ran).

A text-profile model gets no tool schemas, but its replies go through the same tool-call recovery
as a native model's (agent/textcalls.py), so a `<tool_call>{"name": "recall", ...}</tool_call>`
reply reaches the memory server; the prompt says so in one line. The digest is its main channel.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentfleet.agent.instructions import Instructions, read_instructions
from agentfleet.memory import DIGEST_CHARS, MemoryEntry, digest
from agentfleet.ports import MemoryStore
from agentfleet.tasks import Emit, EventKind, Task, TaskEvent, TaskResult

RELEVANT = 3
RECENT = 5
TEXT_RECALL = 'To search it, reply with <tool_call>{"name": "recall", "arguments": {"query": "..."}}</tool_call>.'
NATIVE_RECALL = "Search it with the recall tool; keep a fact for later tasks with remember."
_TEST_COMMAND = re.compile(r"test|spec|check|verify|tox|nox|jest|mocha|lint", re.IGNORECASE)
"""What makes an exec command one that tested the work (pytest, test_calc.py, npm test, make check…)."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepositoryMemory:
    """What the prompt shows of the repository's instructions and the workspace's memory."""

    instructions: Instructions = field(default_factory=Instructions)
    digest: str = ""
    recall_hint: str = ""

    def prompt_lines(self) -> list[str]:
        lines: list[str] = []
        if self.instructions.text:
            lines += ["", "The repository's instructions for agents (AGENTS.md):", self.instructions.text]
        if self.digest:
            lines += ["", "What earlier tasks on this repository did (its memory):", self.digest]
            lines += [self.recall_hint] if self.recall_hint else []
        return lines


def recollect(
    task: Task, root: Path, checkouts: list[Path], store: MemoryStore | None, text_protocol: bool, emit: Emit
) -> RepositoryMemory:
    """Read the instructions and the memory digest for the prompt, each said in an event."""
    instructions = read_instructions(task.request.query, root, checkouts) if checkouts else Instructions()
    if instructions.read or instructions.skipped:
        emit(EventKind.WORKSPACE, instructions.event())
    if store is None:
        return RepositoryMemory(instructions)
    relevant = store.search(task.workspace_id, task.request.query, limit=RELEVANT)
    recent = store.recent(task.workspace_id, limit=RECENT)
    shown = digest(relevant, recent, DIGEST_CHARS)
    if shown:
        ids = list(dict.fromkeys(e.id for e in [*relevant, *recent]))
        emit(EventKind.WORKSPACE, {"step": "memory", "entries": len(ids), "chars": len(shown)})
    return RepositoryMemory(instructions, shown, TEXT_RECALL if text_protocol else NATIVE_RECALL)


def entry_of(task: Task, result: TaskResult, error: str | None, events: Iterable[TaskEvent]) -> MemoryEntry:
    """The memory entry of a task that ended with `result` (clipped when it is kept)."""
    answer = result.summary + (f"\n(failed: {error})" if error else "")
    return MemoryEntry(
        workspace_id=task.workspace_id,
        kind="task",
        task_id=task.id,
        status="FAILED" if error else "SUCCEEDED",
        query=task.request.query,
        answer=answer,
        files=list(result.changed),
        setup=_setup_of(task, events),
        checks=[
            f"`{c.command}` in {c.where}: {'passed' if c.passed else f'failed ({c.exit_code})'}" for c in result.checks
        ],
        commands=_test_commands(result),
    )


def _setup_of(task: Task, events: Iterable[TaskEvent]) -> str:
    """The setup that prepared the checkout: the task's script, or where each step came from."""
    option = task.request.options.setup
    steps = [
        f"{e.data['script']} ({e.data.get('action', '?')})"
        for e in events
        if e.kind is EventKind.WORKSPACE and e.data.get("step") == "setup" and "script" in e.data
    ]
    if option and option.strip():
        return f"options.setup: {option.strip()}"
    return "; ".join(dict.fromkeys(steps))


def _test_commands(result: TaskResult) -> list[str]:
    """The exec commands that look like running tests, each once, in order."""
    commands: dict[str, None] = {}
    for call in result.tool_calls:
        if call.name not in ("exec", "shell", "bash"):
            continue
        try:
            command = json.loads(call.arguments).get("command", "")
        except (json.JSONDecodeError, AttributeError):
            command = call.arguments
        if isinstance(command, str) and _TEST_COMMAND.search(command):
            commands.setdefault(command.strip(), None)
    return list(commands)


def keep(
    memory: MemoryStore, task: Task, result: TaskResult, error: str | None, events: Iterable[TaskEvent], emit: Emit
) -> None:
    """Keep the task in its workspace's memory; a store that fails is logged, never the task's outcome."""
    try:
        entry = memory.add(entry_of(task, result, error, events))
    except Exception as exc:  # top-level handler: memory is an aid, not the task's result
        logger.warning("could not keep the task in memory: %s", exc, extra={"task_id": task.id})
        emit(EventKind.LOG, {"message": f"could not keep the task in the workspace's memory: {exc}"})
        return
    emit(EventKind.WORKSPACE, {"step": "memory", "kept": entry.id})
