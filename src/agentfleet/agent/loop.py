"""The agent loop: ask the model, run the tools it calls, append the results, repeat.

History is append-only (the server's prefix cache hits on every turn). The loop ends when the
model answers without a tool call, or a limit (steps, tokens, wall time) or a loop of identical
calls stops it; terminal states are a small exception family caught in one place (`run`).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI

from agentfleet.agent.profiles import ModelProfile
from agentfleet.agent.textcalls import TextCall, recover_tool_calls
from agentfleet.agent.tools import ToolBox
from agentfleet.errors import LLMUnavailableError
from agentfleet.tasks import EventKind, Usage

Emit = Callable[[EventKind, dict[str, Any]], None]
EVENT_TEXT_LIMIT = 2000
NUDGE = (
    "You repeated the same tool call with the same arguments. Do something different, "
    "or give your final answer without calling a tool."
)
LOOK_FIRST = (
    "You have not run any command yet. Look at the repository first (list and read the relevant files), then answer."
)
FINAL_ANSWER = "Stop using tools now. Give your final answer: summarize what you did and what you found."
WAIT_FIRST_S, WAIT_MAX_S = 1.0, 30.0
"""Backoff while the model is away: the first pause, and the longest."""
AWAY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses of a model that is starting, overloaded or briefly broken: worth waiting for."""


def clip(text: str, limit: int = EVENT_TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} chars omitted] …\n{text[-half:]}"


@dataclass(frozen=True)
class Limits:
    max_steps: int = 50
    max_tokens: int = 2_000_000
    timeout_s: float = 3600.0
    max_reply_tokens: int | None = None  # per model reply, unless the profile sets its own
    model_wait_s: float = 600.0  # how long to wait for a model that is away, per request


@dataclass(frozen=True)
class Outcome:
    summary: str
    stopped_by: str | None  # None: the model finished; otherwise why the loop was stopped
    usage: Usage
    failed: bool = False  # a hard limit (steps, tokens, time) ended the work unfinished


class _Stop(Exception):
    """Terminal states of the loop."""


class _Finished(_Stop):
    def __init__(self, summary: str) -> None:
        self.summary = summary


class _LimitReached(_Stop):
    def __init__(self, reason: str, ask_final: bool = True, failed: bool = True) -> None:
        self.reason = reason
        self.ask_final = ask_final
        self.failed = failed


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: dict[str, Any] | None  # None: the model's JSON did not parse
    raw: str

    @property
    def signature(self) -> str:
        return f"{self.name}:{json.dumps(self.arguments, sort_keys=True)}"


