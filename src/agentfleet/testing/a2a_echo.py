"""A tiny echo A2A agent (a2a-sdk on Starlette) for tests and benches: serve `echo_app(port, ...)`
with `agentfleet.testing.asgi.serving(app, port=port)`."""

from __future__ import annotations

import asyncio
from typing import Any

from a2a.helpers import new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, TransportProtocol
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

SLOW_S = 3.0
"""How long the echo agent works on a message that starts with "slow"."""


class Echo(AgentExecutor):
    """Answers each message with "echo: <text>" and an artifact holding the text shouted."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None and context.task_id and context.context_id
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(context.message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        text = context.get_user_input()
        await updater.start_work()
        if text.startswith("slow"):
            await asyncio.sleep(SLOW_S)
        await updater.add_artifact([new_text_part(text.upper())], name="shout")
        await updater.complete(updater.new_agent_message([new_text_part(f"echo: {text}")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def echo_app(port: int, *, streaming: bool, message_url: str | None = None) -> Starlette:
    """The echo agent for 127.0.0.1:`port`: its card, JSON-RPC at /rpc (or the card names
    `message_url`), and at /bad/.well-known/agent-card.json a page that is no agent card."""
    card = AgentCard(
        name="Echo",
        description="Repeats what it is told.",
        supported_interfaces=[
            AgentInterface(
                url=message_url or f"http://127.0.0.1:{port}/rpc",
                protocol_binding=TransportProtocol.JSONRPC.value,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        version="1.0.0",
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="Echo", description="Says it back", tags=["echo"], examples=["hi"])],
    )
    handler = DefaultRequestHandler(Echo(), InMemoryTaskStore(), card)

    async def garbage(request: Any) -> PlainTextResponse:
        return PlainTextResponse("this is no agent card")

    return Starlette(
        routes=[
            *create_agent_card_routes(card),
            *create_jsonrpc_routes(handler, "/rpc"),
            Route("/bad/.well-known/agent-card.json", garbage),
        ]
    )
