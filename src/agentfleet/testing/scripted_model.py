"""A Model (agent/models.py) that replays scripted replies: for tests of the agent loop (limits,
loop detection, nudges) with no endpoint, git, sandbox or MCP subprocess. The scripted
OpenAI-compatible server (scripted_llm.py) stays for end-to-end tests of the real models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from agentfleet.agent.models import Reply, ToolCall
from agentfleet.agent.profiles import PROFILES, ModelProfile
from agentfleet.tasks import Usage


def call(name: str, **arguments: Any) -> ToolCall:
    """A tool call of `name` with `arguments`, as a model sends it."""
    return ToolCall(f"call_{uuid.uuid4().hex[:12]}", name, arguments, json.dumps(arguments))


class ScriptedModel:
    """Answers each query with the next scripted reply (a bare string is a reply without calls),
    and records the messages every query was given."""

    def __init__(
        self,
        replies: Iterable[Reply | str],
        usage: Usage,
        profile: ModelProfile = PROFILES["native"],
        tokens_per_reply: int = 10,
    ) -> None:
        self.replies = [Reply(content=r) if isinstance(r, str) else r for r in replies]
        self.profile, self.usage, self.tokens = profile, usage, tokens_per_reply
        self.queries: list[list[dict[str, Any]]] = []

    async def query(self, messages: list[dict[str, Any]], *, tools: bool) -> Reply:
        self.queries.append([dict(m) for m in messages])
        if not self.replies:
            raise AssertionError(f"the script ran out after {len(self.queries) - 1} replies")
        reply = self.replies.pop(0)
        self.usage.llm_calls += 1
        self.usage.prompt_tokens += self.tokens
        self.usage.completion_tokens += self.tokens
        return reply if tools else Reply(content=reply.content)

    def assistant_message(self, reply: Reply) -> dict[str, Any]:
        entry: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.calls:
            entry["tool_calls"] = [{"id": c.id, "name": c.name, "arguments": c.raw} for c in reply.calls]
        return entry

    def observation(self, call: ToolCall, text: str, is_error: bool) -> dict[str, Any]:
        return {"role": "tool", "tool_call_id": call.id, "content": text, "is_error": is_error}
