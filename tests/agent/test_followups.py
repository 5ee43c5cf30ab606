"""Follow-up chains worked end to end in process (work_task, the scripted model, real git against a
local bare remote): where each follow-up starts, what its prompt holds, what reaches the branch,
and a hostile parent patch applied on the host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentfleet.agent.work import work_task
from agentfleet.agent.workspace import prepare_workspace
from agentfleet.errors import ConflictError, WorkspaceError
from agentfleet.followups import followup_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.names import repo_dirname
from agentfleet.settings import Settings
from agentfleet.tasks import FollowupRequest, Task, TaskRequest, TaskResult, TaskStatus
from agentfleet.testing.repos import git
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call
from tests.hostile import PLANTS, fired, marker_dir, plant

CONTEXT = {"allow_local_repos": True}


def add_line(path: str, line: str) -> dict:
    """A script step: the agent appends `line` to `path` with a command in the sandbox."""
    return reply(None, tool_call("exec", {"command": f"printf '%s\\n' '{line}' >> {path}"}))


@pytest.fixture
def bare(repo_factory, tmp_path) -> Path:
    """A bare remote whose main holds notes.txt."""
    origin = repo_factory({"notes.txt": "start\n"}, name="project")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(remote))
    return remote


def work(task: Task, settings: Settings, script: list[dict]) -> tuple[Task, list[dict]]:
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        return work_task(task, configured, LocalArtifactStore(settings.artifacts_dir)), llm.requests


def follow(parent: Task, query: str, **options: Any) -> Task:
    return followup_task(parent, FollowupRequest(query=query, options=options or None), CONTEXT)


def branch_log(remote: Path, branch: str) -> list[str]:
    """The subjects of the branch's commits after main, oldest first."""
    return git(remote, "log", "--reverse", "--format=%s", f"main..{branch}").splitlines()


def first_prompt(requests: list[dict]) -> str:
    return next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")


def test_a_chain_of_three_pushed_tasks_leaves_one_branch_with_three_commits_in_order(bare, settings) -> None:
    root, _ = work(
        Task(request=TaskRequest(query="Add a line one", repo_url=str(bare), options={"push_branch": True})),
        settings,
        [add_line("notes.txt", "one"), reply("Added line one.")],
    )
    assert root.status is TaskStatus.SUCCEEDED, root.error
    second, requests = work(follow(root, "Now add a line two"), settings, [add_line("notes.txt", "two"), reply("Two.")])
    assert second.status is TaskStatus.SUCCEEDED, second.error
    third, _ = work(follow(second, "And a line three"), settings, [add_line("notes.txt", "three"), reply("Three.")])
    assert third.status is TaskStatus.SUCCEEDED, third.error

    branch = f"agentfleet/{root.id}"
    assert root.result and second.result and third.result
    assert root.result.branch == second.result.branch == third.result.branch == branch
    assert git(bare, "for-each-ref", "--format=%(refname)", "refs/heads/agentfleet/") == f"refs/heads/{branch}"
    assert branch_log(bare, branch) == [
        f"AgentFleet task {root.id}: Add a line one",
        f"AgentFleet task {second.id}: Now add a line two",
        f"AgentFleet task {third.id}: And a line three",
    ]
    assert git(bare, "show", f"{branch}:notes.txt").splitlines() == ["start", "one", "two", "three"]
    assert third.result.repos[0].commit == git(bare, "rev-parse", branch)
    assert "notes.txt | 1 +" in second.result.diff_stat, "each follow-up's patch is its own change"
    assert (second.parent_id, second.root_id, third.parent_id, third.root_id) == (root.id, root.id, second.id, root.id)
    prompt = first_prompt(requests)
    assert "Add a line one" in prompt and "Added line one." in prompt and "notes.txt | 1 +" in prompt


def test_a_chain_not_pushed_continues_from_each_patch_and_a_later_push_puts_one_commit_per_task(bare, settings) -> None:
    root, _ = work(
        Task(request=TaskRequest(query="Add a line one", repo_url=str(bare))),
        settings,
        [add_line("notes.txt", "one"), reply("Added line one.")],
    )
    second, _ = work(follow(root, "Add a line two"), settings, [add_line("notes.txt", "two"), reply("Two.")])
    third, requests = work(
        follow(second, "Add a line three and push", push_branch=True),
        settings,
        [add_line("notes.txt", "three"), reply("Three.")],
    )
    assert third.status is TaskStatus.SUCCEEDED, third.error
    assert root.result and root.result.branch is None and second.result and second.result.branch is None
    branch = f"agentfleet/{root.id}"
    assert [s.split(":")[0] for s in branch_log(bare, branch)] == [
        f"AgentFleet task {t.id}" for t in (root, second, third)
    ]
    assert git(bare, "show", f"{branch}:notes.txt").splitlines() == ["start", "one", "two", "three"]
    prompt = first_prompt(requests)
    assert "Added line one." in prompt and prompt.index("Add a line one") < prompt.index("Add a line two")


