"""The agent loop: ask the model, run the tools it calls, append the results, repeat.

History is append-only (the server's prefix cache hits on every turn). A reply without a tool call
is a final answer, which the Acceptance reviews (acceptance.py): the checks pass, or the answer is
a real one, and the loop ends; otherwise the model is told why and goes on, or the task fails. A
limit (steps, tokens, wall time) or a loop of identical calls stops it too; each terminal state is
an exception of its own, caught in one place (`run`). How a reply is read and how results go back
into the history is the Model's (models.py): the loop knows no wire format.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from agentfleet.agent.acceptance import Acceptance
from agentfleet.agent.models import EVENT_TEXT_LIMIT, Model, Reply, ToolCall, clip
from agentfleet.agent.tools import ToolBox
from agentfleet.errors import LLMUnavailableError
from agentfleet.tasks import CheckRun, Emit, EventKind, ToolCallRecord, Usage

NUDGE = (
    "You repeated the same tool call with the same arguments. Do something different, "
    "or give your final answer without calling a tool."
)
FINAL_ANSWER = "Stop using tools now. Give your final answer: summarize what you did and what you found."


@dataclass(frozen=True)
class Limits:
    max_steps: int = 50
    max_tokens: int = 2_000_000
    timeout_s: float = 3600.0


MAX_CALL_RECORDS = 200
CALL_ARGUMENTS_SHOWN = 300


@dataclass(frozen=True)
class Outcome:
    summary: str
    stopped_by: str | None
    """None: the model finished; otherwise why the loop was stopped."""
    usage: Usage
    error: str | None = None
    """Why the work is not done: a hard limit (steps, tokens, time), a failed check, no answer."""
    checks: list[CheckRun] = field(default_factory=list)
    calls: list[ToolCallRecord] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error is not None


class _Stop(Exception):
    """Terminal states of the loop."""


class _Finished(_Stop):
    def __init__(self, summary: str) -> None:
        self.summary = summary


class _Rejected(_Stop):
    """The final answer was reviewed and refused for good: `reason`, the answer kept."""

    def __init__(self, reason: str, summary: str) -> None:
        self.reason, self.summary = reason, summary


class _Stopped(_Stop):
    """A limit ended the loop: `reason`; whether to ask for a final answer; whether the task failed
    (a limit that stops work unfinished); whether the checks may still run (and then decide)."""

    ask_final = True
    failed = True
    may_check = True

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _StepLimit(_Stopped):
    pass


class _TokenLimit(_Stopped):
    ask_final = False


class _TimeLimit(_Stopped):
    ask_final = False
    may_check = False  # no time is left to run them


class _Looping(_Stopped):
    failed = False


class Agent:
    def __init__(
        self,
        model: Model,
        tools: ToolBox,
        limits: Limits,
        emit: Emit,
        usage: Usage,
        acceptance: Acceptance | None = None,
    ) -> None:
        """`usage`: where the work's spending is counted (the model counts its calls there too),
        kept by the caller when the loop raises; `acceptance`: what reviews a final answer (by
        default: no checks, and a non-answer gets one nudge)."""
        self.model, self.tools, self.limits, self.emit, self.usage = model, tools, limits, emit, usage
        self.acceptance = acceptance if acceptance is not None else Acceptance(emit=emit)
        self.messages: list[dict[str, Any]] = []
        self.calls: list[ToolCallRecord] = []
        self.steps = 0
        self._last_signature: str | None = None
        self._repeats = 0
        self._started = 0.0

    async def run(self, task: str) -> Outcome:
        self._started = time.monotonic()
        system = self.model.profile.system_prompt
        self.messages = [{"role": "system", "content": system}, {"role": "user", "content": task}]
        self.acceptance.instructions += [system, task, NUDGE, FINAL_ANSWER]
        try:
            while True:
                self._check_limits()
                remaining = self.limits.timeout_s - self._elapsed()
                try:
                    await asyncio.wait_for(self._step(), timeout=remaining)
                except TimeoutError:
                    raise _TimeLimit(f"time limit of {self.limits.timeout_s:g}s reached") from None
        except _Finished as done:
            return self._outcome(done.summary, None, None)
        except _Rejected as refused:
            self.emit(EventKind.LOG, {"message": f"not done: {refused.reason}"})
            return self._outcome(refused.summary, None, refused.reason)
        except _Stopped as stop:
            self.emit(EventKind.LOG, {"message": f"stopped: {stop.reason}"})
            summary = await self._final_answer() if stop.ask_final else ""
            return self._outcome(summary, stop.reason, await self._after_stop(stop, summary))

    async def _after_stop(self, stop: _Stopped, summary: str) -> str | None:
        """Why the work is not done after a limit stopped the loop, or None. With checks, they run
        a last time and decide (unless no time is left); without, an unfinished stop is a failure and
        any other needs a real final answer."""
        limit = f"stopped: {stop.reason}"
        if self.acceptance.checks:
            if not stop.may_check:
                return limit
            verdict = await self.acceptance.review(summary, tool_calls=self.usage.tool_calls, last_chance=True)
            return None if verdict.accepted else (f"{limit}; {verdict.reason}" if stop.failed else verdict.reason)
        if stop.failed:
            return limit
        verdict = await self.acceptance.review(summary, tool_calls=self.usage.tool_calls, last_chance=True)
        return None if verdict.accepted else f"{limit}; {verdict.reason}"

    def _outcome(self, summary: str, stopped_by: str | None, error: str | None) -> Outcome:
        self.usage.wall_s = round(self._elapsed(), 3)
        return Outcome(summary, stopped_by, self.usage, error, list(self.acceptance.runs), list(self.calls))

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
            answer = reply.content.strip()
            verdict = await self.acceptance.review(answer, tool_calls=self.usage.tool_calls)
            if verdict.accepted:
                raise _Finished(answer)
            if verdict.feedback is not None:
                self._say(verdict.feedback)
                self._last_signature, self._repeats = None, 0  # the same call again is the next try, not a loop
                return
            raise _Rejected(verdict.reason or "the final answer was refused", answer)
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
        record = ToolCallRecord(step=self.steps, name=call.name, arguments=clip(call.raw, CALL_ARGUMENTS_SHOWN))
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
        if len(self.calls) < MAX_CALL_RECORDS:
            self.calls.append(record.model_copy(update={"is_error": is_error}))
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
