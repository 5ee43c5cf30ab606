"""The A2A bridge MCP server: the agent's way to talk to other agents over the A2A protocol.

Its tools fetch a remote agent's card and send it a message, following the agent's task to its end
(streaming when the agent streams, polling otherwise) within a timeout, and read a task again later.
Which agents it may reach is configuration: agents by name (`--agent NAME=URL`, trusted, loopback and
private addresses included), and URL prefixes a caller may give itself (`--allowed-url PREFIX`), which
must resolve to public addresses unless `--allow-private`. The address an agent's card names for its
messages passes the same rule. AgentFleet itself answers A2A at `agentfleet serve`'s /a2a
(api/a2a.py), with a bearer token: `--token-env NAME=VAR` sends one, read from the environment.

    python -m agentfleet.mcp_servers.a2a_bridge --agent fleet=http://127.0.0.1:8080 [--transport ...]

One unit, over ~300 lines: the reach rule, the client side and the tools with their result models,
read together (each tool's result is one of the models here).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_data_parts, get_text_parts, get_url_parts, new_data_part, new_text_part
from a2a.types.a2a_pb2 import AgentCard, GetTaskRequest, Message, Role, SendMessageRequest, Task, TaskState
from a2a.utils.errors import A2AError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from agentfleet.mcp_servers.transport import add_transport_args, serve
from agentfleet.net import non_public_address
from agentfleet.tasks import url_allowed

DEFAULT_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 3600.0
POLL_S = 0.5
CONNECT_TIMEOUT_S = 10.0
MAX_TEXT_CHARS = 50_000
ENDED = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}
"""The states after which a task does nothing more."""
WAITING = {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}
"""The states in which a task waits for its caller: following it ends there too."""
INSTRUCTIONS = (
    "Talk to other AI agents over the A2A protocol. `get_agent_card` tells what an agent does (its "
    "skills); `send_message` sends it a message and waits for its answer; `get_task` reads a task again."
)


class SkillInfo(BaseModel):
    id: str
    name: str
    description: str = ""
    examples: list[str] = Field(default_factory=list)


class AgentInfo(BaseModel):
    """A remote agent's card, in short."""

    name: str
    description: str
    url: str = Field(description="Where its messages go")
    version: str = ""
    streaming: bool = False
    skills: list[SkillInfo] = Field(default_factory=list)


class ArtifactInfo(BaseModel):
    name: str = ""
    text: str = ""
    urls: list[str] = Field(default_factory=list)
    data: list[Any] = Field(default_factory=list)


class AgentReply(BaseModel):
    """Where a task stands, and what the agent answered."""

    task_id: str = Field("", description="Empty when the agent answered with a message and no task")
    context_id: str = ""
    state: str = Field(description="completed, failed, canceled, rejected, input-required, working, ...")
    text: str = Field("", description="The agent's last message")
    artifacts: list[ArtifactInfo] = Field(default_factory=list)


def state_name(state: int) -> str:
    """TASK_STATE_INPUT_REQUIRED → input-required."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Reach:
    """Which agents the bridge may call, and with what token."""

    agents: dict[str, str] = field(default_factory=dict)
    """Configured agents: name → base URL (trusted: any address)."""
    allowed_urls: list[str] = field(default_factory=list)
    """URL prefixes a caller may give itself."""
    allow_private: bool = False
    tokens: dict[str, str] = field(default_factory=dict)
    """Configured agent name → bearer token."""

    def base_url(self, agent: str) -> str:
        """The base URL of `agent` (a configured name, or an allowed URL); ToolError saying what to do."""
        agent = agent.strip()
        if agent in self.agents:
            return self.agents[agent].rstrip("/")
        known = ", ".join(sorted(self.agents)) or "none"
        if "://" not in agent:
            raise ToolError(f"no agent is configured as {agent!r} (configured: {known}); name one of those")
        self.check_url(agent)
        return agent.rstrip("/")

    def check_url(self, url: str, trusted_origin: str | None = None) -> None:
        """ToolError unless `url` may be reached: the origin of a configured agent, or an allowed
        prefix that resolves to public addresses (any, with allow_private)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ToolError(f"{url[:200]!r} is not an http(s) URL of an agent")
        if "@" in parts.netloc:
            raise ToolError("an agent URL may not carry credentials; configure the agent with a token instead")
        if trusted_origin is not None and _origin(url) == _origin(trusted_origin):
            return
        if not url_allowed(url, self.allowed_urls):
            known = ", ".join(sorted(self.agents)) or "none"
            raise ToolError(
                f"the agent URL {url[:200]} is not allowed here; name a configured agent (configured: {known}), "
                "or ask the operator to allow the URL (--allowed-url)"
            )
        if self.allow_private:
            return
        try:
            address = non_public_address(url)
        except (OSError, UnicodeError) as exc:
            raise ToolError(f"the agent URL {url[:200]}: its host does not resolve ({exc})") from None
        if address is not None:
            raise ToolError(
                f"the agent URL {url[:200]} resolves to {address}, a loopback, private or link-local address; "
                "only configured agents may be there (or start the bridge with --allow-private)"
            )

    def headers(self, agent: str) -> dict[str, str]:
        token = self.tokens.get(agent.strip())
        return {"Authorization": f"Bearer {token}"} if token else {}


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


