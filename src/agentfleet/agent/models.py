"""The models the agent loop talks to. A Model turns the conversation into one reply (its text and
the tool calls in it) and shapes what goes back into the history; the loop knows no wire format.

Two tool protocols, two classes, over one chat-completions call (`OpenAIModel`: waiting while the
model is away, counting usage):
- `NativeToolsModel`: OpenAI tool schemas and `tool_calls` (gpt-oss through vLLM, OpenAI, Ollama);
  calls a model writes as text instead are recovered;
- `TextActionModel`: one ```bash block a turn, run through the shell tool, generation stopped at
  the closing fence (small local models).
A new protocol (the Responses API, raw harmony) is a new class here.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI

from agentfleet.agent.profiles import ModelProfile
from agentfleet.agent.textcalls import TextCall, recover_tool_calls
from agentfleet.agent.tools import ToolBox
from agentfleet.errors import LLMUnavailableError
from agentfleet.tasks import Emit, EventKind, Usage

EVENT_TEXT_LIMIT = 2000
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
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any] | None
    """None: the model's JSON did not parse."""
    raw: str

    @property
    def signature(self) -> str:
        return f"{self.name}:{json.dumps(self.arguments, sort_keys=True)}"


@dataclass(frozen=True)
class Reply:
    """One answer of the model, as the loop needs it."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    parse_error: str | None = None
    """A tool call was meant but could not be read; the model is told why."""
    recovered: int = 0
    """How many of `calls` were recovered from the text rather than sent as tool calls."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    elapsed_s: float = 0.0


class Model(Protocol):
    profile: ModelProfile

    async def query(self, messages: list[dict[str, Any]], *, tools: bool) -> Reply:
        """The model's next reply to `messages`; with `tools` False it is asked for text only.
        LLMUnavailableError when the model cannot answer."""
        ...

    def assistant_message(self, reply: Reply) -> dict[str, Any]:
        """The history entry of the reply."""
        ...

    def observation(self, call: ToolCall, text: str, is_error: bool) -> dict[str, Any]:
        """The history entry of a tool call's result."""
        ...


class OpenAIModel:
    """One chat completion against an OpenAI-compatible endpoint, for the protocols below."""

    def __init__(
        self,
        llm: AsyncOpenAI,
        name: str,
        profile: ModelProfile,
        tools: ToolBox,
        usage: Usage,
        emit: Emit,
        *,
        max_reply_tokens: int | None = None,
        wait_s: float = 600.0,
    ) -> None:
        """`usage`: where the calls and tokens are counted; `wait_s`: how long to wait for a model
        that is away; `max_reply_tokens`: the cap on one reply when the profile sets none."""
        self.llm, self.name, self.profile, self.tools = llm, name, profile, tools
        self.usage, self.emit = usage, emit
        self.max_reply_tokens = profile.max_reply_tokens or max_reply_tokens
        self.wait_s = wait_s

    async def query(self, messages: list[dict[str, Any]], *, tools: bool) -> Reply:
        started = time.monotonic()
        response = await self._complete(self._request(messages, tools))
        if not response.choices:
            raise LLMUnavailableError("the model endpoint returned a reply with no choices")
        message = response.choices[0].message
        self._count_usage(response, message, messages)
        calls, error, recovered = self._calls(message)
        usage = response.usage
        return Reply(
            content=message.content or "",
            calls=calls,
            parse_error=error,
            recovered=recovered,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            elapsed_s=round(time.monotonic() - started, 3),
        )

    def _request(self, messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.name, "messages": messages}
        if self.profile.temperature is not None:
            kwargs["temperature"] = self.profile.temperature
        if self.max_reply_tokens:
            kwargs["max_tokens"] = self.max_reply_tokens
        return kwargs

    def _calls(self, message: Any) -> tuple[list[ToolCall], str | None, int]:
        """(calls, parse error, how many were recovered from text) of a reply."""
        raise NotImplementedError

    def _recover(
        self, content: str | None, shell_tool: str | None, most: int | None
    ) -> tuple[list[ToolCall], str | None, int]:
        recovery = recover_tool_calls(content, self.tools.names, shell_tool=shell_tool)
        calls = [_recovered(c) for c in recovery.calls[:most]]
        return calls, recovery.error, len(calls)

    async def _complete(self, kwargs: dict[str, Any]) -> Any:
        """One completion. While the model is away (unreachable, overloaded, starting: a GPU service
        scaled to zero takes minutes to come back), wait with backoff up to `wait_s`, saying so in
        the events, then fail."""
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
            if waited + delay > self.wait_s:
                budget = f" for {waited:.0f} s (AGENTFLEET_LLM_WAIT_S={self.wait_s:g})" if waited else ""
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

    def _count_usage(self, response: Any, message: Any, messages: list[dict[str, Any]]) -> None:
        self.usage.llm_calls += 1
        if response.usage:
            self.usage.prompt_tokens += response.usage.prompt_tokens or 0
            self.usage.completion_tokens += response.usage.completion_tokens or 0
        else:  # some servers omit usage: estimate at 4 characters a token
            self.usage.prompt_tokens += len(json.dumps(messages)) // 4
            self.usage.completion_tokens += len(message.content or "") // 4 + 1


class NativeToolsModel(OpenAIModel):
    """OpenAI tool schemas and `tool_calls`; tool calls written as text are recovered."""

    def _request(self, messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
        kwargs = super()._request(messages, tools)
        if self.tools.names:
            kwargs["tools"] = self.tools.openai_schemas()
            kwargs["tool_choice"] = "auto" if tools else "none"
        return kwargs

    def _calls(self, message: Any) -> tuple[list[ToolCall], str | None, int]:
        native = [
            ToolCall(tc.id, tc.function.name, _loads(tc.function.arguments), tc.function.arguments)
            for tc in (message.tool_calls or [])
            if tc.type == "function"
        ]
        if native or not self.profile.recover_text_calls:
            return native, None, 0
        return self._recover(message.content, None, None)

    def assistant_message(self, reply: Reply) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.calls:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw}} for c in reply.calls
            ]
        return entry

    def observation(self, call: ToolCall, text: str, is_error: bool) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": call.id, "content": text}


class TextActionModel(OpenAIModel):
    """One ```bash block a turn, run through the shell tool; no tool schemas are sent."""

    def _request(self, messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
        kwargs = super()._request(messages, tools)
        if self.profile.stop and tools:
            kwargs["stop"] = list(self.profile.stop)
        return kwargs

    def _calls(self, message: Any) -> tuple[list[ToolCall], str | None, int]:
        if not self.profile.recover_text_calls:
            return [], None, 0
        return self._recover(message.content, self.profile.shell_tool, 1)

    def assistant_message(self, reply: Reply) -> dict[str, Any]:
        return {"role": "assistant", "content": reply.content}

    def observation(self, call: ToolCall, text: str, is_error: bool) -> dict[str, Any]:
        return {"role": "user", "content": f"{'Error' if is_error else 'Output'} of `{call.name}`:\n{text}"}


def model_for(
    llm: AsyncOpenAI, name: str, profile: ModelProfile, tools: ToolBox, usage: Usage, emit: Emit, **options: Any
) -> Model:
    """The Model of `profile`'s protocol."""
    kind = NativeToolsModel if profile.protocol == "native" else TextActionModel
    return kind(llm, name, profile, tools, usage, emit, **options)


def _loads(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _recovered(call: TextCall) -> ToolCall:
    return ToolCall(f"call_{uuid.uuid4().hex[:12]}", call.name, call.arguments, json.dumps(call.arguments))
