"""A follow-up through the whole emulated cloud flow (agentfleet.testing.cloud_flow): made with the
orchestrate function's POST /tasks/{id}/followup, its parent's patch read back from Cloud Storage
by a fresh agent container, its chain from Firestore, its commits pushed to a local bare remote."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agentfleet.gcp.store import FirestoreTaskStore
from agentfleet.tasks import EventKind, Task
from agentfleet.testing.cloud_flow import CloudFlow
from agentfleet.testing.emulators import CloudEmulators
from agentfleet.testing.polling import wait_for
from agentfleet.testing.repos import git
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

STEP = [reply(None, tool_call("exec", {"command": "echo step >> notes.txt"})), reply("Added a step.")]


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(STEP, per_turn=True) as scripted:
        yield scripted


@pytest.fixture(scope="module")
def flow(cloud: CloudEmulators, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudFlow]:
    with CloudFlow(cloud, tmp_path_factory.mktemp("cloud-followups"), llm_url=llm.url) as running:
        yield running


def final(store: FirestoreTaskStore, task_id: str) -> Task:
    found = wait_for(lambda: (t := store.get(task_id)) is not None and t.status.final and t, 180, f"task {task_id}")
    assert isinstance(found, Task)
    return found


def test_a_follow_up_through_the_cloud_flow_continues_its_parent_s_patch_and_pushes_both_commits(
    flow: CloudFlow, llm: ScriptedLLM, repo_factory: Callable[..., Path], tmp_path: Path
) -> None:
    origin = repo_factory({"notes.txt": "start\n"}, name="project")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(remote))
    store = FirestoreTaskStore.from_settings(flow.settings())
    api = flow.urls["orchestrate"]
    created = httpx.post(f"{api}/orchestrate", json={"query": "Add a first step", "repo_url": str(remote)})
    root = final(store, created.json()["task_id"])
    assert root.status.value == "SUCCEEDED" and root.result and root.result.patch, root.error
    asked = {"query": "Add a second step", "options": {"push_branch": True}}
    answered = httpx.post(f"{api}/tasks/{root.id}/followup", json=asked)
    assert answered.status_code == 202, answered.text
    followup = final(store, answered.json()["task_id"])
    chain = httpx.get(f"{api}/tasks/{root.id}/chain").json()

    assert followup.status.value == "SUCCEEDED", followup.error
    assert followup.parent_id == root.id and [t["id"] for t in chain["tasks"]] == [root.id, followup.id]
    assert store.followups(root.id) == [followup]
    applied = [
        e.data for e in store.events(followup.id) if e.kind is EventKind.WORKSPACE and e.data["step"] == "followup"
    ]
    assert [a["applied"] for a in applied] == [root.id], "the parent's patch, read back from Cloud Storage"
    branch = f"agentfleet/{root.id}"
    subjects = git(remote, "log", "--reverse", "--format=%s", f"main..{branch}").splitlines()
    assert subjects == [f"AgentFleet task {t.id}: {t.request.query}" for t in (root, followup)]
    assert git(remote, "show", f"{branch}:notes.txt").splitlines() == ["start", "step", "step"]
    firsts = [r["messages"] for r in llm.requests if not any(m["role"] == "assistant" for m in r["messages"])]
    prompts = [next(m["content"] for m in messages if m["role"] == "user") for messages in firsts]
    assert any("Add a first step" in p and "Added a step." in p for p in prompts), "the follow-up's prompt"