class Bridge:
    """The operations behind the tools, usable without MCP."""

    def __init__(self, reach: Reach, poll_s: float = POLL_S) -> None:
        self.reach = reach
        self.poll_s = poll_s

    @asynccontextmanager
    async def _connect(self, agent: str) -> AsyncIterator[tuple[AgentCard, Client]]:
        """The agent's card (fetched, its message URL checked) and a client for it."""
        base = self.reach.base_url(agent)
        trusted = base if agent.strip() in self.reach.agents else None
        timeout = httpx.Timeout(CONNECT_TIMEOUT_S, read=None)  # a stream is quiet while the agent works
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers=self.reach.headers(agent)
        ) as http:
            try:
                card = await A2ACardResolver(http, base).get_agent_card()
            except A2AError as exc:
                raise ToolError(
                    f"could not read the agent card of {agent}: {exc}; check the URL and that it runs"
                ) from None
            if not card.supported_interfaces:
                raise ToolError(f"the agent card of {agent} names no address for messages (supportedInterfaces)")
            for interface in card.supported_interfaces:
                self.reach.check_url(interface.url, trusted_origin=trusted)
            config = ClientConfig(httpx_client=http, streaming=card.capabilities.streaming, polling=True)
            try:
                client = ClientFactory(config).create(card)
            except ValueError as exc:
                raise ToolError(f"the agent {agent} speaks no protocol binding this bridge has ({exc})") from None
            yield card, client

    async def card(self, agent: str) -> AgentInfo:
        async with self._connect(agent) as (card, _):
            return AgentInfo(
                name=card.name,
                description=card.description,
                url=card.supported_interfaces[0].url,
                version=card.version,
                streaming=card.capabilities.streaming,
                skills=[
                    SkillInfo(id=s.id, name=s.name, description=s.description, examples=list(s.examples))
                    for s in card.skills
                ],
            )

    async def send(
        self,
        agent: str,
        text: str,
        data: dict[str, Any] | None = None,
        task_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> AgentReply:
        if not text.strip() and not data:
            raise ToolError("the message is empty; give text (and, where the agent's skill asks, data)")
        timeout_s = min(max(timeout_s, 1.0), MAX_TIMEOUT_S)
        parts = [new_text_part(text)] if text.strip() else []
        if data:
            parts.append(new_data_part(data))
        message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts, task_id=task_id or "")
        deadline = time.monotonic() + timeout_s
        last: AgentReply | None = None
        try:
            async with self._connect(agent) as (_, client):
                async with asyncio.timeout(timeout_s):
                    last = await self._send(client, message)
                    while last.task_id and last.state not in _STOP_NAMES:
                        await asyncio.sleep(self.poll_s)
                        last = reply_of(await client.get_task(GetTaskRequest(id=last.task_id)))
        except TimeoutError:
            where = f"its task {last.task_id} is still {last.state}" if last else "it has not answered"
            raise ToolError(
                f"{agent} did not finish within {timeout_s:.0f} s ({where}); "
                + ("read it later with get_task" if last else "try again with a longer timeout_s")
            ) from None
        except A2AError as exc:
            late = " (after the deadline)" if time.monotonic() > deadline else ""
            raise ToolError(f"the agent {agent} failed to answer{late}: {exc}") from None
        return last

    async def _send(self, client: Client, message: Message) -> AgentReply:
        """The task (or message) the agent answers with, as far as its stream goes."""
        last: AgentReply | None = None
        task: Task | None = None
        async for event in client.send_message(SendMessageRequest(message=message)):
            if event.HasField("message"):
                return AgentReply(
                    state="completed", text=_text(event.message.parts), context_id=event.message.context_id
                )
            if event.HasField("task"):
                task = Task()
                task.CopyFrom(event.task)
            elif task is not None and event.HasField("status_update"):
                task.status.CopyFrom(event.status_update.status)
            elif task is not None and event.HasField("artifact_update"):
                task.artifacts.append(event.artifact_update.artifact)
            if task is not None:
                last = reply_of(task)
                if task.status.state in ENDED | WAITING:
                    break
        if last is None:
            raise ToolError("the agent answered with neither a task nor a message")
        return last

    async def get_task(self, agent: str, task_id: str) -> AgentReply:
        try:
            async with self._connect(agent) as (_, client):
                async with asyncio.timeout(CONNECT_TIMEOUT_S * 3):
                    return reply_of(await client.get_task(GetTaskRequest(id=task_id)))
        except TimeoutError:
            raise ToolError(f"{agent} did not answer about task {task_id} in time; try again") from None
        except A2AError as exc:
            raise ToolError(f"could not read task {task_id} of {agent}: {exc}") from None


