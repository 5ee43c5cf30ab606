"""The A2A bridge both ways, over real A2A endpoints on loopback.

Outward: the bridge's MCP tools (in-process `mcp.Client(server)`, and once over streamable HTTP)
calling a small echo A2A agent the test serves. Inward: `agentfleet serve`'s own A2A endpoint driven
by the a2a-sdk client through a whole task with the scripted model, a cancel, and the bridge talking
to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import get_text_parts, new_data_part, new_text_part
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageRequest,
    TaskState,
)
from mcp import Client

from agentfleet.mcp_servers.a2a_bridge import Bridge, Reach, build_server
from agentfleet.net import free_port
from agentfleet.testing.a2a_echo import echo_app
from agentfleet.testing.asgi import serving
from agentfleet.testing.polling import wait_for
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply, tool_call
from tests.processes import pids_running, unique_sleep_seconds
from tests.test_serve import auth, local_client, server_process


@contextlib.contextmanager
def serve_asgi(app_for_port: Any) -> Iterator[str]:
    """Serve the app (built for its port) on loopback; stop it after."""
    port = free_port()
    with serving(app_for_port(port), port=port) as url:
        yield url


@pytest.fixture(params=[True, False], ids=["streaming", "polling"])
def echo(request: pytest.FixtureRequest) -> Iterator[str]:
    with serve_asgi(lambda port: echo_app(port, streaming=request.param)) as url:
        yield url


def call(bridge: Bridge, tool: str, **arguments: object) -> tuple[Any, str, bool]:
    """(structured result, text, is_error) of one tool call, in process."""

    async def go() -> tuple[Any, str, bool]:
        async with Client(build_server(bridge)) as client:
            result = await client.call_tool(tool, arguments)
            text = "\n".join(getattr(b, "text", "") for b in result.content)
            return result.structured_content, text, bool(result.is_error)

    return anyio.run(go)


# --- outward: the bridge's tools ------------------------------------------------------------------


def test_the_server_offers_the_documented_tools() -> None:
    async def go() -> dict:
        async with Client(build_server(Bridge(Reach()))) as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    tools = anyio.run(go)
    assert set(tools) == {"get_agent_card", "send_message", "get_task"}
    assert tools["send_message"]["required"] == ["agent", "text"]
    assert set(tools["send_message"]["properties"]) == {"agent", "text", "data", "task_id", "timeout_s"}


def test_the_card_of_a_configured_agent_names_its_skills_and_address(echo) -> None:
    info, _, is_error = call(Bridge(Reach(agents={"echo": echo})), "get_agent_card", agent="echo")
    assert not is_error, info
    assert info["name"] == "Echo" and info["url"] == f"{echo}/rpc"
    assert info["skills"] == [{"id": "echo", "name": "Echo", "description": "Says it back", "examples": ["hi"]}]


def test_a_message_is_followed_until_the_agent_completes_its_task(echo) -> None:
    bridge = Bridge(Reach(agents={"echo": echo}), poll_s=0.05)
    answer, _, is_error = call(bridge, "send_message", agent="echo", text="slow hello", timeout_s=30)
    assert not is_error, answer
    assert answer["state"] == "completed"
    assert answer["text"] == "echo: slow hello"
    assert answer["artifacts"] == [{"name": "shout", "text": "SLOW HELLO", "urls": [], "data": []}]
    again, _, is_error = call(bridge, "get_task", agent="echo", task_id=answer["task_id"])
    assert not is_error and again["state"] == "completed" and again["text"] == "echo: slow hello"


def test_an_agent_slower_than_the_timeout_is_a_tool_error_naming_its_task(echo) -> None:
    _, text, is_error = call(
        Bridge(Reach(agents={"echo": echo})), "send_message", agent="echo", text="slow", timeout_s=1
    )
    assert is_error
    assert "did not finish within 1 s" in text and ("still working" in text or "has not answered" in text)


def test_an_unreachable_agent_is_a_tool_error_and_the_server_keeps_serving(echo) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    bridge = Bridge(Reach(agents={"gone": nowhere, "echo": echo}))

    async def go() -> tuple[str, bool, str]:
        async with Client(build_server(bridge)) as client:
            failed = await client.call_tool("send_message", {"agent": "gone", "text": "hi"})
            ok = await client.call_tool("send_message", {"agent": "echo", "text": "still there?"})
            return failed.content[0].text, bool(failed.is_error), ok.structured_content["text"]  # type: ignore[union-attr,index]

    text, is_error, answer = anyio.run(go)
    assert is_error and "could not read the agent card of gone" in text and "check the URL" in text
    assert answer == "echo: still there?"


def test_a_bad_card_is_a_tool_error(echo) -> None:
    _, text, is_error = call(Bridge(Reach(agents={"bad": f"{echo}/bad"})), "get_agent_card", agent="bad")
    assert is_error and "could not read the agent card of bad" in text


def test_only_configured_agents_and_allowed_public_urls_are_reached(echo) -> None:
    _, text, is_error = call(Bridge(Reach()), "get_agent_card", agent="echo")
    assert is_error and "no agent is configured as 'echo'" in text
    _, text, is_error = call(Bridge(Reach()), "get_agent_card", agent=echo)
    assert is_error and "is not allowed here" in text
    _, text, is_error = call(Bridge(Reach(allowed_urls=[echo])), "get_agent_card", agent=echo)
    assert is_error and "resolves to 127.0.0.1, a loopback, private or link-local address" in text
    _, text, is_error = call(
        Bridge(Reach(allowed_urls=["http://user:pw@example.com"])), "get_agent_card", agent="http://user:pw@example.com"
    )
    assert is_error and "may not carry credentials" in text and "pw" not in text
    info, _, is_error = call(Bridge(Reach(allowed_urls=[echo], allow_private=True)), "get_agent_card", agent=echo)
    assert not is_error and info["name"] == "Echo"


def test_a_card_that_sends_messages_elsewhere_is_refused() -> None:
    elsewhere = f"http://localhost:{free_port()}/rpc"  # another origin than the configured agent's
    with serve_asgi(lambda port: echo_app(port, streaming=True, message_url=elsewhere)) as url:
        _, text, is_error = call(Bridge(Reach(agents={"echo": url})), "send_message", agent="echo", text="hi")
    assert is_error and "is not allowed here" in text and elsewhere in text


def test_the_bridge_serves_over_streamable_http(tmp_path) -> None:
    with serve_asgi(lambda port: echo_app(port, streaming=True)) as echo_url:
        port = free_port()
        module = "agentfleet.mcp_servers.a2a_bridge"
        args = ["--agent", f"echo={echo_url}", "--transport", "streamable-http", "--port", str(port)]
        log = (tmp_path / "bridge.log").open("wb")
        server = subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT)

        async def go() -> dict:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                result = await client.call_tool("send_message", {"agent": "echo", "text": "over http"})
                return result.structured_content  # type: ignore[return-value]

        try:
            wait_for(lambda: _listening(port) or server.poll() is not None, timeout_s=30, what="the bridge")
            assert server.poll() is None, (tmp_path / "bridge.log").read_text()
            answer = anyio.run(go)
        finally:
            server.terminate()
            server.wait(timeout=10)
            log.close()
    assert answer["state"] == "completed" and answer["text"] == "echo: over http"


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# --- inward: AgentFleet as an A2A agent -------------------------------------------------------------

FILES = {"app.py": "print('hello')\n"}
PATCH = "*** Begin Patch\n*** Update File: app.py\n@@\n-print('hello')\n+print('hello, world')\n*** End Patch"


def user_message(text: str, data: dict[str, Any] | None = None) -> Message:
    parts = [new_text_part(text), *([new_data_part(data)] if data else [])]
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts)


def test_agentfleet_works_a_task_sent_over_a2a_and_returns_the_summary_and_patch(repo_factory, tmp_path) -> None:
    script = [look(), reply(None, tool_call("apply_patch", {"patch": PATCH})), reply("app.py now greets the world.")]
    repo = str(repo_factory(FILES))
    with ScriptedLLM(script) as llm, server_process(tmp_path, llm.url) as (url, _):
        public_card = httpx.get(f"{url}/.well-known/agent-card.json")
        assert httpx.post(f"{url}/a2a", json={}).status_code == 401, "messages need the bearer token"

        async def go() -> tuple[AgentCard, list[Any]]:
            async with httpx.AsyncClient(headers=auth(tmp_path), timeout=httpx.Timeout(30, read=None)) as http:
                card = await A2ACardResolver(http, url).get_agent_card()
                client = ClientFactory(ClientConfig(httpx_client=http)).create(card)
                request = SendMessageRequest(message=user_message("Make app.py greet the world", {"repo_url": repo}))
                return card, [event async for event in client.send_message(request)]

        card, events = asyncio.run(go())
        states = [TaskState.Name(e.status_update.status.state) for e in events if e.HasField("status_update")]
        artifacts = {
            e.artifact_update.artifact.name: e.artifact_update.artifact for e in events if e.HasField("artifact_update")
        }
        task_id = events[-1].status_update.status.message.metadata["agentfleet_task_id"]
        task = local_client(url, tmp_path).task(task_id)
    assert public_card.status_code == 200
    assert card.name == "AgentFleet" and card.skills[0].id == "repository-task"
    assert card.supported_interfaces[0].url == f"{url}/a2a"
    assert states[0] == "TASK_STATE_WORKING" and states[-1] == "TASK_STATE_COMPLETED"
    assert task.status.value == "SUCCEEDED" and task.result is not None
    assert get_text_parts(artifacts["summary"].parts) == ["app.py now greets the world."]
    patch = artifacts["patch"]
    assert patch.parts[0].url.startswith("file://") and patch.parts[0].url.endswith(task.result.patch)
    assert "+print('hello, world')" in get_text_parts(patch.parts)[-1]


def test_an_a2a_cancel_cancels_the_agentfleet_task_and_stops_its_work(repo_factory, tmp_path) -> None:
    marker = unique_sleep_seconds()
    script = [reply(None, tool_call("exec", {"command": f"sleep {marker}"})), reply("never")]
    repo = str(repo_factory(FILES))
    with ScriptedLLM(script) as llm, server_process(tmp_path, llm.url) as (url, _):

        async def go() -> tuple[str, str]:
            async with httpx.AsyncClient(headers=auth(tmp_path), timeout=30) as http:
                card = await A2ACardResolver(http, url).get_agent_card()
                client = ClientFactory(ClientConfig(httpx_client=http, streaming=False, polling=True)).create(card)
                request = SendMessageRequest(message=user_message("Wait", {"repo_url": repo}))
                [first] = [event async for event in client.send_message(request)]
                a2a_id = first.task.id
                deadline = time.monotonic() + 60
                while not pids_running(marker):
                    assert time.monotonic() < deadline, "the agent's command never started"
                    await asyncio.sleep(0.1)
                running = await client.get_task(GetTaskRequest(id=a2a_id))
                task_id = running.status.message.metadata["agentfleet_task_id"]
                cancelled = await client.cancel_task(CancelTaskRequest(id=a2a_id))
                return task_id, TaskState.Name(cancelled.status.state)

        try:
            task_id, state = asyncio.run(go())
            wait_for(lambda: not pids_running(marker), timeout_s=30, what="the agent's command to stop")
        finally:
            for pid in pids_running(marker):  # what a failed cancel leaves behind (agents outlive the server)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        task = local_client(url, tmp_path).task(task_id)
    assert state == "TASK_STATE_CANCELED"
    assert task.status.value == "CANCELLED"


def test_the_bridge_talks_to_agentfleet_and_a_message_without_a_repository_is_rejected(tmp_path) -> None:
    with server_process(tmp_path, "http://127.0.0.1:9/v1") as (url, _):
        token = auth(tmp_path)["Authorization"].removeprefix("Bearer ")
        bridge = Bridge(Reach(agents={"fleet": url}, tokens={"fleet": token}))
        info, _, is_error = call(bridge, "get_agent_card", agent="fleet")
        assert not is_error and info["name"] == "AgentFleet" and info["url"] == f"{url}/a2a"
        answer, _, is_error = call(bridge, "send_message", agent="fleet", text="Fix the bug", timeout_s=30)
        bad_data, _, _ = call(bridge, "send_message", agent="fleet", text="x", data={"repo_url": 7}, timeout_s=30)
        tasks = local_client(url, tmp_path).tasks()
    assert not is_error, answer
    assert answer["state"] == "rejected"
    assert "give a repository (repo_url or repos)" in answer["text"]
    assert bad_data["state"] == "rejected" and "repo_url" in bad_data["text"]
    assert tasks == [], "nothing was created"
