"""The agent loop: ask the model, run the tools it calls, append the results, repeat.

History is append-only (the server's prefix cache hits on every turn). The loop ends when the
model answers without a tool call, or a limit (steps, tokens, wall time) or a loop of identical
calls stops it; each terminal state is an exception of its own, caught in one place (`run`).
How a reply is read and how results go back into the history is the Model's (models.py): the
loop knows no wire format.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from agentfleet.agent.models import EVENT_TEXT_LIMIT, Model, Reply, ToolCall, clip
from agentfleet.agent.tools import ToolBox
from agentfleet.errors import LLMUnavailableError
from agentfleet.tasks import Emit, EventKind, Usage

NUDGE = (
    "You repeated the same tool call with the same arguments. Do something different, "
    "or give your final answer without calling a tool."
)
LOOK_FIRST = (
    "You have not run any command yet. Look at the repository first (list and read the relevant files), then answer."
)
FINAL_ANSWER = "Stop using tools now. Give your final answer: summarize what you did and what you found."


@dataclass(frozen=True)
class Limits:
    max_steps: int = 50
    max_tokens: int = 2_000_000
    timeout_s: float = 3600.0


@dataclass(frozen=True)
class Outcome:
    summary: str
    stopped_by: str | None
    """None: the model finished; otherwise why the loop was stopped."""
    usage: Usage
    failed: bool = False
    """A hard limit (steps, tokens, time) ended the work unfinished."""


class _Stop(Exception):
    """Terminal states of the loop."""


class _Finished(_Stop):
    def __init__(self, summary: str) -> None:
        self.summary = summary


class _Stopped(_Stop):
    """A limit ended the loop: `reason`; whether to ask for a final answer; whether the task failed."""

    ask_final = True
    failed = True

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _StepLimit(_Stopped):
    pass


class _TokenLimit(_Stopped):
    ask_final = False


class _TimeLimit(_Stopped):
    ask_final = False


class _Looping(_Stopped):
    failed = False


class Agent:
    def __init__(self, model: Model, tools: ToolBox, limits: Limits, emit: Emit, usage: Usage) -> None:
        """`usage`: where the work's spending is counted (the model counts its calls there too),
        kept by the caller when the loop raises."""
        self.model, self.tools, self.limits, self.emit, self.usage = model, tools, limits, emit, usage
        self.messages: list[dict[str, Any]] = []
        self.steps = 0
        self._last_signature: str | None = None
        self._repeats = 0
        self._pushed_to_look = False
        self._started = 0.0

    async def run(self, task: str) -> Outcome:
        self._started = time.monotonic()
        self.messages = [
            {"role": "system", "content": self.model.profile.system_prompt},
            {"role": "user", "content": task},
        ]
        try:
            while True:
                self._check_limits()
                remaining = self.limits.timeout_s - self._elapsed()
                try:
                    await asyncio.wait_for(self._step(), timeout=remaining)
                except TimeoutError:
                    raise _TimeLimit(f"time limit of {self.limits.timeout_s:g}s reached") from None
        except _Finished as done:
            return self._outcome(done.summary, None, failed=False)
        except _Stopped as stop:
            self.emit(EventKind.LOG, {"message": f"stopped: {stop.reason}"})
            summary = await self._final_answer() if stop.ask_final else ""
            return self._outcome(summary, stop.reason, failed=stop.failed)

    def _outcome(self, summary: str, stopped_by: str | None, failed: bool) -> Outcome:
        self.usage.wall_s = round(self._elapsed(), 3)
        return Outcome(summary, stopped_by, self.usage, failed)

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _check_limits(self) -> None:
        if self.steps >= self.limits.max_steps:
            raise _StepLimit(f"step limit of {self.limits.max_steps} reached")
        if self.usage.total_tokens >= self.limits.max_tokens:
            raise _TokenLimit(f"token limit of {self.limits.max_tokens} reached")
        if self._elapsed() >= self.limits.timeout_s:
            raise _TimeLimit(f"time limit of {self.limits.timeout_s:g}s reached")

    async def _step(self) -> None:
        self.steps += 1
        reply = await self._ask(tools=True)
        self.messages.append(self.model.assistant_message(reply))
        if reply.parse_error:
            self._say(
                f"Your tool call could not be parsed: {reply.parse_error}. Write a valid call, "
                "or reply without a tool call to give your final answer."
            )
            return
        if not reply.calls:
            if self.usage.tool_calls < self.model.profile.min_tool_calls and not self._pushed_to_look:
                self._pushed_to_look = True
                self._say(LOOK_FIRST)
                return
            raise _Finished(reply.content.strip())
        for call in reply.calls:
            await self._run(call)
        self._detect_loop(reply.calls)

    async def _ask(self, tools: bool) -> Reply:
        """The model's reply, shown as events (not yet in the history)."""
        reply = await self.model.query(self.messages, tools=tools)
        self.emit(
            EventKind.LLM,
            {
                "step": self.steps,
                "content": clip(reply.content),
                "tool_calls": [c.name for c in reply.calls[: len(reply.calls) - reply.recovered]],
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
                "elapsed_s": reply.elapsed_s,
            },
        )
        if reply.recovered:
            self.emit(EventKind.LOG, {"message": f"recovered {reply.recovered} tool call(s) written as text"})
        return reply

    def _say(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    async def _run(self, call: ToolCall) -> None:
        self.usage.tool_calls += 1
        self.emit(
            EventKind.TOOL_CALL,
            {"step": self.steps, "name": call.name, "arguments": clip(call.raw, EVENT_TEXT_LIMIT)},
        )
        started = time.monotonic()
        if call.arguments is None:
            text, is_error = f"the arguments are not a valid JSON object: {clip(call.raw, 200)}", True
        else:
            outcome = await self.tools.call(call.name, call.arguments)
            text, is_error = outcome.text, outcome.is_error
        self.emit(
            EventKind.TOOL_RESULT,
            {
                "step": self.steps,
                "name": call.name,
                "is_error": is_error,
                "output": clip(text),
                "elapsed_s": round(time.monotonic() - started, 3),
            },
        )
        self.messages.append(self.model.observation(call, text, is_error))

    def _detect_loop(self, calls: list[ToolCall]) -> None:
        signature = "|".join(c.signature for c in calls)
        self._repeats = self._repeats + 1 if signature == self._last_signature else 0
        self._last_signature = signature
        if self._repeats == 1:
            self._say(NUDGE)
            self.emit(EventKind.LOG, {"message": "the model repeated its last call; nudged it"})
        elif self._repeats >= 2:
            raise _Looping("loop: the model kept repeating the same tool call")

    async def _final_answer(self) -> str:
        """One last request without tools, asking for the final answer."""
        self._say(FINAL_ANSWER)
        try:
            reply = await self._ask(tools=False)
        except LLMUnavailableError:
            return ""
        self.messages.append({"role": "assistant", "content": reply.content})
        return reply.content.strip()
