"""The agent working real tasks against the scripted model: limits, loops, text calls, failures."""

from __future__ import annotations

import itertools
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskEvent, TaskRequest, TaskStatus
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

BUGGY = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('1 passed')\n",
}
FIX = (
    "*** Begin Patch\n*** Update File: calc.py\n@@ def add(a, b):\n-    return a - b\n+    return a + b\n*** End Patch"
)


def run_scripted(
    script: list[dict], repo: Path, settings: Settings, repeat_last: bool = False, **options: Any
) -> tuple[Task, list[dict]]:
    with ScriptedLLM(script, repeat_last=repeat_last) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query="Fix the failing test", repo_url=str(repo), options=options)
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))
        return task, llm.requests


def tool_messages(requests: list[dict]) -> list[str]:
    return [m["content"] for m in requests[-1]["messages"] if m["role"] in ("tool", "user")]


def test_the_agent_fixes_a_failing_test_and_leaves_a_patch(repo_factory, settings) -> None:
    script = [
        reply(None, tool_call("read_file", {"path": "calc.py"})),
        reply(None, tool_call("apply_patch", {"patch": FIX})),
        reply(None, tool_call("exec", {"command": "python3 test_calc.py"})),
        reply("add() subtracted; it now adds and the test passes."),
    ]
    task, requests = run_scripted(script, repo_factory(BUGGY), settings)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result and task.result.summary.startswith("add() subtracted")
    assert "calc.py | 2 +-" in task.result.diff_stat
    patch = (settings.artifacts_dir / task.result.patch).read_text()
    assert "-    return a - b" in patch and "+    return a + b" in patch
    outputs = tool_messages(requests)
    assert any("1 passed" in o for o in outputs)
    assert task.usage.llm_calls == 4 and task.usage.tool_calls == 3
    assert requests[0]["tools"], "the tools are offered as OpenAI schemas"
    assert {t["function"]["name"] for t in requests[0]["tools"]} >= {
        "exec",
        "apply_patch",
        "read_file",
        "list_files",
        "search",
        "git_status",
        "git_diff",
    }


def test_history_is_append_only_so_the_prefix_cache_hits(repo_factory, settings) -> None:
    script = [
        reply(None, tool_call("list_files", {})),
        reply(None, tool_call("read_file", {"path": "calc.py"})),
        reply("done"),
    ]
    _, requests = run_scripted(script, repo_factory(BUGGY), settings)
    for earlier, later in itertools.pairwise(requests):
        assert later["messages"][: len(earlier["messages"])] == earlier["messages"]


def test_a_model_that_never_stops_is_stopped_by_the_step_limit(repo_factory, settings) -> None:
    script = [reply(None, tool_call("exec", {"command": f"echo {i}"})) for i in range(3)]
    script.append(reply("I ran out of steps."))
    task, requests = run_scripted(script, repo_factory(BUGGY), settings, max_steps=3)
    assert task.status is TaskStatus.FAILED
    assert task.error == "stopped: step limit of 3 reached"
    assert len(requests) == 4, "three steps, then one request for the final answer"
    assert task.result and task.result.summary == "I ran out of steps."


def test_a_model_that_repeats_itself_is_nudged_then_asked_for_its_answer(repo_factory, settings) -> None:
    same = reply(None, tool_call("exec", {"command": "ls"}))
    task, requests = run_scripted([same, same, same, reply("Listing done.")], repo_factory(BUGGY), settings)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.result and task.result.summary == "Listing done."
    contents = [m.get("content") or "" for m in requests[-1]["messages"]]
    assert any("You repeated the same tool call" in c for c in contents)
    assert "Stop using tools now" in contents[-1]
    assert "tools" in requests[-1] and requests[-1]["tool_choice"] == "none"


def test_tool_calls_written_as_text_are_recovered_and_run(repo_factory, settings) -> None:
    script = [
        reply('```json\n{"name": "exec", "arguments": {"command": "python3 test_calc.py"}}\n```'),
        reply("<tool_call>" + json.dumps({"name": "apply_patch", "arguments": {"patch": FIX}}) + "</tool_call>"),
        reply("Fixed."),
    ]
    task, requests = run_scripted(script, repo_factory(BUGGY), settings)
    assert task.status is TaskStatus.SUCCEEDED
    outputs = tool_messages(requests)
    assert any("add(2, 3) should be 5" in o for o in outputs), "the first recovered call ran the test"
    assert task.result and "calc.py | 2 +-" in task.result.diff_stat


