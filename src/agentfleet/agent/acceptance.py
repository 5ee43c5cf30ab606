"""Whether the model's final answer ends the task. With acceptance checks (the task's `check`, or each
repository's `.agentfleet/check`), the checks decide: they run in the sandbox, and while one fails the
agent gets its output and goes on, a bounded number of times. Without checks, a reply that is no
answer (answers.py) gets one nudge, then ends the task FAILED "the model gave no answer".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agentfleet.agent.answers import classify
from agentfleet.errors import WorkspaceError
from agentfleet.runtime.files import read_small
from agentfleet.tasks import CheckRun, Emit, EventKind

CHECK_FILE = ".agentfleet/check"
MAX_CHECK_FILE_BYTES = 10_000
FEEDBACK_TAIL = 3000
"""Characters of a failed check's output the model sees."""
REASON_TAIL = 1500
"""Characters of it in the task's error."""
UNCHANGED_NUDGE = (
    "The task asks for a change, but no file has changed yet. Make the change now with a command "
    "(for example `sed -i 's/old text/new text/' FILE`, or `cat > FILE <<'EOF'` with the whole new "
    "content), look at the result, then give your final answer."
)


@dataclass(frozen=True)
class CheckSpec:
    command: str
    cwd: Path
    where: str
    """`cwd` relative to the workspace ('.' for its root)."""


RunCheck = Callable[[CheckSpec], CheckRun]
"""Runs one check in the sandbox (blocking): how it ended."""


def check_specs(option: str | None, root: Path, checkouts: Iterable[Path]) -> list[CheckSpec]:
    """The task's own check at the workspace root, or else each checkout's `.agentfleet/check` (a
    file holding the command; lines starting with # are comments)."""
    if option is not None and option.strip():
        return [CheckSpec(option.strip(), root, ".")]
    specs = []
    for checkout in checkouts:
        where = checkout.relative_to(root).as_posix() or "."
        path = checkout / CHECK_FILE
        if not path.exists() and not path.is_symlink():
            continue
        data = read_small(path, MAX_CHECK_FILE_BYTES)
        if data is None:
            shown = CHECK_FILE if where == "." else f"{where}/{CHECK_FILE}"
            raise WorkspaceError(f"{shown} is not a regular file of at most {MAX_CHECK_FILE_BYTES:,} bytes")
        lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if not ln.lstrip().startswith("#")]
        command = "\n".join(lines).strip()
        if command:
            specs.append(CheckSpec(command, checkout, where))
    return specs


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    feedback: str | None = None
    """Not accepted; the model is told this and goes on."""
    reason: str | None = None
    """Not accepted, and no second chance: why the task failed."""


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


@dataclass
class Acceptance:
    """Reviews each final answer. `run_check` runs a check in the sandbox; `retries`: how many times a
    failed check sends the agent back to work; `instructions`: the harness's own messages, which a
    reply must not merely repeat."""

    checks: list[CheckSpec] = field(default_factory=list)
    run_check: RunCheck | None = None
    retries: int = 2
    instructions: list[str] = field(default_factory=list)
    emit: Emit = field(default=lambda kind, data: None)
    nudge_suffix: str = ""
    """Added to a non-answer's nudge (the profile's: how to call a tool)."""
    changed: Callable[[], bool] | None = None
    """For a task that asks for a change, with a profile that wants it checked: whether any file has
    changed (blocking). An answer with nothing changed gets one nudge, then fails the task."""
    shown: str = ""
    """File contents the prompt showed (the excerpt): quoting them is not repeating the harness's
    instructions."""
    shown_is_look: bool = False
    """An answer drawn from `shown` alone has looked at the files (a summary may rest on them; a
    locate task on a big repository must still search)."""
    runs: list[CheckRun] = field(default_factory=list)
    _nudged: bool = False
    _change_nudged: bool = False

    async def review(self, answer: str, *, tool_calls: int, last_chance: bool = False) -> Verdict:
        """Whether `answer` ends the task; `last_chance`: the loop is over, so no feedback."""
        if self.checks:
            return await self._checked(last_chance)
        instructions = [text.replace(self.shown, "") for text in self.instructions] if self.shown else self.instructions
        wrong = classify(
            answer, tool_calls=tool_calls, instructions=instructions, looked=bool(self.shown) and self.shown_is_look
        )
        if wrong is None:
            return await self._unchanged(last_chance)
        self.emit(EventKind.LOG, {"message": f"not an answer: {wrong.reason}", "kind": wrong.kind})
        if not self._nudged and not last_chance:
            self._nudged = True
            return Verdict(False, feedback=wrong.nudge + self.nudge_suffix)
        return Verdict(False, reason=f"the model gave no answer ({wrong.reason})")

    async def _unchanged(self, last_chance: bool) -> Verdict:
        if self.changed is None or await asyncio.to_thread(self.changed):
            return Verdict(True)
        self.emit(EventKind.LOG, {"message": "the task asks for a change and no file has changed"})
        if not self._change_nudged and not last_chance:
            self._change_nudged = True
            return Verdict(False, feedback=UNCHANGED_NUDGE + self.nudge_suffix)
        return Verdict(False, reason="the task asks for a change and the model changed no file")

    async def _checked(self, last_chance: bool) -> Verdict:
        failed = None
        for spec in self.checks:
            run = await self._run(spec)
            if not run.passed:
                failed = run
                break
        if failed is None:
            return Verdict(True)
        ended = f"exited {failed.exit_code}" if failed.exit_code is not None else "did not finish"
        where = "" if failed.where == "." else f" (in {failed.where})"
        if self.retries > 0 and not last_chance:
            self.retries -= 1
            return Verdict(
                False,
                feedback=(
                    f"The acceptance check `{failed.command}`{where} {ended}; the task is not done until it "
                    f"passes. Its output:\n{_tail(failed.output, FEEDBACK_TAIL)}\n\nFix the cause (not the "
                    "check), run it yourself, then give your final answer again."
                ),
            )
        return Verdict(
            False,
            reason=f"the acceptance check `{failed.command}`{where} {ended}:\n{_tail(failed.output, REASON_TAIL)}",
        )

    async def _run(self, spec: CheckSpec) -> CheckRun:
        if self.run_check is None:
            raise RuntimeError("checks were given without a way to run them")
        self.emit(EventKind.LOG, {"message": f"running the acceptance check: {spec.command}", "where": spec.where})
        run = await asyncio.to_thread(self.run_check, spec)
        self.runs.append(run)
        self.emit(EventKind.CHECK, {**run.model_dump(), "output": _tail(run.output, 2000), "run": len(self.runs)})
        return run