def test_a_push_the_remote_rejects_fails_the_follow_up_and_keeps_its_patch(bare, settings, tmp_path) -> None:
    root, _ = work(
        Task(request=TaskRequest(query="Add a line one", repo_url=str(bare), options={"push_branch": True})),
        settings,
        [add_line("notes.txt", "one"), reply("Added line one.")],
    )
    branch = f"agentfleet/{root.id}"
    other = tmp_path / "someone-else"
    git(tmp_path, "clone", "-q", "-b", branch, str(bare), str(other))
    (other / "theirs.txt").write_text("pushed meanwhile\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "-q", "-m", "someone else's commit")
    git(other, "push", "-q", "origin", branch)
    theirs = git(bare, "rev-parse", branch)

    second, _ = work(follow(root, "Add a line two"), settings, [add_line("notes.txt", "two"), reply("Two.")])
    assert second.status is TaskStatus.FAILED
    assert second.error and "rejected the push" in second.error and "someone else pushed" in second.error
    assert git(bare, "rev-parse", branch) == theirs, "nothing was forced"
    assert second.result and second.result.patch and second.result.branch is None
    assert "+two" in (settings.artifacts_dir / second.result.patch).read_text()


def test_a_follow_up_of_a_task_that_has_not_ended_is_refused(bare) -> None:
    running = Task(request=TaskRequest(query="q", repo_url=str(bare)), status=TaskStatus.RUNNING)
    with pytest.raises(ConflictError, match="is RUNNING; a follow-up starts from a task's result"):
        follow(running, "more")


def test_a_follow_up_of_a_task_whose_patch_was_not_kept_is_refused(bare) -> None:
    result = TaskResult(summary="big", diff_stat="big.bin | Bin", repos=[{"name": "project", "base_commit": "a" * 40}])
    result.repos[0].changed = True
    parent = Task(request=TaskRequest(query="q", repo_url=str(bare)), status=TaskStatus.FAILED, result=result)
    with pytest.raises(ConflictError, match="its patch was not kept"):
        follow(parent, "more")


# --- a hostile parent patch, applied on the host ------------------------------------------------------


def parent_with_patch(settings: Settings, bare: Path, patch: str) -> Task:
    """An ended task on `bare` whose kept patch is `patch` (as its agent could have made it)."""
    task = Task(request=TaskRequest(query="q", repo_url=str(bare)), status=TaskStatus.SUCCEEDED)
    key = LocalArtifactStore(settings.artifacts_dir).put_bytes(f"tasks/{task.id}/patch.diff", patch.encode())
    base = git(bare, "rev-parse", "main")
    repos = [{"name": repo_dirname(str(bare)), "base_commit": base, "changed": True}]
    return task.model_copy(update={"result": TaskResult(summary="s", patch=key, repos=repos)})


def prepare(task: Task, settings: Settings) -> Any:
    store = LocalArtifactStore(settings.artifacts_dir)
    return prepare_workspace(task, settings, store, emit=lambda *_: None, run_setup=None)


HOSTILE = (
    "diff --git a/notes.txt b/notes.txt\n--- a/notes.txt\n+++ b/notes.txt\n@@ -1 +1,2 @@\n start\n+patched\n"
    "diff --git a/.gitattributes b/.gitattributes\nnew file mode 100644\n--- /dev/null\n+++ b/.gitattributes\n"
    "@@ -0,0 +1 @@\n+* filter=evil diff=evil\n"
)


@pytest.mark.parametrize("name", PLANTS)
def test_a_parent_patch_is_applied_without_running_anything_planted_in_the_checkout(
    name, bare, settings, tmp_path
) -> None:
    markers = marker_dir(tmp_path)
    parent = parent_with_patch(settings, bare, HOSTILE)
    checkout = prepare(Task(request=parent.request), settings).repos[0]  # the workspace the parent's agent had
    plant(checkout.path, name, markers)
    followed = prepare(follow(parent, "go on"), settings).repos[0]
    assert fired(markers) == [], f"{name}: applying the parent's patch ran a planted program"
    assert (followed.path / "notes.txt").read_text() == "start\npatched\n"
    assert git(followed.path, "log", "-1", "--format=%s", followed.base_commit) == f"AgentFleet task {parent.id}: q"


@pytest.mark.parametrize(
    "patch",
    [
        "diff --git a/.git/hooks/pre-commit b/.git/hooks/pre-commit\nnew file mode 100755\n--- /dev/null\n"
        "+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+touch {outside}/hook-ran\n",
        "diff --git a/../../escaped b/../../escaped\nnew file mode 100644\n--- /dev/null\n+++ b/../../escaped\n"
        "@@ -0,0 +1 @@\n+x\n",
        "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+{outside}\n"
        "\\ No newline at end of file\n"
        "diff --git a/link/planted b/link/planted\nnew file mode 100644\n--- /dev/null\n+++ b/link/planted\n"
        "@@ -0,0 +1 @@\n+x\n",
    ],
    ids=["into-.git", "outside-the-tree", "through-a-symlink"],
)
def test_a_parent_patch_that_reaches_outside_the_tree_is_refused(patch, bare, settings, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    parent = parent_with_patch(settings, bare, patch.format(outside=outside))
    with pytest.raises(WorkspaceError, match="does not apply"):
        prepare(follow(parent, "go on"), settings)
    assert list(outside.iterdir()) == []
    assert not (settings.workspaces_dir.parent / "escaped").exists()
    planted = [p for p in settings.workspaces_dir.rglob("pre-commit") if "hook-ran" in p.read_text()]
    assert planted == []