def test_malformed_model_output_gets_a_could_not_parse_turn(repo_factory, settings) -> None:
    script = [
        reply('<tool_call>{"name": "exec", "arguments": {"command": </tool_call>'),
        reply(None, {"id": "c1", "type": "function", "function": {"name": "exec", "arguments": "{not json"}}),
        reply("Giving up politely."),
    ]
    task, requests = run_scripted(script, repo_factory(BUGGY), settings)
    assert task.status is TaskStatus.SUCCEEDED
    contents = [m.get("content") or "" for m in requests[-1]["messages"]]
    assert any("could not be parsed" in c for c in contents)
    assert any("not a valid JSON object" in c for c in contents)


def test_a_patch_that_does_not_apply_is_an_error_the_model_reads(repo_factory, settings) -> None:
    bad = FIX.replace("return a - b", "return a * b")
    script = [reply(None, tool_call("apply_patch", {"patch": bad})), reply("Could not patch.")]
    task, requests = run_scripted(script, repo_factory(BUGGY), settings)
    [result] = [m for m in requests[-1]["messages"] if m["role"] == "tool"]
    assert "calc.py" in result["content"] and "hunk" in result["content"].lower()
    assert task.result and task.result.patch is None, "nothing changed"


def test_a_tool_timeout_and_a_huge_output_come_back_bounded(repo_factory, settings) -> None:
    script = [
        reply(None, tool_call("exec", {"command": "sleep 30", "timeout_s": 1})),
        reply(None, tool_call("exec", {"command": "yes AgentFleet | head -c 20000000"})),
        reply("ok"),
    ]
    task, requests = run_scripted(script, repo_factory(BUGGY), settings)
    timed_out, huge = [m["content"] for m in requests[-1]["messages"] if m["role"] == "tool"]
    assert "timed out" in timed_out
    assert len(huge) <= settings.exec_output_limit + 500
    assert "omitted" in huge
    assert task.status is TaskStatus.SUCCEEDED


def test_an_unreachable_model_fails_the_task_with_a_clear_reason(repo_factory, settings) -> None:
    configured = settings.model_copy(update={"gpt_oss_url": "http://127.0.0.1:9/v1", "llm_wait_s": 2})
    task = Task(request=TaskRequest(query="x", repo_url=str(repo_factory(BUGGY))))
    events: list[TaskEvent] = []
    final = work_task(task, configured, LocalArtifactStore(settings.artifacts_dir), listeners=[events.append])
    assert final.status is TaskStatus.FAILED
    assert final.error and "cannot reach the model at http://127.0.0.1:9/v1" in final.error
    assert "(AGENTFLEET_LLM_WAIT_S=2)" in final.error, "it waited its budget first"
    assert [e.data["message"] for e in events if e.kind is EventKind.LOG] == ["waiting for the model"]


def test_a_model_that_goes_away_and_comes_back_is_waited_for(repo_factory, settings) -> None:
    """A GPU model service scaled to zero: requests fail until it is back, and the task goes on."""
    away = {"error": {"status": 503, "message": "no instance yet"}}
    script = [away, reply(None, tool_call("exec", {"command": "echo hi"})), away, away, reply("Done.")]
    task, _ = run_scripted(script, repo_factory(BUGGY), settings)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result and task.result.summary == "Done."


def test_every_step_is_an_ordered_event(repo_factory, settings) -> None:
    seen = []
    with ScriptedLLM([reply(None, tool_call("git_status", {})), reply("clean")]) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        task = Task(request=TaskRequest(query="status?", repo_url=str(repo_factory(BUGGY))))
        work_task(task, configured, LocalArtifactStore(settings.artifacts_dir), listeners=[seen.append])
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    kinds = [e.kind for e in seen]
    assert kinds[0] is EventKind.STATUS and kinds[-1] is EventKind.STATUS
    assert kinds.index(EventKind.LLM) < kinds.index(EventKind.TOOL_CALL) < kinds.index(EventKind.TOOL_RESULT)
    llm_event = next(e for e in seen if e.kind is EventKind.LLM)
    assert llm_event.data["prompt_tokens"] > 0
    log = (settings.artifacts_dir / f"tasks/{task.id}/events.jsonl").read_text().splitlines()
    assert len(log) == len(seen)


