"""The model client: streamed replies put together (text and tool calls) with progress events while
the model writes, and errors that say what happened: refused, silent too long, the embedded model."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from openai import AsyncOpenAI

from agentfleet.agent.models import NativeToolsModel, OpenAIModel, TextActionModel
from agentfleet.agent.profiles import PROFILES
from agentfleet.agent.tools import ToolBox
from agentfleet.errors import LLMUnavailableError
from agentfleet.net import free_port
from agentfleet.tasks import EventKind, Usage
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

Events = list[tuple[EventKind, dict[str, Any]]]


def ask(
    url: str, kind: type[OpenAIModel] = NativeToolsModel, timeout: float = 30, **options: Any
) -> tuple[Any, Events]:
    events: Events = []
    profile = PROFILES["native" if kind is NativeToolsModel else "text"]

    async def go() -> Any:
        async with (
            ToolBox(profile) as tools,
            AsyncOpenAI(base_url=url, api_key="x", timeout=timeout, max_retries=0) as llm,
        ):
            model = kind(llm, "m", profile, tools, Usage(), lambda k, d: events.append((k, d)), **options)
            return await model.query([{"role": "user", "content": "hi"}], tools=True)

    return anyio.run(go), events


def test_a_streamed_reply_is_put_together_and_progress_is_reported_while_it_comes() -> None:
    slow = {"content": "I will read the file first, then answer the question.", "stream_delay_s": 0.3}
    with ScriptedLLM([slow]) as llm:
        answer, events = ask(llm.url, TextActionModel, progress_s=0.5)
        assert llm.requests[0]["stream"] is True and llm.requests[0]["stream_options"] == {"include_usage": True}
    assert answer.content == slow["content"]
    progress = [d for k, d in events if k is EventKind.PROGRESS]
    assert len(progress) >= 3, "about every half second over a reply of ~2.5 s"
    tokens = [p["tokens"] for p in progress]
    assert tokens == sorted(tokens) and tokens[-1] > 0 and all(p["elapsed_s"] > 0 for p in progress)
    assert answer.prompt_tokens and answer.completion_tokens, "the usage of the last chunk is counted"


def test_streamed_tool_calls_are_put_together_from_their_pieces() -> None:
    call = tool_call("read_file", {"path": "src/a_rather_long_module_name.py", "start": 10, "end": 40})
    with ScriptedLLM([reply("Reading.", call)]) as llm:
        answer, _ = ask(llm.url)
    (got,) = answer.calls
    assert (got.id, got.name, got.arguments) == (
        call["id"],
        "read_file",
        {"path": "src/a_rather_long_module_name.py", "start": 10, "end": 40},
    )


def test_a_reply_without_streaming_is_read_whole() -> None:
    with ScriptedLLM([reply("plain")]) as llm:
        answer, events = ask(llm.url, stream=False)
        assert "stream" not in llm.requests[0]
    assert answer.content == "plain" and not [k for k, _ in events if k is EventKind.PROGRESS]


def test_a_refused_connection_says_the_model_cannot_be_reached_there() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailableError) as refused:
        ask(url, wait_s=0)
    message = str(refused.value)
    assert message.startswith(f"cannot reach the model at {url}/ (connection refused)")
    assert "GPT_OSS_URL" not in message


def test_a_model_silent_past_the_timeout_says_so_with_the_setting_and_is_not_retried() -> None:
    with ScriptedLLM([{"content": "late", "delay_s": 3}, reply("never asked")]) as llm:
        with pytest.raises(LLMUnavailableError) as silent:
            ask(llm.url, timeout=1, wait_s=60)
        assert len(llm.requests) == 1, "a timeout fails at once: waiting longer would not make the model faster"
    assert str(silent.value) == f"the model at {llm.url}/ did not answer within 1 s (AGENTFLEET_LLM_TIMEOUT_S)"


def test_the_embedded_model_is_named_as_such() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailableError) as refused:
        ask(url, wait_s=0, embedded=True)
    assert str(refused.value).startswith(f"cannot reach the embedded model ({url}/) (connection refused)")
    with ScriptedLLM([{"content": "late", "delay_s": 3}]) as llm, pytest.raises(LLMUnavailableError) as silent:
        ask(llm.url, timeout=1, embedded=True)
    assert "did not answer within 1 s (AGENTFLEET_LLM_TIMEOUT_S); a CPU model is slow on long prompts" in str(
        silent.value
    )


def test_the_request_body_is_sent_byte_for_byte_as_the_agent_built_it() -> None:
    """No per-request transform of the history: what the server receives is the JSON of the
    messages (and the rest of the request) exactly as the model built them."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": 'héllo ✓ \u2028 "quoted"'},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "exec", "arguments": '{"command": "ls"}'}}
            ],
            "reasoning": "an undeclared field stays",
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a.py\n[exit code 0]"},
    ]
    sent: list[dict[str, Any]] = []
    profile = PROFILES["native"]

    async def go(url: str, stream: bool) -> None:
        async with (
            ToolBox(profile) as tools,
            AsyncOpenAI(base_url=url, api_key="k-123", max_retries=0) as llm,
        ):
            model = NativeToolsModel(llm, "m", profile, tools, Usage(), lambda k, d: None, stream=stream)
            original = model._request

            def recording(messages: list[dict[str, Any]], tools: bool) -> dict[str, Any]:
                body = original(messages, tools)
                sent.append(body)
                return body

            model._request = recording  # type: ignore[method-assign]
            await model.query(messages, tools=True)

    for stream in (True, False):
        sent.clear()
        with ScriptedLLM([reply("ok")]) as llm:
            anyio.run(go, llm.url, stream)
        raw = llm.raw_requests[0]
        expected = {**sent[0], **({"stream": True, "stream_options": {"include_usage": True}} if stream else {})}
        assert raw == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
        assert json.loads(raw)["messages"] == messages
        headers = {k.lower(): v for k, v in llm.request_headers[0].items()}
        assert headers["authorization"] == "Bearer k-123" and headers["content-type"] == "application/json"


def test_streamed_chunks_reach_the_model_as_decoded_without_the_sdk_walking_them(monkeypatch) -> None:
    """The stream's chunks are handed over as the JSON decoded them: the SDK's construct_type (a
    recursive walk of each chunk, ~0.65 ms a step) is not called for any of them."""
    import openai._base_client

    walked: list[object] = []
    construct = openai._base_client.construct_type

    def counting(*, type_: object, value: object) -> object:
        walked.append(value)
        return construct(type_=type_, value=value)

    monkeypatch.setattr(openai._base_client, "construct_type", counting)
    call = tool_call("exec", {"command": "grep -c VALUE mod1.py"})
    with ScriptedLLM([reply("Counting.", call)]) as llm:
        answer, _ = ask(llm.url)
    assert [(c.name, c.arguments) for c in answer.calls] == [("exec", {"command": "grep -c VALUE mod1.py"})]
    assert answer.content == "Counting." and answer.prompt_tokens
    assert walked == [], f"{len(walked)} chunks walked by the SDK"