_STOP_NAMES = {state_name(s) for s in ENDED | WAITING}
"""The states at which send_message stops following a task."""


def _text(parts: Any) -> str:
    text = "\n".join(get_text_parts(parts))
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "\n… [truncated]"


def reply_of(task: Task) -> AgentReply:
    message = task.status.message if task.status.HasField("message") else None
    return AgentReply(
        task_id=task.id,
        context_id=task.context_id,
        state=state_name(task.status.state),
        text=_text(message.parts) if message is not None else "",
        artifacts=[
            ArtifactInfo(name=a.name, text=_text(a.parts), urls=get_url_parts(a.parts), data=get_data_parts(a.parts))
            for a in task.artifacts
        ],
    )


def build_server(bridge: Bridge, name: str = "a2a") -> MCPServer:
    """The MCP server exposing a Bridge's operations as tools."""
    server: MCPServer = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")
    known = ", ".join(sorted(bridge.reach.agents)) or "none configured"

    @server.tool(
        description=f"Fetch an A2A agent's card: its name, description, skills and address. "
        f"`agent` is a configured agent's name ({known}) or an allowed URL."
    )
    async def get_agent_card(agent: str) -> AgentInfo:
        return await bridge.card(agent)

    @server.tool(
        description="Send a message to an A2A agent and wait (up to timeout_s seconds) until its task ends "
        "or waits for input; returns the task's state, the agent's reply text and its artifacts. `data` is "
        "a JSON object sent beside the text, for skills that take structured input (e.g. AgentFleet's "
        '{"repo_url": "..."}); `task_id` continues a task that waits for input.'
    )
    async def send_message(
        agent: str,
        text: str,
        data: dict[str, Any] | None = None,
        task_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> AgentReply:
        return await bridge.send(agent, text, data, task_id, timeout_s)

    @server.tool(description="Read an A2A task again: its state, the agent's last message and artifacts.")
    async def get_task(agent: str, task_id: str) -> AgentReply:
        return await bridge.get_task(agent, task_id)

    return server


def _pairs(values: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise SystemExit(f"{what} takes NAME=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentfleet-a2a-bridge", description=__doc__)
    parser.add_argument("--agent", action="append", default=[], help="a configured agent: NAME=BASE_URL (repeatable)")
    parser.add_argument("--allowed-url", action="append", default=[], help="a URL prefix callers may give (repeatable)")
    parser.add_argument("--allow-private", action="store_true", help="let allowed URLs reach private addresses")
    parser.add_argument(
        "--token-env", action="append", default=[], help="NAME=VAR: send agent NAME the bearer token in $VAR"
    )
    add_transport_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    agents = _pairs(args.agent, "--agent")
    tokens = {}
    for agent, var in _pairs(args.token_env, "--token-env").items():
        if agent not in agents:
            raise SystemExit(f"--token-env names {agent!r}, which no --agent configures")
        if not os.environ.get(var):
            raise SystemExit(f"--token-env {agent}={var}: ${var} is not set")
        tokens[agent] = os.environ[var]
    for agent, url in agents.items():
        if "@" in urlsplit(url).netloc:
            raise SystemExit(f"--agent {agent}: no credentials in the URL; give a token with --token-env")
    reach = Reach(agents=agents, allowed_urls=args.allowed_url, allow_private=args.allow_private, tokens=tokens)
    server = build_server(Bridge(reach))
    serve(server, args)


if __name__ == "__main__":
    main()
