"""A ToolBox calls an in-process MCPServer through the server's own API (no client session): the
same calls through both paths give the same outcomes (text, is_error, errors raised, timeouts,
cancellation), a server that needs a request (a tool taking a Context, a lifespan) keeps the
session, and a direct call runs no MCP request, against a stated budget of Python calls."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.session import ClientSession
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import REQUEST_TIMEOUT, CallToolResult, ImageContent, TextContent
from pydantic import BaseModel

from agentfleet.agent.profiles import PROFILES
from agentfleet.agent.tools import ToolBox, callable_directly
from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.mcp_servers.memory import build_server as memory_server
from agentfleet.mcp_servers.workspace import Workspace
from agentfleet.mcp_servers.workspace import build_server as workspace_server
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig

PROFILE = PROFILES["native"]

PYTHON_CALLS_BUDGET = 200
"""Python function calls for one direct call of an async tool, from ToolBox.call in: 102 with
mcp 2.3.0 (argument validation, the call, result conversion); through a session 350."""


class Point(BaseModel):
    x: int
    y: int


def tools_server() -> MCPServer:
    server = MCPServer("probe")

    @server.tool(structured_output=False)
    def echo(text: str, times: int = 1) -> str:
        """Say it again."""
        return text * times

    @server.tool()
    def add(a: int, b: int = 1) -> int:
        """A structured int."""
        return a + b

    @server.tool()
    async def point(x: int) -> Point:
        """A structured model."""
        return Point(x=x, y=-x)

    @server.tool()
    def bad_point() -> Point:
        """Output that does not fit its schema."""
        return {"x": "not a number"}  # type: ignore[return-value]

    @server.tool()
    def lines(n: int) -> list[str]:
        """Several content blocks."""
        return [f"line {i}" for i in range(n)]

    @server.tool(structured_output=False)
    def refuses(why: str) -> str:
        """Raises ToolError."""
        raise ToolError(f"refused: {why}")

    @server.tool(structured_output=False)
    def crashes() -> str:
        """Raises something unexpected."""
        raise ValueError("a secret the model must not see")

    @server.tool(structured_output=False)
    def protocol_error() -> str:
        """Raises MCPError."""
        raise MCPError(code=-32042, message="no such thing", data={"why": "test"})

    @server.tool(structured_output=False)
    def handmade() -> CallToolResult:
        """Returns its own result, an error with two blocks."""
        image = ImageContent(type="image", data="AAAA", mime_type="image/png")
        return CallToolResult(content=[TextContent(type="text", text="half"), image], is_error=True)

    @server.tool(structured_output=False)
    def gone() -> str:
        """Removed after the connect."""
        return "still here"

    return server


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("echo", {"text": "hi"}),
    ("echo", {"text": "hi", "times": 3}),
    ("echo", {"text": "hi", "times": "3"}),  # coerced
    ("echo", {"text": "hi", "times": "many"}),  # invalid
    ("echo", {}),  # missing
    ("echo", {"text": "hi", "extra": 1}),  # extra
    ("add", {"a": 2}),
    ("add", {"a": 2, "b": 5}),
    ("point", {"x": 4}),
    ("bad_point", {}),
    ("lines", {"n": 3}),
    ("refuses", {"why": "because"}),
    ("crashes", {}),
    ("protocol_error", {}),
    ("handmade", {}),
    ("gone", {}),  # an unknown tool to the server
    ("no_such_tool", {}),  # an unknown tool to the ToolBox
]


async def outcome(tools: ToolBox, name: str, arguments: dict[str, Any]) -> tuple[Any, ...]:
    try:
        result = await tools.call(name, arguments)
    except MCPError as exc:
        return ("raised", type(exc).__name__, exc.error.code, exc.error.message, exc.error.data)
    return (result.text, result.is_error)


@contextmanager
def session_requests() -> Iterator[list[str]]:
    """Every MCP request a ClientSession sends while it is open (the method names)."""
    sent: list[str] = []
    real = ClientSession.send_request

    async def counting(self: ClientSession, request: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(request.method)
        return await real(self, request, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ClientSession, "send_request", counting)
        yield sent


def both(server: MCPServer, go: Callable[[ToolBox], Any], timeout_s: float = 60) -> tuple[Any, Any, list[str]]:
    """What `go` gives through a session and directly, and the requests the direct path sent."""

    async def run(direct: bool) -> Any:
        async with ToolBox(PROFILE, call_timeout_s=timeout_s, direct=direct) as tools:
            await tools.connect("probe", server)
            return await go(tools)

    via_session = anyio.run(run, False)
    with session_requests() as sent:
        direct = anyio.run(run, True)
    return via_session, direct, sent


def test_every_call_has_the_same_outcome_directly_as_through_a_session() -> None:
    server = tools_server()

    async def go(tools: ToolBox) -> dict[str, Any]:
        schemas = tools.openai_schemas()
        server.remove_tool("gone")
        results = [await outcome(tools, name, arguments) for name, arguments in CALLS]
        server.add_tool(lambda: "back", name="gone", description="Removed after the connect.", structured_output=False)
        return {"names": sorted(tools.names), "schemas": schemas, "results": results}

    via_session, direct, sent = both(server, go)
    assert sent == [], "the direct path sent MCP requests"
    assert direct["names"] == via_session["names"] and direct["schemas"] == via_session["schemas"]
    for (name, arguments), theirs, ours in zip(CALLS, via_session["results"], direct["results"], strict=True):
        assert ours == theirs, f"{name}({arguments}): session {theirs!r}, direct {ours!r}"
    results = dict(zip([f"{n}{sorted(a.items())}" for n, a in CALLS], direct["results"], strict=True))
    # What they are, so that equal cannot mean equally broken:
    assert results["echo[('text', 'hi'), ('times', 3)]"] == ("hihihi", False)
    assert results["echo[]"][1] and "text" in results["echo[]"][0]
    assert results["add[('a', 2)]"] == ("3", False)
    assert results["refuses[('why', 'because')]"] == ("refused: because", True)
    assert results["crashes[]"] == ("Error executing tool crashes", True)
    assert results["protocol_error[]"][:4] == ("raised", "MCPError", -32042, "no such thing")
    assert results["handmade[]"] == ("half", True)
    assert results["gone[]"] == ("Unknown tool: gone", True)
    assert results["no_such_tool[]"][1] and "unknown tool 'no_such_tool'" in results["no_such_tool[]"][0]


def test_a_call_past_the_timeout_fails_the_same_way_on_both_paths() -> None:
    server = MCPServer("slow")

    @server.tool(structured_output=False)
    async def wait() -> str:
        """Never answers."""
        await anyio.Event().wait()
        return "never"

    async def go(tools: ToolBox) -> tuple[Any, ...]:
        with anyio.fail_after(30):  # the outer guard: the ToolBox's own timeout must come first
            return await outcome(tools, "wait", {})

    via_session, direct, sent = both(server, go, timeout_s=0.2)
    assert sent == []
    assert direct == via_session
    assert direct[:3] == ("raised", "MCPError", REQUEST_TIMEOUT)


def test_cancelling_the_agent_cancels_a_direct_call() -> None:
    server = MCPServer("cancel")
    seen: list[str] = []
    started = anyio.Event()

    @server.tool(structured_output=False)
    async def wait() -> str:
        """Waits until cancelled."""
        started.set()
        try:
            await anyio.Event().wait()
        finally:
            seen.append("cancelled")
        return "never"

    async def go() -> None:
        async with ToolBox(PROFILE) as tools:
            await tools.connect("cancel", server)
            assert callable_directly(server)
            with anyio.fail_after(30), anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(tools.call, "wait", {})
                    await started.wait()
                    scope.cancel()
            assert scope.cancelled_caught

    anyio.run(go)
    assert seen == ["cancelled"]


def test_a_server_whose_tools_need_a_request_keeps_the_session() -> None:
    with_context = MCPServer("ctx")

    @with_context.tool(structured_output=False)
    async def report(n: int, ctx: Context) -> str:
        """Reports progress."""
        await ctx.report_progress(1, 2)
        return f"request {ctx.request_id is not None}"

    async def go(tools: ToolBox) -> tuple[Any, ...]:
        return await outcome(tools, "report", {"n": 1})

    assert not callable_directly(with_context)
    via_session, direct, sent = both(with_context, go)
    assert direct == via_session == ("request True", False)
    assert "tools/call" in sent, "a tool with a Context was called without a session"


def test_a_server_with_a_lifespan_keeps_the_session() -> None:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> Any:
        yield {}

    assert callable_directly(MCPServer("plain"))
    assert not callable_directly(MCPServer("life", lifespan=lifespan))


def test_the_workspace_and_memory_servers_are_called_directly(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path, Sandbox(tmp_path, SandboxConfig()))
    try:
        assert callable_directly(workspace_server(workspace))
    finally:
        workspace.close()
    assert callable_directly(memory_server(SqliteMemoryStore(tmp_path / "m.db"), "ws-0123456789"))


def test_a_direct_call_runs_no_mcp_request_and_stays_in_its_call_budget() -> None:
    server = MCPServer("budget")

    @server.tool(structured_output=False)
    async def echo(text: str) -> str:
        """Echo."""
        return text

    counted: list[int] = []

    async def go() -> None:
        async with ToolBox(PROFILE) as tools:
            await tools.connect("budget", server)
            await tools.call("echo", {"text": "warm"})  # first-call caches
            for _ in range(3):
                calls = 0

                def profile(frame: Any, event: str, arg: Any) -> None:
                    nonlocal calls
                    calls += event == "call"

                sys.setprofile(profile)
                try:
                    result = await tools.call("echo", {"text": "hi"})
                finally:
                    sys.setprofile(None)
                assert result.text == "hi" and not result.is_error
                counted.append(calls)

    with session_requests() as sent:
        anyio.run(go)
    assert sent == [], "a direct call sent MCP requests"
    assert max(counted) <= PYTHON_CALLS_BUDGET, f"{counted} Python calls for one direct call"


def test_a_crash_in_a_direct_call_is_logged_with_its_cause_and_the_model_sees_only_that_it_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def go() -> tuple[Any, ...]:
        async with ToolBox(PROFILE) as tools:
            await tools.connect("probe", tools_server())
            return await outcome(tools, "crashes", {})

    with caplog.at_level("ERROR", logger="agentfleet.agent.tools"):
        assert anyio.run(go) == ("Error executing tool crashes", True)
    [record] = [r for r in caplog.records if r.name == "agentfleet.agent.tools"]
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert "a secret the model must not see" in str(record.exc_info[1].__cause__)
