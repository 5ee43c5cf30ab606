"""The agent's tools: every tool comes from an MCP server.

A ToolBox connects to the servers (shared servers over stdio or streamable HTTP through an MCP
client session; the workspace and memory servers in the agent's own process), lists their tools,
converts them to OpenAI tool schemas and routes each call to the server that owns it.

An in-process `MCPServer` is called through its own API (`MCPServer.list_tools`, `call_tool`: the
tool manager, argument validation and result conversion the SDK's `tools/call` handler uses), with
no client session, dispatcher or server runner between (with mcp 2.3.0 a session's call runs 350
Python functions, ~0.3 ms of CPU; a direct one 102). A server whose tools take a `Context` (progress,
logging, input requests), or that has a lifespan, extensions or middleware of its own, goes through
a session as before, since a direct call has no request to give them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.resolve import returns_input_required
from mcp.server.request_state import RequestStateBoundary
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, REQUEST_TIMEOUT, CallToolResult, TextContent, Tool

from agentfleet.agent.profiles import ModelProfile
from agentfleet.errors import ConfigError
from agentfleet.gcp.identity import IdentityToken, audience_of, identity_auth, wants_identity_token
from agentfleet.names import redact_url
from agentfleet.net import non_public_address
from agentfleet.settings import McpServerConfig, Settings
from agentfleet.tasks import McpServerSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerPlan:
    """One shared MCP server a task's agent connects to: what `ToolBox.connect` takes, and the
    tools it may offer (None: all)."""

    name: str
    server: Any
    tools: list[str] | None = None
    transport: str = "streamable-http"


MODULE_SETTINGS = ("backend", "home", "gcs_bucket", "project_id", "region")
"""The settings an AgentFleet module server is started with (where artifacts go): no secret."""


def shared_servers(
    requested: list[McpServerSpec], settings: Settings, workspace: Path, task_id: str = "", network: bool = False
) -> list[ServerPlan]:
    """The shared servers for a task: every configured one marked `always`, then those the task
    names (configured ones by name, or a URL it gave that the deployment allows). In a stdio
    server's arguments `{workspace}` is the workspace root and `{task_id}` the task's id; a task
    that allows the network (`network`) gives a stdio server its `network_args` too."""
    places = {"{workspace}": str(workspace), "{task_id}": task_id}
    names = [name for name, config in settings.mcp_servers.items() if config.always]
    plans = [_configured(name, settings.mcp_servers[name], settings, places, network) for name in names]
    for spec in requested:
        if spec.url is None:
            if spec.name in names:
                continue
            if spec.name not in settings.mcp_servers:
                raise ConfigError(f"MCP server {spec.name!r} is not configured (AGENTFLEET_MCP_SERVERS)")
            names.append(spec.name)
            plans.append(_configured(spec.name, settings.mcp_servers[spec.name], settings, places, network))
        else:
            plans.append(ServerPlan(spec.name, _http(task_server_url(spec, settings), None)))
    return plans


def _put(args: list[str], places: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        for place, value in places.items():
            arg = arg.replace(place, value)
        out.append(arg)
    return out


def _configured(
    name: str, config: McpServerConfig, settings: Settings, places: dict[str, str], network: bool
) -> ServerPlan:
    if config.url is not None:
        return ServerPlan(name, _http(config.url, config.identity_token), config.tools)
    env = {"PYTHONUNBUFFERED": "1"}
    if config.module is not None:
        if "PYTHONPATH" in os.environ:  # how this process found agentfleet, when not installed
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env |= {
            k: v for k, v in settings.environment().items() if k.removeprefix("AGENTFLEET_").lower() in MODULE_SETTINGS
        }
        command, args = sys.executable, ["-m", f"agentfleet.mcp_servers.{config.module}", *_put(config.args, places)]
    else:
        assert config.command is not None
        command, args = config.command[0], _put([*config.command[1:], *config.args], places)
    if network:
        args += config.network_args
    for setting in config.settings_env:
        value = getattr(settings, setting)
        if value is None:
            raise ConfigError(f"MCP server {name!r} needs {setting.upper()}, which is not set")
        env[setting.upper()] = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    env |= config.env
    settings.home.mkdir(parents=True, exist_ok=True)
    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(settings.home))
    return ServerPlan(name, params, config.tools, "stdio")


def _http(url: str, identity_token: bool | None) -> Any:
    """A URL, or for a private Cloud Run service a transport whose requests carry an identity token."""
    if not wants_identity_token(url, identity_token):
        return url
    auth = identity_auth(IdentityToken(audience_of(url)))

    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        async with (
            create_mcp_http_client(auth=auth) as client,
            streamable_http_client(url, http_client=client) as streams,
        ):
            yield streams

    return transport()


def task_server_url(spec: McpServerSpec, settings: Settings) -> str:
    """Where a task's own MCP server URL may be reached: it must not resolve to loopback, private
    or link-local addresses unless AGENTFLEET_MCP_ALLOW_PRIVATE is set (the agent runs outside the
    sandbox)."""
    assert spec.url is not None
    if not settings.mcp_allow_private:
        try:
            address = non_public_address(spec.url)
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"MCP server {redact_url(spec.url)}: its host does not resolve ({exc})") from None
        if address is not None:
            raise ConfigError(
                f"MCP server {redact_url(spec.url)} resolves to {address}, a loopback, private or link-local "
                "address; only configured servers may be there (or set AGENTFLEET_MCP_ALLOW_PRIVATE=true)"
            )
    return spec.url


@dataclass(frozen=True)
class ToolOutcome:
    text: str
    is_error: bool


Caller = Callable[[str, dict[str, Any], float], Awaitable[CallToolResult]]
"""How a route calls its server's tool: (the server's tool name, arguments, timeout in seconds)."""


@dataclass(frozen=True)
class _Route:
    call: Caller
    mcp_name: str
    server: str


class ToolBox:
    """Tools from several MCP servers, under the names the model sees."""

    def __init__(self, profile: ModelProfile, call_timeout_s: float = 1900.0, direct: bool = True) -> None:
        """`direct`: call an in-process MCPServer through its own API where it allows (False: through
        an MCP client session, as any other server)."""
        self.profile = profile
        self.call_timeout_s = call_timeout_s
        self.direct = direct
        self._stack = AsyncExitStack()
        self._routes: dict[str, _Route] = {}
        self._tools: dict[str, Tool] = {}

    async def __aenter__(self) -> ToolBox:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.__aexit__(*exc)  # type: ignore[arg-type]

    async def connect(self, name: str, server: Any, tools: list[str] | None = None) -> None:
        """Connect to one server (URL, StdioServerParameters, a transport, or an in-process MCPServer);
        `tools`: the only ones of its tools to offer (None: all)."""
        caller: Caller
        if self.direct and isinstance(server, MCPServer) and callable_directly(server):
            listed, caller = await server.list_tools(), _direct_caller(server)
        else:
            client = await self._stack.enter_async_context(Client(server))
            listed, caller = (await client.list_tools()).tools, _session_caller(client)
        for tool in listed:
            if tools is not None and tool.name not in tools:
                continue
            exposed = self.profile.model_name(tool.name)
            if exposed in self._routes:
                exposed = f"{name}__{tool.name}"
            self._routes[exposed] = _Route(caller, tool.name, name)
            self._tools[exposed] = tool

    @property
    def names(self) -> set[str]:
        return set(self._routes)

    def openai_schemas(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": tool.description or "",
                    "parameters": _clean_schema(tool.input_schema),
                },
            }
            for name, tool in self._tools.items()
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        route = self._routes.get(name)
        if route is None:
            known = ", ".join(sorted(self._routes))
            return ToolOutcome(f"unknown tool {name!r}; the tools are: {known}", is_error=True)
        result = await route.call(route.mcp_name, arguments, self.call_timeout_s)
        text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
        prefix = f"Error executing tool {route.mcp_name}: "
        return ToolOutcome(text.removeprefix(prefix), bool(result.is_error))


def _session_caller(client: Client) -> Caller:
    async def call(name: str, arguments: dict[str, Any], timeout_s: float) -> CallToolResult:
        return await client.call_tool(name, arguments, read_timeout_seconds=timeout_s)

    return call


SDK_MIDDLEWARE = (OpenTelemetryMiddleware, RequestStateBoundary)
"""The middleware every MCPServer has: spans (a no-op without an exporter; a direct call makes
none) and the sealing of `requestState`, which only input-required rounds carry."""


def callable_directly(server: MCPServer) -> bool:
    """Whether a call through the server's own API gives what a session's `tools/call` gives: no
    tool takes a Context or resolved parameters or asks for input (a direct call has no request to
    give them), and the server has no lifespan, extension or middleware of its own to run."""
    if server.settings.lifespan is not None or server._extensions:
        return False
    if not all(isinstance(m, SDK_MIDDLEWARE) for m in server.middleware):
        return False
    return not any(
        t.context_kwarg is not None or t.resolved_params or returns_input_required(t.fn)
        for t in server._tool_manager.list_tools()
    )


def _direct_caller(server: MCPServer) -> Caller:
    """A tool call through `MCPServer.call_tool`, with the outcomes of the SDK's `tools/call`
    handler (`MCPServer._handle_call_tool`) and its in-process dispatcher: a ToolError (bad or
    missing arguments, an unknown tool, a tool that raised) is an error result with its text, an
    MCPError is raised as it is, and the timeout is the dispatcher's REQUEST_TIMEOUT error."""

    async def call(name: str, arguments: dict[str, Any], timeout_s: float) -> CallToolResult:
        try:
            with anyio.fail_after(timeout_s):
                result = await server.call_tool(name, arguments)
        except TimeoutError:
            message = f"Timed out after {timeout_s}s waiting for 'tools/call'"
            raise MCPError(code=REQUEST_TIMEOUT, message=message) from None
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError):  # its text says only that it failed: keep why here
                logger.error("tool %r raised an unexpected exception", name, exc_info=exc)
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        if not isinstance(result, CallToolResult):  # an input request: callable_directly excludes them
            raise MCPError(code=INTERNAL_ERROR, message=f"tool {name!r} asked for input, which no one gives")
        return result

    return call


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's `title` noise; some servers reject unknown keys in tool schemas."""
    cleaned = {k: v for k, v in schema.items() if k != "title"}
    props = cleaned.get("properties")
    if isinstance(props, dict):
        cleaned["properties"] = {key: {k: v for k, v in value.items() if k != "title"} for key, value in props.items()}
    cleaned.setdefault("properties", {})
    cleaned.setdefault("type", "object")
    return cleaned