def test_the_sandbox_holds_against_a_hostile_script(repo_factory, settings, tmp_path, monkeypatch) -> None:
    home_secret = Path.home() / f".agentfleet-test-secret-{tmp_path.name}"
    home_secret.write_text("home-secret-value")
    repo = repo_factory(BUGGY)
    outside = repo.parent / "escape.txt"
    monkeypatch.setenv("LLM_API_KEY", "sk-hostile-test-key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    commands = [
        "cat /etc/shadow",
        f"cat {home_secret}",
        "env",
        "touch /usr/agentfleet-escape && echo WROTE-USR",
        f"echo x > {outside} && echo WROTE-OUTSIDE",
        f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\"",
    ]
    script = [reply(None, tool_call("exec", {"command": c})) for c in commands] + [reply("done")]
    try:
        with ScriptedLLM(script) as llm:
            configured = settings.model_copy(
                update={"gpt_oss_url": llm.url, "llm_api_key": SecretStr("sk-hostile-test-key")}
            )
            task = work_task(
                Task(request=TaskRequest(query="x", repo_url=str(repo))),
                configured,
                LocalArtifactStore(settings.artifacts_dir),
            )
            results = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    finally:
        home_secret.unlink()
        listener.close()
    assert task.status is TaskStatus.SUCCEEDED
    assert len(results) == len(commands)
    shadow, home, env, usr, parent, network = results
    assert "root:" not in shadow and "exit code 0" not in shadow
    assert "home-secret-value" not in home and "exit code 0" not in home
    assert "sk-hostile-test-key" not in env and "PATH=" in env
    assert "WROTE-USR" not in usr and not Path("/usr/agentfleet-escape").exists()
    assert "WROTE-OUTSIDE" not in parent and not outside.exists()
    assert "CONNECTED" not in network


def test_a_second_run_reuses_the_mirror_and_the_sandboxed_setup(repo_factory, settings) -> None:
    setup = "mkdir -p .venv && date +%s%N > .venv/installed && echo installed"
    files = {**BUGGY, ".agentfleet/setup.sh": setup + "\n", "requirements.txt": "requests==2\n"}
    repo = repo_factory(files)
    runs = []
    for _ in range(2):
        seen: list = []
        with ScriptedLLM([reply(None, tool_call("exec", {"command": "cat .venv/installed"})), reply("ok")]) as llm:
            configured = settings.model_copy(update={"gpt_oss_url": llm.url})
            task = Task(request=TaskRequest(query="x", repo_url=str(repo)))
            final = work_task(task, configured, LocalArtifactStore(settings.artifacts_dir), listeners=[seen.append])
            output = next(m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool")
        assert final.status is TaskStatus.SUCCEEDED, final.error
        steps = {e.data["step"]: e.data for e in seen if e.kind is EventKind.WORKSPACE}
        runs.append((steps, output.splitlines()[0]))
    (first, first_stamp), (second, second_stamp) = runs
    assert first["mirror"]["action"] == "created" and second["mirror"]["action"] == "fetched"
    assert first["setup"]["action"] == "ran" and second["setup"]["action"] == "reused"
    assert first_stamp == second_stamp, "the second task saw the environment the first one installed"


def test_a_model_server_that_dies_mid_task_fails_the_task_with_a_reason(repo_factory, settings) -> None:
    llm = ScriptedLLM([reply(None, tool_call("exec", {"command": "echo hi"})), reply("never sent")]).start()
    configured = settings.model_copy(update={"gpt_oss_url": llm.url, "llm_wait_s": 0})

    def crash_after_first_tool(event) -> None:
        if event.kind is EventKind.TOOL_RESULT:
            llm.stop()

    task = Task(request=TaskRequest(query="x", repo_url=str(repo_factory(BUGGY))))
    final = work_task(task, configured, LocalArtifactStore(settings.artifacts_dir), listeners=[crash_after_first_tool])
    assert final.status is TaskStatus.FAILED
    assert final.error and "cannot reach the model" in final.error
    assert (final.usage.llm_calls, final.usage.tool_calls) == (1, 1), "what was spent before the failure is kept"
    assert final.usage.prompt_tokens > 0 and final.usage.wall_s > 0


def test_the_text_protocol_runs_one_bash_block_per_turn_and_asks_to_look_before_answering(
    repo_factory, settings
) -> None:
    script = [
        reply("The answer is obvious."),
        reply("Let me look.\n```bash\ncat calc.py\n"),
        reply("calc.add subtracts instead of adding."),
    ]
    configured = settings.model_copy(update={"model_profile": "text"})
    with ScriptedLLM(script) as llm:
        configured = configured.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query="What is wrong in calc.py?", repo_url=str(repo_factory(BUGGY)))
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))
        requests = llm.requests
    assert task.status is TaskStatus.SUCCEEDED
    assert task.result and task.result.summary == "calc.add subtracts instead of adding."
    assert "tools" not in requests[0], "the text protocol sends no tool schemas"
    assert requests[0]["stop"] == ["\n```\n"]
    said = [m["content"] for m in requests[-1]["messages"] if m["role"] == "user"]
    assert any("You have not run any command yet" in s for s in said)
    assert any(s.startswith("Output of `exec`") and "return a - b" in s for s in said)


