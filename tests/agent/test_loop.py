"""The agent loop alone, against a scripted Model and an in-process MCP server: limits, loop
detection, nudges and the history, with no endpoint, git, sandbox or subprocess."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from agentfleet.agent.loop import FINAL_ANSWER, LOOK_FIRST, NUDGE, Agent, Limits, Outcome
from agentfleet.agent.models import Reply
from agentfleet.agent.profiles import PROFILES, ModelProfile
from agentfleet.agent.tools import ToolBox
from agentfleet.tasks import EventKind, Usage
from agentfleet.testing.scripted_model import ScriptedModel, call


def tool_server() -> MCPServer:
    server: MCPServer = MCPServer("fake")

    @server.tool(name="exec", structured_output=False)
    def exec_(command: str) -> str:
        """Echo the command."""
        return f"ran {command}"

    return server


def work(
    replies: Iterable[Reply | str], limits: Limits | None = None, profile: ModelProfile = PROFILES["native"]
) -> tuple[Outcome, ScriptedModel, list[tuple[EventKind, dict[str, Any]]]]:
    limits = limits or Limits()
    events: list[tuple[EventKind, dict[str, Any]]] = []
    usage = Usage()
    model = ScriptedModel(replies, usage, profile)

    async def go() -> Outcome:
        async with ToolBox(profile) as tools:
            await tools.connect("fake", tool_server())
            agent = Agent(model, tools, limits, lambda kind, data: events.append((kind, data)), usage)
            return await agent.run("do the task")

    return anyio.run(go), model, events


def said(model: ScriptedModel) -> list[str]:
    """What the loop told the model (user messages after the task), in order."""
    return [m["content"] for m in model.queries[-1][2:] if m["role"] == "user"]


def test_a_reply_without_a_call_is_the_final_answer_and_results_reach_the_model() -> None:
    outcome, model, events = work([Reply("", [call("exec", command="ls")]), "All done."])
    assert (outcome.summary, outcome.stopped_by, outcome.failed) == ("All done.", None, False)
    call_id = model.queries[1][-2]["tool_calls"][0]["id"]
    assert model.queries[1][-1] == {"role": "tool", "tool_call_id": call_id, "content": "ran ls", "is_error": False}
    assert [k for k, _ in events].count(EventKind.TOOL_RESULT) == 1
    assert (outcome.usage.llm_calls, outcome.usage.tool_calls) == (2, 1)


def test_the_history_only_grows() -> None:
    _, model, _ = work([Reply("", [call("exec", command=f"echo {i}")]) for i in range(3)] + ["done"])
    for earlier, later in itertools.pairwise(model.queries):
        assert later[: len(earlier)] == earlier


def test_the_step_limit_stops_the_work_asks_for_an_answer_and_fails_it() -> None:
    replies = [Reply("", [call("exec", command=f"echo {i}")]) for i in range(3)] + ["I ran out of steps."]
    outcome, model, _ = work(replies, Limits(max_steps=3))
    assert (outcome.stopped_by, outcome.failed, outcome.summary) == (
        "step limit of 3 reached",
        True,
        "I ran out of steps.",
    )
    assert said(model)[-1] == FINAL_ANSWER


def test_the_token_limit_stops_the_work_without_asking_again() -> None:
    outcome, model, _ = work(
        [Reply("", [call("exec", command="a")]), Reply("", [call("exec", command="b")])], Limits(max_tokens=15)
    )
    assert (outcome.stopped_by, outcome.failed, outcome.summary) == ("token limit of 15 reached", True, "")
    assert len(model.queries) == 1, "the first reply spent the budget: no more requests, not even for an answer"


def test_a_repeated_call_is_nudged_then_the_loop_ends_without_failing() -> None:
    same = Reply("", [call("exec", command="ls")])
    again = [Reply("", [call("exec", command="ls")]) for _ in range(2)]
    outcome, model, events = work([same, *again, "Listing done."])
    assert (outcome.stopped_by, outcome.failed) == ("loop: the model kept repeating the same tool call", False)
    assert NUDGE in said(model) and outcome.summary == "Listing done."
    assert ("the model repeated its last call; nudged it") in [
        d.get("message") for k, d in events if k is EventKind.LOG
    ]


def test_a_profile_that_wants_a_look_first_nudges_an_early_answer_once() -> None:
    outcome, model, _ = work(["The answer.", "The answer, again."], profile=PROFILES["text"])
    assert said(model) == [LOOK_FIRST] and outcome.summary == "The answer, again."


def test_a_call_that_could_not_be_read_is_explained_to_the_model() -> None:
    outcome, model, _ = work([Reply("```json {broken", parse_error="the JSON does not parse"), "Fine."])
    assert any("could not be parsed: the JSON does not parse" in text for text in said(model))
    assert outcome.summary == "Fine."