class Agent:
    def __init__(
        self,
        llm: AsyncOpenAI,
        model: str,
        tools: ToolBox,
        profile: ModelProfile,
        limits: Limits,
        emit: Emit,
        usage: Usage | None = None,
    ) -> None:
        """`usage`: where to count what the work spends (the caller keeps it if the loop raises)."""
        self.llm, self.model, self.tools, self.profile = llm, model, tools, profile
        self.limits, self.emit = limits, emit
        self.messages: list[dict[str, Any]] = []
        self.usage = usage if usage is not None else Usage()
        self.steps = 0
        self._last_signature: str | None = None
        self._repeats = 0
        self._pushed_to_look = False
        self._started = 0.0

    async def run(self, task: str) -> Outcome:
        self._started = time.monotonic()
        self.messages = [
            {"role": "system", "content": self.profile.system_prompt},
            {"role": "user", "content": task},
        ]
        try:
            while True:
                self._check_limits()
                remaining = self.limits.timeout_s - self._elapsed()
                try:
                    await asyncio.wait_for(self._step(), timeout=remaining)
                except TimeoutError:
                    raise _LimitReached(f"time limit of {self.limits.timeout_s:g}s reached", False) from None
        except _Finished as done:
            return self._outcome(done.summary, None, failed=False)
        except _LimitReached as stop:
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
            raise _LimitReached(f"step limit of {self.limits.max_steps} reached")
        if self.usage.total_tokens >= self.limits.max_tokens:
            raise _LimitReached(f"token limit of {self.limits.max_tokens} reached", False)
        if self._elapsed() >= self.limits.timeout_s:
            raise _LimitReached(f"time limit of {self.limits.timeout_s:g}s reached", False)

    async def _step(self) -> None:
        self.steps += 1
        message = await self._query(tools=True)
        calls, parse_error = self._calls_in(message)
        self._remember(message, calls)
        if parse_error:
            self._say(
                f"Your tool call could not be parsed: {parse_error}. Write a valid call, "
                "or reply without a tool call to give your final answer."
            )
            return
        if not calls:
            if self.usage.tool_calls < self.profile.min_tool_calls and not self._pushed_to_look:
                self._pushed_to_look = True
                self._say(LOOK_FIRST)
                return
            raise _Finished((message.content or "").strip())
        for call in calls:
            await self._run(call)
        self._detect_loop(calls)

    async def _query(self, tools: bool) -> Any:
        kwargs: dict[str, Any] = {"model": self.model, "messages": self.messages}
        if self.profile.protocol == "native" and self.tools.names:
            kwargs["tools"] = self.tools.openai_schemas()
            kwargs["tool_choice"] = "auto" if tools else "none"
        if self.profile.temperature is not None:
            kwargs["temperature"] = self.profile.temperature
        reply_cap = self.profile.max_reply_tokens or self.limits.max_reply_tokens
        if reply_cap:
            kwargs["max_tokens"] = reply_cap
        if self.profile.stop and tools:
            kwargs["stop"] = list(self.profile.stop)
        started = time.monotonic()
        response = await self._complete(kwargs)
        if not response.choices:
            raise LLMUnavailableError("the model endpoint returned a reply with no choices")
        message = response.choices[0].message
        self._count_usage(response, message)
        self.emit(
            EventKind.LLM,
            {
                "step": self.steps,
                "content": clip(message.content or ""),
                "tool_calls": [tc.function.name for tc in (message.tool_calls or []) if tc.type == "function"],
                "prompt_tokens": response.usage.prompt_tokens if response.usage else None,
                "completion_tokens": response.usage.completion_tokens if response.usage else None,
                "elapsed_s": round(time.monotonic() - started, 3),
            },
        )
        return message

    async def _complete(self, kwargs: dict[str, Any]) -> Any:
        """One completion. While the model is away (unreachable, overloaded, starting: a GPU service
        scaled to zero takes minutes to come back), wait with backoff up to `limits.model_wait_s`,
        saying so in the events, then fail."""
        waiting_since: float | None = None
        delay = WAIT_FIRST_S
        while True:
            try:
                return await self.llm.chat.completions.create(**kwargs)
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                reason = self._model_away(exc)
            now = time.monotonic()
            waiting_since = now if waiting_since is None else waiting_since
            waited = now - waiting_since
            if waited + delay > self.limits.model_wait_s:
                budget = f" for {waited:.0f} s (AGENTFLEET_LLM_WAIT_S={self.limits.model_wait_s:g})" if waited else ""
                raise LLMUnavailableError(f"{reason}{budget}") from None
            self.emit(EventKind.LOG, {"message": "waiting for the model", "reason": reason, "waited_s": round(waited)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, WAIT_MAX_S)

    def _model_away(self, exc: openai.APIConnectionError | openai.APIStatusError) -> str:
        """Why the model did not answer, when waiting may help; raises when it cannot."""
        base = str(self.llm.base_url)
        if isinstance(exc, openai.APITimeoutError):
            return f"the model at {base} did not answer within the request timeout (AGENTFLEET_LLM_TIMEOUT_S)"
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot reach the model at {base} ({exc.__class__.__name__}); check GPT_OSS_URL and the server"
        message = f"the model at {base} answered HTTP {exc.status_code}: {clip(str(exc.message), 300)}"
        if exc.status_code in AWAY_STATUSES:
            return message
        raise LLMUnavailableError(message) from exc

    def _count_usage(self, response: Any, message: Any) -> None:
        self.usage.llm_calls += 1
        if response.usage:
            self.usage.prompt_tokens += response.usage.prompt_tokens or 0
            self.usage.completion_tokens += response.usage.completion_tokens or 0
        else:  # some servers omit usage: estimate at 4 characters a token
            self.usage.prompt_tokens += len(json.dumps(self.messages)) // 4
            self.usage.completion_tokens += len(message.content or "") // 4 + 1

    def _calls_in(self, message: Any) -> tuple[list[_Call], str | None]:
        native = [
            _Call(tc.id, tc.function.name, _loads(tc.function.arguments), tc.function.arguments)
            for tc in (message.tool_calls or [])
            if tc.type == "function"
        ]
        if native or not self.profile.recover_text_calls:
            return native, None
        shell = self.profile.shell_tool if self.profile.protocol == "text" else None
        recovery = recover_tool_calls(message.content, self.tools.names, shell_tool=shell)
        calls = [_recovered(c) for c in recovery.calls[: 1 if self.profile.protocol == "text" else None]]
        if calls:
            self.emit(EventKind.LOG, {"message": f"recovered {len(calls)} tool call(s) written as text"})
        return calls, recovery.error

    def _remember(self, message: Any, calls: list[_Call]) -> None:
        entry: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if calls and self.profile.protocol == "native":
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw}} for c in calls
            ]
        self.messages.append(entry)

    def _say(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    async def _run(self, call: _Call) -> None:
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
        if self.profile.protocol == "native":
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        else:
            label = "Error" if is_error else "Output"
            self._say(f"{label} of `{call.name}`:\n{text}")

    def _detect_loop(self, calls: list[_Call]) -> None:
        signature = "|".join(c.signature for c in calls)
        self._repeats = self._repeats + 1 if signature == self._last_signature else 0
        self._last_signature = signature
        if self._repeats == 1:
            self._say(NUDGE)
            self.emit(EventKind.LOG, {"message": "the model repeated its last call; nudged it"})
        elif self._repeats >= 2:
            raise _LimitReached("loop: the model kept repeating the same tool call", failed=False)

    async def _final_answer(self) -> str:
        """One last request without tools, asking for the final answer."""
        self._say(FINAL_ANSWER)
        try:
            message = await self._query(tools=False)
        except LLMUnavailableError:
            return ""
        self.messages.append({"role": "assistant", "content": message.content or ""})
        return (message.content or "").strip()


def _loads(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _recovered(call: TextCall) -> _Call:
    return _Call(f"call_{uuid.uuid4().hex[:12]}", call.name, call.arguments, json.dumps(call.arguments))
