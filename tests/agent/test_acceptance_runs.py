"""Acceptance checks and non-answers end to end: the scripted model, the real workspace server,
sandbox and git. "Succeeded" only when the check passed or the model really answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskEvent, TaskRequest, TaskStatus
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply, tool_call

CALC = {
    "calc.py": "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a + b\n",
    "test_calc.py": (
        "from calc import add, mul\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\n"
        "assert mul(2, 3) == 6, 'mul(2, 3) should be 6'\nprint('2 passed')\n"
    ),
}
CHECK = "python3 test_calc.py"


def patch(context: str, old: str, new: str) -> dict[str, Any]:
    text = f"*** Begin Patch\n*** Update File: calc.py\n@@ {context}\n-{old}\n+{new}\n*** End Patch"
    return reply(None, tool_call("apply_patch", {"patch": text}))


def run(
    script: list[dict[str, Any]], repo: Path, settings: Settings, query: str = "Fix the failing test", **options: Any
) -> tuple[Task, list[dict[str, Any]], list[TaskEvent]]:
    events: list[TaskEvent] = []
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query=query, repo_url=str(repo), options=options)
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir), [events.append])
        return task, llm.requests, events


def test_a_check_that_fails_then_passes_after_the_second_edit_succeeds_with_both_runs_recorded(
    repo_factory, settings
) -> None:
    script = [
        patch("def add(a, b):", "    return a - b", "    return a + b"),
        reply("Fixed add()."),  # the check still fails: mul() is wrong too
        patch("def mul(a, b):", "    return a + b", "    return a * b"),
        reply("Fixed add() and mul(); the check passes."),
    ]
    task, requests, events = run(script, repo_factory(CALC), settings, check=CHECK)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    result = task.result
    assert result is not None
    assert [(c.command, c.exit_code, c.passed) for c in result.checks] == [(CHECK, 1, False), (CHECK, 0, True)]
    assert "mul(2, 3) should be 6" in result.checks[0].output and "2 passed" in result.checks[1].output
    assert result.changed == ["calc.py"] and result.change_requested
    assert [c.name for c in result.tool_calls] == ["apply_patch", "apply_patch"]
    told = [m["content"] for m in requests[2]["messages"] if m["role"] == "user"]
    assert "`python3 test_calc.py` must pass" in told[0], "the prompt names the check"
    assert "The acceptance check `python3 test_calc.py` exited 1" in told[-1] and "mul(2, 3) should be 6" in told[-1]
    assert [e.data["passed"] for e in events if e.kind is EventKind.CHECK] == [False, True]


def test_a_check_that_never_passes_fails_the_task_with_its_output(repo_factory, settings) -> None:
    configured = settings.model_copy(update={"check_retries": 1})
    script = [look(), reply("Done."), look(), reply("Done, really.")]
    task, _, _ = run(script, repo_factory(CALC), configured, check=CHECK)
    assert task.status is TaskStatus.FAILED
    assert task.error and task.error.startswith("the acceptance check `python3 test_calc.py` exited 1:")
    assert "add(2, 3) should be 5" in task.error
    assert task.result is not None and [c.passed for c in task.result.checks] == [False, False]
    assert task.result.changed == [] and task.result.summary == "Done, really."


def test_the_repository_default_check_is_used(repo_factory, settings) -> None:
    files = {**CALC, ".agentfleet/check": "# the tests must pass\npython3 test_calc.py\n"}
    configured = settings.model_copy(update={"check_retries": 0})
    task, _, _ = run([look(), reply("Nothing wrong here.")], repo_factory(files), configured)
    assert task.status is TaskStatus.FAILED
    assert task.result is not None and [c.command for c in task.result.checks] == [CHECK]


def test_a_check_that_passes_from_the_start_lets_a_question_succeed(repo_factory, settings) -> None:
    fixed = {**CALC, "calc.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n"}
    task, _, _ = run(
        [look(), reply("Both functions are right.")], repo_factory(fixed), settings, query="Is calc right?", check=CHECK
    )
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result is not None and task.result.checks[0].passed and not task.result.change_requested


def test_an_answer_that_only_echoes_the_nudge_fails_as_no_answer(repo_factory, settings) -> None:
    echo = (
        "I have not run any command yet. Look at the repository first (list and read the relevant files), then answer."
    )
    task, _, _ = run([look(), reply(echo), reply(echo)], repo_factory(CALC), settings, query="Summarize calc.py")
    assert task.status is TaskStatus.FAILED
    assert task.error == "the model gave no answer (the reply repeated the harness's instructions)"
    assert task.result is not None and task.result.summary == echo, "the model's text is kept"


def test_an_answer_that_asks_for_information_fails_as_no_answer(repo_factory, settings) -> None:
    asking = "I'm ready to help you with the repository. Please provide me with the necessary information"
    task, requests, _ = run([look(), reply(asking), reply(asking)], repo_factory(CALC), settings)
    assert task.status is TaskStatus.FAILED
    assert task.error == "the model gave no answer (the reply asked the user for information instead of answering)"
    assert "Do not ask me for anything" in requests[-1]["messages"][-1]["content"]
    assert task.result is not None and task.result.change_requested and task.result.changed == []
