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
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import openai
from openai import AsyncOpenAI, AsyncStream
from openai._base_client import make_request_options
from openai.types.chat import ChatCompletion

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
    reasoning: str = ""
    """The model's reasoning as the server returned it apart from the content (gpt-oss on vLLM)."""


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


@dataclass
class Completion:
    """One reply as the endpoint sent it, whole or streamed: its text, its tool calls as
    (id, name, raw arguments), and the tokens it counted (None: the server did not say)."""

    content: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning: str = ""


class OpenAIModel:
    """One chat completion against an OpenAI-compatible endpoint, for the protocols below: streamed
    (a progress event about once a second while the model writes) unless `stream` is off."""

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
        stream: bool = True,
        progress_s: float = 1.0,
        embedded: bool = False,
        reasoning_effort: str = "high",
        headers: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        """`usage`: where the calls and tokens are counted; `wait_s`: how long to wait for a model
        that is away; `max_reply_tokens`: the cap on one reply when the profile sets none;
        `embedded`: the endpoint is the embedded model this machine started (messages say so);
        `reasoning_effort`: sent when the profile asks for it; `headers`: called before each request
        for headers it adds (an identity token; it may block, so it runs in a thread)."""
        self.llm, self.name, self.profile, self.tools = llm, name, profile, tools
        self.usage, self.emit = usage, emit
        self.max_reply_tokens = profile.max_reply_tokens or max_reply_tokens
        self.wait_s, self.stream, self.progress_s, self.embedded = wait_s, stream, progress_s, embedded
        self.reasoning_effort, self.headers = reasoning_effort, headers

    async def query(self, messages: list[dict[str, Any]], *, tools: bool) -> Reply:
        started = time.monotonic()
        completion = await self._complete(self._request(messages, tools))
        self._count_usage(completion, messages)
        calls, error, recovered = self._calls(completion)
        return Reply(
            content=completion.content,
            calls=calls,
            parse_error=error,
            recovered=recovered,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            elapsed_s=round(time.monotonic() - started, 3),
            reasoning=completion.reasoning,
        )

    def _request(self, messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.name, "messages": messages}
        if self.profile.temperature is not None:
            kwargs["temperature"] = self.profile.temperature
        if self.max_reply_tokens:
            kwargs["max_tokens"] = self.max_reply_tokens
        if self.profile.reasoning_effort:
            kwargs["reasoning_effort"] = self.reasoning_effort
        return kwargs

    def _calls(self, completion: Completion) -> tuple[list[ToolCall], str | None, int]:
        """(calls, parse error, how many were recovered from text) of a reply."""
        raise NotImplementedError

    def _recover(
        self, content: str | None, shell_tool: str | None, most: int | None
    ) -> tuple[list[ToolCall], str | None, int]:
        recovery = recover_tool_calls(content, self.tools.names, shell_tool=shell_tool)
        calls = [_recovered(c) for c in recovery.calls[:most]]
        return calls, recovery.error, len(calls)

    async def _post(self, body: dict[str, Any], headers: dict[str, str] | None, *, stream: bool) -> Any:
        """POST the request body as it is, through the client's own `post` (its headers, auth,
        timeout, errors and stream parsing). `chat.completions.create` would first transform the
        whole history against the SDK's typed parameters on every call (most of a round trip,
        growing with the history); the history is plain JSON already. Serialized here, so the
        bytes sent are exactly the JSON of `body`."""
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()  # as the SDK
        options = make_request_options(extra_headers=headers, security={"bearer_auth": True})
        return await self.llm.post(
            "/chat/completions",
            content=content,
            cast_to=ChatCompletion,
            options=options,
            stream=stream,
            # Chunks as the plain JSON they are: the SDK still decodes the events and raises for an
            # error in the stream, but builds no typed object per chunk (~0.3 ms each, ~2 ms a step).
            # `object`, not `dict[str, Any]`: for any other type the SDK still walks each chunk
            # (construct_type, ~0.65 ms a step); `object` it hands over as decoded.
            stream_cls=AsyncStream[object],
        )

    async def _complete(self, kwargs: dict[str, Any]) -> Completion:
        """One completion. While the model is away (unreachable, overloaded, starting: a GPU service
        scaled to zero takes minutes to come back), wait with backoff up to `wait_s`, saying so in
        the events, then fail. A model that stays silent past the request timeout fails at once."""
        waiting_since: float | None = None
        delay = WAIT_FIRST_S
        while True:
            try:
                headers = await self._headers() if self.headers is not None else None
                return await (self._streamed(kwargs, headers) if self.stream else self._whole(kwargs, headers))
            except (openai.APITimeoutError, httpx.TimeoutException):
                raise LLMUnavailableError(self._silent()) from None
            except (openai.APIConnectionError, openai.APIStatusError, httpx.TransportError) as exc:
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

    async def _headers(self) -> dict[str, str]:
        assert self.headers is not None
        try:
            return await asyncio.to_thread(self.headers)
        except Exception as exc:  # google-auth: no credentials, or the token endpoint refused
            raise LLMUnavailableError(
                f"cannot get a Google identity token for {self._where()} "
                f"({type(exc).__name__}: {clip(str(exc), 300)}); "
                "give the job's service account credentials, or set AGENTFLEET_LLM_IDENTITY_TOKEN=false "
                "for an endpoint that is not a private Cloud Run service"
            ) from exc

    async def _whole(self, kwargs: dict[str, Any], headers: dict[str, str] | None) -> Completion:
        response: ChatCompletion = await self._post(kwargs, headers, stream=False)
        if not response.choices:
            raise LLMUnavailableError("the model endpoint returned a reply with no choices")
        message = response.choices[0].message
        calls = [
            (tc.id, tc.function.name, tc.function.arguments)
            for tc in (message.tool_calls or [])
            if tc.type == "function"
        ]
        usage = response.usage
        return Completion(
            message.content or "",
            calls,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            _reasoning(message),
        )

    async def _streamed(self, kwargs: dict[str, Any], headers: dict[str, str] | None) -> Completion:
        """The reply streamed: pieces of text and of tool calls put together as they come, and a
        progress event (pieces so far ≈ tokens, seconds so far) at most every `progress_s`."""
        started = last = time.monotonic()
        text: list[str] = []
        thought: list[str] = []
        calls: dict[int, list[str]] = {}
        pieces, usage, choices = 0, None, 0
        body = {**kwargs, "stream": True, "stream_options": {"include_usage": True}}
        stream: AsyncStream[object] = await self._post(body, headers, stream=True)
        async with stream:
            async for chunk in stream:
                if not isinstance(chunk, dict):  # not a chunk at all: nothing in it to put together
                    continue
                usage = _Usage.of(chunk.get("usage")) or usage
                for choice in (chunk.get("choices") or [])[:1]:
                    choices += 1
                    delta = choice.get("delta") or {}
                    if content := delta.get("content"):
                        text.append(content)
                        pieces += 1
                    if reasoning := _reasoning_of(delta):
                        thought.append(reasoning)
                        pieces += 1
                    for tc in delta.get("tool_calls") or []:
                        entry = calls.setdefault(tc.get("index", 0), ["", "", ""])
                        entry[0] = tc.get("id") or entry[0]
                        function = tc.get("function")
                        if function is not None:
                            entry[1] += function.get("name") or ""
                            entry[2] += function.get("arguments") or ""
                            pieces += 1
                now = time.monotonic()
                if now - last >= self.progress_s:
                    last = now
                    self.emit(EventKind.PROGRESS, {"tokens": pieces, "elapsed_s": round(now - started, 1)})
        if not choices:
            raise LLMUnavailableError("the model endpoint returned a reply with no choices")
        made = [(c[0] or f"call_{uuid.uuid4().hex[:12]}", c[1], c[2]) for _, c in sorted(calls.items())]
        return Completion(
            "".join(text),
            made,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            "".join(thought),
        )

    def _where(self) -> str:
        return f"the embedded model ({self.llm.base_url})" if self.embedded else f"the model at {self.llm.base_url}"

    def _silent(self) -> str:
        timeout = self.llm.timeout
        seconds = f"{timeout:g} s" if isinstance(timeout, int | float) else "the request timeout"
        hint = "; a CPU model is slow on long prompts: raise it, or give the task less to read" if self.embedded else ""
        return f"{self._where()} did not answer within {seconds} (AGENTFLEET_LLM_TIMEOUT_S){hint}"

    def _model_away(self, exc: Exception) -> str:
        """Why the model did not answer, when waiting may help; raises when it cannot."""
        if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
            hint = "; it may have stopped (see its log)" if self.embedded else "; is the server running at that URL?"
            return f"cannot reach {self._where()} ({_connection_failure(exc)}){hint}"
        assert isinstance(exc, openai.APIStatusError)
        message = f"{self._where()} answered HTTP {exc.status_code}: {clip(str(exc.message), 300)}"
        if exc.status_code in AWAY_STATUSES:
            return message
        raise LLMUnavailableError(message) from exc

    def _count_usage(self, completion: Completion, messages: list[dict[str, Any]]) -> None:
        self.usage.llm_calls += 1
        if completion.prompt_tokens is not None or completion.completion_tokens is not None:
            self.usage.prompt_tokens += completion.prompt_tokens or 0
            self.usage.completion_tokens += completion.completion_tokens or 0
        else:  # some servers omit usage: estimate at 4 characters a token
            self.usage.prompt_tokens += len(json.dumps(messages)) // 4
            self.usage.completion_tokens += len(completion.content) // 4 + 1


