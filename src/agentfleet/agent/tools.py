"""The agent's tools: every tool comes from an MCP server.

A ToolBox connects to the servers (the workspace server over stdio, shared servers over
streamable HTTP, or in-process servers in tests), lists their tools, converts them to OpenAI
tool schemas and routes each call to the server that owns it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import TextContent, Tool

from agentfleet.agent.profiles import ModelProfile
from agentfleet.errors import ConfigError
from agentfleet.gcp.identity import IdentityToken, audience_of, identity_auth, wants_identity_token
from agentfleet.names import redact_url
from agentfleet.net import non_public_address
from agentfleet.settings import McpServerConfig, Settings
from agentfleet.tasks import McpServerSpec


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


@dataclass(frozen=True)
class _Route:
    client: Client
    mcp_name: str
    server: str


class ToolBox:
    """Tools from several MCP servers, under the names the model sees."""

    def __init__(self, profile: ModelProfile, call_timeout_s: float = 1900.0) -> None:
        self.profile = profile
        self.call_timeout_s = call_timeout_s
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
        client = await self._stack.enter_async_context(Client(server))
        listing = await client.list_tools()
        for tool in listing.tools:
            if tools is not None and tool.name not in tools:
                continue
            exposed = self.profile.model_name(tool.name)
            if exposed in self._routes:
                exposed = f"{name}__{tool.name}"
            self._routes[exposed] = _Route(client, tool.name, name)
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
        result = await route.client.call_tool(route.mcp_name, arguments, read_timeout_seconds=self.call_timeout_s)
        text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
        prefix = f"Error executing tool {route.mcp_name}: "
        return ToolOutcome(text.removeprefix(prefix), bool(result.is_error))


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's `title` noise; some servers reject unknown keys in tool schemas."""
    cleaned = {k: v for k, v in schema.items() if k != "title"}
    props = cleaned.get("properties")
    if isinstance(props, dict):
        cleaned["properties"] = {key: {k: v for k, v in value.items() if k != "title"} for key, value in props.items()}
    cleaned.setdefault("properties", {})
    cleaned.setdefault("type", "object")
    return cleaned
