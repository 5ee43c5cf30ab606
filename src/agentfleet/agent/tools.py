"""The agent's tools: every tool comes from an MCP server.

A ToolBox connects to the servers (the workspace server over stdio, shared servers over
streamable HTTP, or in-process servers in tests), lists their tools, converts them to OpenAI
tool schemas and routes each call to the server that owns it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from mcp import Client
from mcp.types import TextContent, Tool

from agentfleet.agent.profiles import ModelProfile
from agentfleet.errors import ConfigError
from agentfleet.names import redact_url
from agentfleet.net import non_public_address
from agentfleet.settings import Settings
from agentfleet.tasks import McpServerSpec


def shared_server_url(spec: McpServerSpec, settings: Settings) -> str:
    """Where to reach a shared MCP server a task names. A configured one is trusted; a URL the task
    gave (and the deployment allows) must not reach loopback, private or link-local addresses
    unless AGENTFLEET_MCP_ALLOW_PRIVATE is set: the agent runs outside the sandbox."""
    if spec.url is None:
        if spec.name not in settings.mcp_servers:
            raise ConfigError(f"MCP server {spec.name!r} is not configured (AGENTFLEET_MCP_SERVERS)")
        return settings.mcp_servers[spec.name]
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

    async def connect(self, name: str, server: Any) -> None:
        """Connect to one server (URL, StdioServerParameters, or an in-process MCPServer)."""
        client = await self._stack.enter_async_context(Client(server))
        listing = await client.list_tools()
        for tool in listing.tools:
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