class NativeToolsModel(OpenAIModel):
    """OpenAI tool schemas and `tool_calls`; tool calls written as text are recovered."""

    def _request(self, messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
        kwargs = super()._request(messages, tools)
        if self.tools.names:
            kwargs["tools"] = self.tools.openai_schemas()
            kwargs["tool_choice"] = "auto" if tools else "none"
        return kwargs

    def _calls(self, completion: Completion) -> tuple[list[ToolCall], str | None, int]:
        native = [ToolCall(id_, name, _loads(raw), raw) for id_, name, raw in completion.calls]
        if native or not self.profile.recover_text_calls:
            return native, None, 0
        return self._recover(completion.content, None, None)

    def assistant_message(self, reply: Reply) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.calls:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw}} for c in reply.calls
            ]
            if self.profile.keep_reasoning and reply.reasoning:
                entry["reasoning"] = reply.reasoning
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

    def _calls(self, completion: Completion) -> tuple[list[ToolCall], str | None, int]:
        if not self.profile.recover_text_calls:
            return [], None, 0
        return self._recover(completion.content, self.profile.shell_tool, 1)

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


def _reasoning(message: Any) -> str:
    """The reasoning text of a message or a streamed delta: `reasoning` (current vLLM), else the older
    `reasoning_content`; both arrive as fields the openai package does not declare."""
    for name in ("reasoning", "reasoning_content"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _reasoning_of(delta: dict[str, Any]) -> str:
    """`_reasoning` of a streamed delta as the JSON it came as."""
    for name in ("reasoning", "reasoning_content"):
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: int | None
    completion_tokens: int | None

    @classmethod
    def of(cls, usage: Any) -> _Usage | None:
        """The token counts of a chunk's `usage` (None when it has none)."""
        if not isinstance(usage, dict):
            return None
        return cls(usage.get("prompt_tokens"), usage.get("completion_tokens"))


def _connection_failure(exc: BaseException) -> str:
    """What went wrong under a connection error, from its chain of causes: refused, a name that
    does not resolve, a reset; else the innermost exception's kind."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in chain:
        if isinstance(item, ConnectionRefusedError) or "connection refused" in str(item).lower():
            return "connection refused"
        if isinstance(item, socket.gaierror) or "name or service not known" in str(item).lower():
            return "the host name does not resolve"
        if isinstance(item, ConnectionResetError):
            return "the connection was reset"
    return chain[-1].__class__.__name__


def _loads(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _recovered(call: TextCall) -> ToolCall:
    return ToolCall(f"call_{uuid.uuid4().hex[:12]}", call.name, call.arguments, json.dumps(call.arguments))
