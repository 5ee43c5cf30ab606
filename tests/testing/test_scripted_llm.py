"""The scripted OpenAI-compatible server, driven by the official openai client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from agentfleet.net import free_port
from agentfleet.testing.scripted_llm import ScriptedLLM, load_script, reply, tool_call

USER: list[Any] = [{"role": "user", "content": "fix the bug"}]


CLIENTS: weakref.WeakKeyDictionary[ScriptedLLM, OpenAI] = weakref.WeakKeyDictionary()


def client(llm: ScriptedLLM) -> OpenAI:
    """One openai client per server (building one costs ~0.1s)."""
    if llm not in CLIENTS:
        CLIENTS[llm] = OpenAI(base_url=llm.url, api_key="x", max_retries=0)
    return CLIENTS[llm]


def ask(llm: ScriptedLLM, **extra: Any) -> Any:
    """A chat completion (or a stream of chunks with stream=True) for the USER messages."""
    return client(llm).chat.completions.create(model="test-model", messages=USER, **extra)


def test_replies_are_replayed_in_order_with_tool_calls_parsed_by_the_openai_client() -> None:
    script = [reply(None, tool_call("read_file", {"path": "a.py"}, "call_1")), reply("done")]
    with ScriptedLLM(script) as llm:
        first, second = ask(llm), ask(llm)
    call = first.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_1", "read_file")
    assert json.loads(call.function.arguments) == {"path": "a.py"}
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.model == "test-model"
    assert second.choices[0].message.content == "done"
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].finish_reason == "stop"


def test_usage_estimates_prompt_and_completion_tokens_from_characters() -> None:
    with ScriptedLLM([reply("x" * 40), reply("")]) as llm:
        usage, empty = ask(llm).usage, ask(llm).usage
    prompt = len(json.dumps(USER)) // 4
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (prompt, 10, prompt + 10)
    assert empty.completion_tokens == 1


def test_streaming_with_the_openai_client_reassembles_content_and_tool_calls() -> None:
    script = [reply("Let me look at the file first.", tool_call("grep", {"pattern": "def main", "path": "."}))]
    with ScriptedLLM(script) as llm:
        stream = ask(llm, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for delta in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += delta.function.name or ""
            call["arguments"] += delta.function.arguments or ""
    assert content == "Let me look at the file first."
    assert calls[0]["name"] == "grep" and calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"pattern": "def main", "path": "."}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_streaming_without_include_usage_sends_no_usage_chunk() -> None:
    with ScriptedLLM([reply("hi")]) as llm:
        chunks = list(ask(llm, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_every_request_is_recorded_in_memory_and_in_the_record_file(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    with ScriptedLLM([reply("one"), reply("two")], record=record) as llm:
        ask(llm, temperature=0.5)
        ask(llm, stream=True).close()
    assert [r["messages"] for r in llm.requests] == [USER, USER]
    assert llm.requests[0]["temperature"] == 0.5 and llm.requests[1]["stream"] is True
    assert [json.loads(line) for line in record.read_text().splitlines()] == llm.requests


def test_an_exhausted_script_makes_the_client_raise() -> None:
    with ScriptedLLM([reply("only")]) as llm:
        ask(llm)
        with pytest.raises(openai.BadRequestError, match="script exhausted after 1 replies"):
            ask(llm)


def test_repeat_last_keeps_replying_with_the_last_message() -> None:
    with ScriptedLLM([reply("first"), reply("again")], repeat_last=True) as llm:
        answers = [ask(llm).choices[0].message.content for _ in range(4)]
    assert answers == ["first", "again", "again", "again"]


def test_an_error_entry_fails_that_request_with_its_status() -> None:
    script = [{"error": {"status": 503, "message": "overloaded"}}, reply("recovered")]
    with ScriptedLLM(script) as llm:
        with pytest.raises(openai.APIStatusError, match="overloaded") as raised:
            ask(llm)
        assert raised.value.status_code == 503
        assert ask(llm).choices[0].message.content == "recovered"


def test_a_delay_entry_answers_no_sooner_than_its_delay() -> None:
    with ScriptedLLM([{"delay_s": 0.2, "content": "late"}]) as llm:
        started = time.monotonic()
        answer = ask(llm)
    assert time.monotonic() - started >= 0.2
    assert answer.choices[0].message.content == "late"


def test_concurrent_requests_each_get_a_distinct_reply() -> None:
    with ScriptedLLM([reply(str(i)) for i in range(16)]) as llm, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ask(llm).choices[0].message.content, range(16)))
    assert sorted(answers, key=int) == [str(i) for i in range(16)]
    assert len(llm.requests) == 16


def test_health_models_and_the_unversioned_path_with_unknown_fields() -> None:
    with ScriptedLLM([reply("plain")]) as llm:
        root = llm.url.removesuffix("/v1")
        health = httpx.get(f"{root}/health")
        models = client(llm).models.list()
        body = {"model": "m", "messages": USER, "unknown_field": {"x": 1}}
        answer = httpx.post(f"{root}/chat/completions", json=body).json()
        missing = httpx.get(f"{root}/nowhere")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert [m.id for m in models.data] == ["scripted"]
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == "plain"
    assert missing.status_code == 404


def test_a_non_json_body_is_a_bad_request() -> None:
    with ScriptedLLM([reply("unused")]) as llm:
        response = httpx.post(f"{llm.url}/chat/completions", content=b"not json")
    assert response.status_code == 400 and llm.requests == []


def test_stop_closes_the_socket() -> None:
    llm = ScriptedLLM([]).start()
    llm.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{llm.url}/models")


def test_load_script_reads_a_json_list_and_rejects_anything_else(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps([reply("a"), "b"]))
    bad.write_text(json.dumps({"content": "a"}))
    assert ScriptedLLM.load_script(good) == [{"content": "a"}, {"content": "b"}]
    with pytest.raises(ValueError, match="JSON list"):
        load_script(bad)


def wait_healthy(url: str, proc: subprocess.Popen[str], deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        try:  # doubles as the pause between polls: a server that died fails the test at once
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"server exited early: {proc.communicate()[1]}")
    raise AssertionError(f"{url} not healthy within {deadline_s}s")


def test_the_cli_serves_a_script_on_a_free_port_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    script, record, port = tmp_path / "script.json", tmp_path / "record.jsonl", free_port()
    script.write_text(json.dumps([reply("from the cli")]))
    command = [
        sys.executable,
        "-m",
        "agentfleet.testing.scripted_llm",
        "--port",
        str(port),
        "--script",
        str(script),
        "--record",
        str(record),
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        llm_client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        answer = llm_client.chat.completions.create(model="m", messages=USER)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answer.choices[0].message.content == "from the cli"
    assert proc.returncode == 0
    assert f"scripted LLM listening on http://127.0.0.1:{port}/v1" in stderr
    assert json.loads(record.read_text())["messages"] == USER


def test_per_turn_answers_each_conversation_by_its_own_turn_number() -> None:
    script = [reply("first"), reply("second")]
    with ScriptedLLM(script, per_turn=True) as llm:
        answers = [ask(llm).choices[0].message.content for _ in range(3)]  # three fresh conversations
        later = client(llm).chat.completions.create(
            model="m", messages=[*USER, {"role": "assistant", "content": "first"}, {"role": "user", "content": "go"}]
        )
    assert answers == ["first", "first", "first"]
    assert later.choices[0].message.content == "second"