def test_links_out_of_the_tree_left_by_setup_break_no_later_task(repo_factory, settings) -> None:
    setup = "mkdir -p .venv/bin tools && ln -s /usr/bin/python3 .venv/bin/python && ln -sf /usr/bin/env tools/env\n"
    repo = repo_factory({**BUGGY, ".agentfleet/setup.sh": setup})
    for turn in range(2):  # the ignored .venv persists; tools/ (not ignored) is cleaned, setup is reused
        task, requests = run_scripted([reply(None, tool_call("list_files", {})), reply("Listed.")], repo, settings)
        assert task.status is TaskStatus.SUCCEEDED, task.error
        if turn == 0:
            assert "- tools/env -> /usr/bin/env" in requests[0]["messages"][1]["content"]
            assert "tools/env -> /usr/bin/env" in tool_messages(requests)[0]
    assert (settings.workspaces_dir / task.workspace_id / ".venv" / "bin" / "python").is_symlink()


def test_a_patch_over_the_size_limit_is_not_kept_and_the_task_says_why(repo_factory, settings) -> None:
    big = "head -c 3000000 /dev/urandom | base64 > data.txt && echo x >> calc.py"
    script = [reply(None, tool_call("exec", {"command": big})), reply("Wrote the data.")]
    limited = settings.model_copy(update={"max_patch_bytes": 1 << 20})
    task, _ = run_scripted(script, repo_factory(BUGGY), limited)
    assert task.status is TaskStatus.FAILED
    assert task.error and "over the limit of 1,048,576 (AGENTFLEET_MAX_PATCH_BYTES)" in task.error
    assert task.result is not None and task.result.patch is None and task.result.artifacts == []
    assert "data.txt" in task.result.diff_stat and "calc.py" in task.result.diff_stat
    assert not list(settings.artifacts_dir.glob(f"tasks/{task.id}/patch.diff"))
    assert task.usage.tool_calls == 1 and task.usage.llm_calls == 2, "what was spent is recorded"


