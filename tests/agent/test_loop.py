"""The agent loop alone, against a scripted Model and an in-process MCP server: limits, loop
detection, nudges and the history, with no endpoint, git, sandbox or subprocess."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from agentfleet.agent.acceptance import Acceptance, CheckSpec
from agentfleet.agent.loop import FINAL_ANSWER, NUDGE, Agent, Limits, Outcome
from agentfleet.agent.models import Reply
from agentfleet.agent.profiles import PROFILES, ModelProfile
from agentfleet.agent.tools import ToolBox
from agentfleet.tasks import CheckRun, EventKind, Usage
from agentfleet.testing.scripted_model import ScriptedModel, call


def tool_server() -> MCPServer:
    server: MCPServer = MCPServer("fake")

    @server.tool(name="exec", structured_output=False)
    def exec_(command: str) -> str:
        """Echo the command."""
        return f"ran {command}"

    return server


LOOKED = Reply("", [call("exec", command="ls")])
"""A first reply that looks at the workspace, so the final answer comes after a tool call."""


def work(
    replies: Iterable[Reply | str],
    limits: Limits | None = None,
    profile: ModelProfile = PROFILES["native"],
    acceptance: Acceptance | None = None,
) -> tuple[Outcome, ScriptedModel, list[tuple[EventKind, dict[str, Any]]]]:
    limits = limits or Limits()
    events: list[tuple[EventKind, dict[str, Any]]] = []
    usage = Usage()
    model = ScriptedModel(replies, usage, profile)

    def emit(kind: EventKind, data: dict[str, Any]) -> None:
        events.append((kind, data))

    if acceptance is not None:
        acceptance.emit = emit

    async def go() -> Outcome:
        async with ToolBox(profile) as tools:
            await tools.connect("fake", tool_server())
            return await Agent(model, tools, limits, emit, usage, acceptance).run("do the task")

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
    outcome, model, events = work([same, *again, "Listing done: the files are a.py and b.py."])
    assert (outcome.stopped_by, outcome.failed) == ("loop: the model kept repeating the same tool call", False)
    assert NUDGE in said(model) and outcome.summary == "Listing done: the files are a.py and b.py."
    assert ("the model repeated its last call; nudged it") in [
        d.get("message") for k, d in events if k is EventKind.LOG
    ]


def test_an_answer_before_any_tool_call_is_nudged_once_then_fails_the_task() -> None:
    outcome, model, _ = work(["The answer.", "The answer, again."], profile=PROFILES["text"])
    assert said(model)[0].startswith("You have not run any command yet")
    assert outcome.error == "the model gave no answer (it answered without looking at the workspace)"
    assert outcome.summary == "The answer, again.", "the model's text is kept"


def test_an_early_answer_is_accepted_once_the_model_has_looked() -> None:
    outcome, model, _ = work(["The answer.", LOOKED, "lib.py defines parse() on line 3."])
    assert outcome.error is None and outcome.summary == "lib.py defines parse() on line 3."
    assert len(said(model)) == 1


def test_a_call_that_could_not_be_read_is_explained_to_the_model() -> None:
    outcome, model, _ = work([LOOKED, Reply("```json {broken", parse_error="the JSON does not parse"), "Fine."])
    assert any("could not be parsed: the JSON does not parse" in text for text in said(model))
    assert outcome.summary == "Fine."


def test_a_reply_that_echoes_the_harness_nudge_is_no_answer() -> None:
    echo = (
        "I have not run any command yet. Look at the repository first (list and read the relevant files), then answer."
    )
    outcome, model, events = work([LOOKED, echo, echo])
    assert said(model)[-1].startswith("Your reply repeated my instructions")
    assert outcome.error == "the model gave no answer (the reply repeated the harness's instructions)"
    assert ("not an answer: the reply repeated the harness's instructions") in [d.get("message") for _, d in events]


def test_a_reply_that_asks_the_user_for_information_is_no_answer() -> None:
    asking = "I'm ready to help you with the repository. Please provide me with the necessary information."
    outcome, model, _ = work([LOOKED, asking, "Could you provide more details about the bug?"])
    assert said(model)[-1].startswith("Do not ask me for anything")
    assert outcome.error == "the model gave no answer (the reply asked the user for information instead of answering)"


def test_a_stop_for_repeating_calls_still_needs_a_real_answer() -> None:
    same = [Reply("", [call("exec", command="ls")]) for _ in range(3)]
    outcome, _, _ = work([*same, ""])
    assert outcome.stopped_by == "loop: the model kept repeating the same tool call"
    assert (
        outcome.error
        == "stopped: loop: the model kept repeating the same tool call; the model gave no answer (the reply was empty)"
    )


class FakeChecks:
    """Stands in for the sandbox: the check passes from the `passes_at`-th run on."""

    def __init__(self, passes_at: int | None) -> None:
        self.passes_at, self.ran = passes_at, 0

    def __call__(self, spec: CheckSpec) -> CheckRun:
        self.ran += 1
        passed = self.passes_at is not None and self.ran >= self.passes_at
        output = "1 passed" if passed else f"FAILED test_calc.py::test_add (run {self.ran})"
        return CheckRun(
            command=spec.command, where=spec.where, exit_code=0 if passed else 1, passed=passed, output=output
        )


def checked(passes_at: int | None, retries: int = 2) -> tuple[Acceptance, FakeChecks]:
    runner = FakeChecks(passes_at)
    spec = CheckSpec("pytest -q", Path("/ws"), ".")
    return Acceptance(checks=[spec], run_check=runner, retries=retries), runner


def test_a_failing_check_sends_the_model_back_with_its_output_until_it_passes() -> None:
    acceptance, _runner = checked(passes_at=2)
    edit = Reply("", [call("exec", command="sed -i s/-/+/ calc.py")])
    outcome, model, events = work([edit, "Fixed.", edit, "Fixed, really."], acceptance=acceptance)
    assert outcome.error is None and outcome.summary == "Fixed, really."
    assert [(r.exit_code, r.passed) for r in outcome.checks] == [(1, False), (0, True)]
    feedback = said(model)[-1]
    assert (
        "The acceptance check `pytest -q` exited 1" in feedback and "FAILED test_calc.py::test_add (run 1)" in feedback
    )
    assert [d["passed"] for k, d in events if k is EventKind.CHECK] == [False, True]


def test_a_check_that_never_passes_fails_the_task_with_its_output_after_the_retries() -> None:
    acceptance, runner = checked(passes_at=None, retries=2)
    outcome, _, _ = work([LOOKED, "Done.", "Done.", "Done."], acceptance=acceptance)
    assert runner.ran == 3, "the first run and two retries"
    assert outcome.error and outcome.error.startswith("the acceptance check `pytest -q` exited 1:")
    assert "FAILED test_calc.py::test_add (run 3)" in outcome.error
    assert len(outcome.checks) == 3


def test_with_a_check_the_check_decides_even_after_the_step_limit() -> None:
    acceptance, _ = checked(passes_at=1)
    outcome, _, _ = work([LOOKED, LOOKED, "Out of steps."], Limits(max_steps=1), acceptance=acceptance)
    assert outcome.stopped_by == "step limit of 1 reached" and outcome.error is None
    acceptance, _ = checked(passes_at=None)
    outcome, _, _ = work([LOOKED, "Out of steps."], Limits(max_steps=1), acceptance=acceptance)
    assert outcome.error and outcome.error.startswith("stopped: step limit of 1 reached; the acceptance check")


def test_every_tool_call_is_recorded_for_the_result() -> None:
    outcome, _, _ = work([Reply("", [call("exec", command="ls"), call("exec", command="cat a.py")]), "a.py is empty."])
    assert [(c.step, c.name, c.arguments) for c in outcome.calls] == [
        (1, "exec", '{"command": "ls"}'),
        (1, "exec", '{"command": "cat a.py"}'),
    ]
