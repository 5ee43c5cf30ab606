"""Repository memory through real tasks: the scripted model's recorded requests show what the
prompt held (AGENTS.md, the digest of earlier tasks), and its tool calls reach recall/remember."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentfleet.agent import instructions
from agentfleet.agent.instructions import read_instructions
from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskEvent, TaskRequest, TaskStatus
from agentfleet.testing.repos import git
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

BUGGY = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('1 passed')\n",
}
FIX = (
    "*** Begin Patch\n*** Update File: calc.py\n@@ def add(a, b):\n-    return a - b\n+    return a + b\n*** End Patch"
)
FIRST_ANSWER = "add() subtracted its arguments; it now adds them and test_calc.py passes."
LOOK = [reply(None, tool_call("list_files", {})), reply("ok")]


def run(
    query: str, script: list[dict], repo: Path, settings: Settings, memory: SqliteMemoryStore | None, **options: Any
) -> tuple[Task, list[dict], list[TaskEvent]]:
    events: list[TaskEvent] = []
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query=query, repo_url=str(repo), options=options)
        artifacts = LocalArtifactStore(settings.artifacts_dir)
        task = work_task(Task(request=request), configured, artifacts, listeners=[events.append], memory=memory)
        return task, llm.requests, events


def prompt_of(requests: list[dict]) -> str:
    return next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")


def tool_outputs(requests: list[dict]) -> list[str]:
    return [m["content"] for m in requests[-1]["messages"] if m["role"] == "tool"]


def fix_task(repo: Path, settings: Settings, memory: SqliteMemoryStore) -> Task:
    script = [
        reply(None, tool_call("apply_patch", {"patch": FIX})),
        reply(None, tool_call("exec", {"command": "python3 test_calc.py"})),
        reply(FIRST_ANSWER),
    ]
    task, _, _ = run("Fix the failing test in calc.py", script, repo, settings, memory, check="python3 test_calc.py")
    assert task.status is TaskStatus.SUCCEEDED, task.error
    return task


@pytest.fixture
def memory(tmp_path: Path) -> SqliteMemoryStore:
    return SqliteMemoryStore(tmp_path / "memory.db")


def test_the_second_task_on_a_repository_gets_the_first_ones_digest(repo_factory, settings, memory) -> None:
    repo = repo_factory(BUGGY)
    first = fix_task(repo, settings, memory)
    kept = memory.recent(first.workspace_id)
    assert len(kept) == 1 and kept[0].task_id == first.id and kept[0].files == ["calc.py"]
    assert kept[0].commands == ["python3 test_calc.py"] and kept[0].checks[0].endswith("passed")

    second, requests, events = run("Why did add fail before?", LOOK, repo, settings, memory)
    assert second.status is TaskStatus.SUCCEEDED, second.error
    prompt = prompt_of(requests)
    assert "What earlier tasks on this repository did" in prompt
    assert f"task {first.id}" in prompt and "Fix the failing test in calc.py" in prompt and FIRST_ANSWER in prompt
    assert "changed: calc.py" in prompt and "ran: python3 test_calc.py" in prompt
    assert "recall tool" in prompt
    assert any(e.data.get("step") == "memory" and e.data.get("entries") == 1 for e in events)
    assert {t["function"]["name"] for t in requests[0]["tools"]} >= {"recall", "remember"}


def test_recall_finds_an_earlier_task_and_remember_keeps_a_note(repo_factory, settings, memory) -> None:
    repo = repo_factory(BUGGY)
    first = fix_task(repo, settings, memory)
    script = [
        reply(None, tool_call("recall", {"query": "subtracted"})),
        reply(None, tool_call("remember", {"note": "the tests run with `python3 test_calc.py`, no pytest"})),
        reply(None, tool_call("recall", {"query": "nothing like this"})),
        reply("noted"),
    ]
    second, requests, _ = run("What should I know?", script, repo, settings, memory)
    assert second.status is TaskStatus.SUCCEEDED, second.error
    found, kept, missing = tool_outputs(requests)
    assert f"task {first.id}" in found and FIRST_ANSWER in found
    assert kept.startswith("kept: the tests run with")
    assert missing.startswith("nothing in this repository's memory matches")
    notes = [e for e in memory.recent(first.workspace_id) if e.kind == "note"]
    assert len(notes) == 1 and notes[0].task_id == second.id
    assert memory.search(first.workspace_id, "pytest") == notes


def test_after_clearing_a_later_task_gets_no_digest(repo_factory, settings, memory) -> None:
    repo = repo_factory(BUGGY)
    first = fix_task(repo, settings, memory)
    assert memory.clear(first.workspace_id) == 1
    _, requests, _ = run("Why did add fail before?", LOOK, repo, settings, memory)
    assert "What earlier tasks" not in prompt_of(requests) and FIRST_ANSWER not in prompt_of(requests)


def test_with_memory_off_nothing_is_shown_or_kept(repo_factory, settings, memory) -> None:
    repo = repo_factory(BUGGY)
    off = settings.model_copy(update={"memory": "off"})
    _, requests, _ = run("Look around", LOOK, repo, off, memory)
    assert "recall" not in {t["function"]["name"] for t in requests[0]["tools"]}
    assert memory.recent(Task(request=TaskRequest(query="x", repo_url=str(repo))).workspace_id) == []


def test_the_repositorys_agents_md_files_are_in_the_prompt_bounded(repo_factory, settings) -> None:
    big = "Use four spaces.\n" + "x" * (instructions.MAX_FILE_BYTES + 100)
    files = {**BUGGY, "AGENTS.md": "Run the tests with `python3 test_calc.py`.\n", "pkg/AGENTS.md": big}
    files["pkg/mod.py"] = ""
    repo = repo_factory(files)
    _, requests, events = run("Tidy pkg/mod.py", LOOK, repo, settings, None)
    prompt = prompt_of(requests)
    assert "--- AGENTS.md ---\nRun the tests with `python3 test_calc.py`." in prompt
    assert "--- pkg/AGENTS.md ---\nUse four spaces." in prompt
    assert f"[cut: pkg/AGENTS.md is {len(big):,} bytes" in prompt
    assert "x" * (instructions.MAX_FILE_BYTES + 1) not in prompt
    said = next(e.data for e in events if e.data.get("step") == "instructions")
    assert said["read"] == [
        {"path": "AGENTS.md", "bytes": len(files["AGENTS.md"]), "cut": False},
        {"path": "pkg/AGENTS.md", "bytes": len(big), "cut": True},
    ]


def test_a_symlinked_agents_md_or_folder_is_not_followed_out_of_the_checkout(repo_factory, settings, tmp_path) -> None:
    secret = tmp_path / "host" / "AGENTS.md"
    secret.parent.mkdir()
    secret.write_text("HOST SECRET 1234\n")
    repo = repo_factory(BUGGY)
    os.symlink(secret, repo / "AGENTS.md")
    os.symlink(secret.parent, repo / "lib")
    git(repo, "add", "AGENTS.md", "lib")
    git(repo, "commit", "-qm", "links")
    query = "Look at lib/thing.py"
    _, requests, events = run(query, LOOK, repo, settings, None)
    assert "HOST SECRET" not in prompt_of(requests)
    said = next(e.data for e in events if e.data.get("step") == "instructions")
    skipped = [{"path": "AGENTS.md", "why": "a symlink (not followed)"}]
    assert said == {"step": "instructions", "read": [], "skipped": skipped}


def test_a_fifo_a_huge_file_and_links_are_read_safely(tmp_path) -> None:
    """The host-side reader alone, on what a setup script could leave in a checkout."""
    checkout = tmp_path / "ws"
    (checkout / "fifo").mkdir(parents=True)
    os.mkfifo(checkout / "fifo" / "AGENTS.md")  # opening it for reading would block without O_NONBLOCK
    (checkout / "huge").mkdir()
    with (checkout / "huge" / "AGENTS.md").open("wb") as fh:
        fh.truncate(10 * 1024 * 1024 * 1024)  # 10 GiB, sparse: only the first bytes are read
    (checkout / "dir" / "AGENTS.md").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "AGENTS.md").write_text("OUTSIDE\n")
    os.symlink(tmp_path / "outside", checkout / "escape")
    query = f"see fifo/ huge/ dir/ escape/ ../outside/ {tmp_path}/outside/x.py"
    found = read_instructions(query, checkout, [checkout])
    assert found.skipped == [
        {"path": "fifo/AGENTS.md", "why": "not a regular file"},
        {"path": "dir/AGENTS.md", "why": "not a regular file"},
    ]
    assert found.read == [{"path": "huge/AGENTS.md", "bytes": 10 * 1024**3, "cut": True}]
    assert "OUTSIDE" not in found.text and len(found.text) < instructions.MAX_FILE_BYTES + 200