def test_a_model_server_that_restarts_mid_task_does_not_fail_the_task(repo_factory, settings) -> None:
    llm = ScriptedLLM([reply(None, tool_call("exec", {"command": "echo hi"})), reply("Back and done.")]).start()
    configured = settings.model_copy(update={"gpt_oss_url": llm.url})
    restarted = threading.Event()

    def restart_later() -> None:
        threading.Event().wait(2.0)  # the outage: two seconds without a server on the port
        llm.start()
        restarted.set()

    def outage_after_first_tool(event: TaskEvent) -> None:
        if event.kind is EventKind.TOOL_RESULT:
            llm.stop()
            threading.Thread(target=restart_later, daemon=True).start()

    task = Task(request=TaskRequest(query="x", repo_url=str(repo_factory(BUGGY))))
    events: list[TaskEvent] = []
    try:
        final = work_task(
            task,
            configured,
            LocalArtifactStore(settings.artifacts_dir),
            listeners=[outage_after_first_tool, events.append],
        )
    finally:
        llm.stop()
    assert restarted.is_set()
    assert final.status is TaskStatus.SUCCEEDED, final.error
    waits = [e.data for e in events if e.kind is EventKind.LOG and e.data["message"] == "waiting for the model"]
    assert waits and "cannot reach the model" in waits[0]["reason"]


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_the_gpt_oss_profile_sends_reasoning_effort_and_keeps_reasoning_across_tool_calls(
    repo_factory, settings, tmp_path, stream
) -> None:
    script = [
        {**reply(None, tool_call("read_file", {"path": "calc.py"})), "reasoning": "Read calc.py before changing it."},
        {**reply(None, tool_call("apply_patch", {"patch": FIX})), "reasoning": "add() subtracts; patch the sign."},
        {**reply(None, tool_call("exec", {"command": "python3 test_calc.py"})), "reasoning": "Run the test."},
        {**reply("add() subtracted; it now adds and the test passes."), "reasoning": "The test passes."},
    ]
    record = tmp_path / "requests.jsonl"
    configured = settings.model_copy(
        update={"model_profile": "gpt-oss", "reasoning_effort": "medium", "llm_stream": stream}
    )
    with ScriptedLLM(script, record=record) as llm:
        configured = configured.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query="Fix the failing test", repo_url=str(repo_factory(BUGGY)))
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))

    assert task.status is TaskStatus.SUCCEEDED, task.error
    bodies = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(bodies) == 4
    assert {body["reasoning_effort"] for body in bodies} == {"medium"}
    assert all(body["tools"] for body in bodies)
    # Each later request carries the reasoning of the tool calls before it, each with its own call.
    kept = [
        (m["reasoning"], m["tool_calls"][0]["function"]["name"])
        for m in bodies[-1]["messages"]
        if m["role"] == "assistant"
    ]
    assert kept == [
        ("Read calc.py before changing it.", "read_file"),
        ("add() subtracts; patch the sign.", "apply_patch"),
        ("Run the test.", "exec"),
    ]


def test_the_native_profile_sends_no_reasoning_fields(repo_factory, settings, tmp_path) -> None:
    script = [
        {**reply(None, tool_call("read_file", {"path": "calc.py"})), "reasoning": "Look first."},
        reply("calc.add subtracts."),
    ]
    configured = settings.model_copy(update={"model_profile": "native"})
    _, requests = run_scripted(script, repo_factory(BUGGY), configured)
    assert len(requests) == 2 and not any("reasoning_effort" in body for body in requests)
    assert not any("reasoning" in m for m in requests[-1]["messages"])


def test_the_text_profile_sends_back_an_answer_that_changed_nothing_when_a_change_was_asked(
    repo_factory, settings
) -> None:
    script = [
        reply("```bash\ncat calc.py\n"),
        reply("I fixed add() so that it adds."),  # a fix described, not made
        reply("```bash\nsed -i 's/a - b/a + b/' calc.py\n"),
        reply("add() now adds: calc.py changed from a - b to a + b."),
    ]
    configured = settings.model_copy(update={"model_profile": "text"})
    task, requests = run_scripted(script, repo_factory(BUGGY), configured)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result and task.result.changed == ["calc.py"]
    said = [m["content"] for m in requests[-1]["messages"] if m["role"] == "user"]
    assert any(s.startswith("The task asks for a change, but no file has changed yet") for s in said)


def test_the_text_profile_fails_a_change_task_whose_model_never_changes_a_file(repo_factory, settings) -> None:
    script = [
        reply("```bash\ncat calc.py\n"),
        reply("I fixed add() so that it adds."),
        reply("It is fixed now."),
    ]
    configured = settings.model_copy(update={"model_profile": "text"})
    task, requests = run_scripted(script, repo_factory(BUGGY), configured)
    assert task.status is TaskStatus.FAILED
    assert task.error and "the task asks for a change and the model changed no file" in task.error
    assert len(requests) == 3


def test_other_profiles_take_an_answer_without_a_change_as_before(repo_factory, settings) -> None:
    script = [reply(None, tool_call("read_file", {"path": "calc.py"})), reply("add() subtracts.")]
    task, _ = run_scripted(script, repo_factory(BUGGY), settings.model_copy(update={"model_profile": "native"}))
    assert task.status is TaskStatus.SUCCEEDED and task.result and task.result.changed == []
