"""Follow-ups in local mode, as a user makes them: `agentfleet serve` with the real agent processes
and the scripted model, a chain made over HTTP, with `agentfleet followup` and over A2A; and the
API's refusals (a task that has not ended, an unknown one) through the `orchestrate` function."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.helpers import new_data_part, new_text_part
from a2a.types.a2a_pb2 import Message, Role, SendMessageRequest, TaskState
from typer.testing import CliRunner

from agentfleet.api import Api
from agentfleet.cli import app
from agentfleet.client import Client
from agentfleet.local.token import read_token
from agentfleet.tasks import Task
from agentfleet.testing.polling import wait_for
from agentfleet.testing.repos import git
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call
from tests.test_api import QUICK, REQUEST, make_service, orchestrate
from tests.test_serve import auth, local_client, server_process

STEP = [reply(None, tool_call("exec", {"command": "echo step >> notes.txt"})), reply("Added a step.")]
"""Every task (per turn: any number of them) appends one line to notes.txt."""


def bare_remote(repo_factory: Any, tmp_path: Path) -> Path:
    origin = repo_factory({"notes.txt": "start\n"}, name="project")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(remote))
    return remote


def ended(client: Client, task_id: str) -> Task:
    found = wait_for(lambda: (t := client.task(task_id)).status.final and t, timeout_s=120, what=f"task {task_id}")
    assert isinstance(found, Task)
    return found


def user_prompts(requests: list[dict]) -> list[str]:
    """The first user message of each conversation the model was sent."""
    firsts = [r["messages"] for r in requests if sum(m["role"] == "assistant" for m in r["messages"]) == 0]
    return [next(m["content"] for m in messages if m["role"] == "user") for messages in firsts]


def test_a_chain_of_three_made_over_http_and_the_cli_ends_on_one_branch_with_three_commits(
    repo_factory, tmp_path
) -> None:
    remote = bare_remote(repo_factory, tmp_path)
    with ScriptedLLM(STEP, per_turn=True) as llm, server_process(tmp_path, llm.url) as (url, _):
        client = local_client(url, tmp_path)
        body = {"query": "Add a first step", "repo_url": str(remote), "options": {"push_branch": True}}
        root = ended(client, client.submit(body)["task_id"])
        token = read_token(tmp_path / "home")
        cli = CliRunner().invoke(
            app, ["followup", root.id, "Add a second step", "--wait", "--server", url, "--token", token]
        )
        assert cli.exit_code == 0, cli.output
        second = client.tasks()[0]
        answer = httpx.post(f"{url}/tasks/{second.id}/followup", json={"query": "Add a third"}, headers=auth(tmp_path))
        assert answer.status_code == 202, answer.text
        third = ended(client, answer.json()["task_id"])
        chain = httpx.get(f"{url}/tasks/{second.id}/chain", headers=auth(tmp_path)).json()
        prompts = user_prompts(llm.requests)
    branch = f"agentfleet/{root.id}"
    assert third.status.value == "SUCCEEDED", third.error
    assert (second.parent_id, third.parent_id, third.root_id) == (root.id, second.id, root.id)
    assert chain["root_id"] == root.id and [t["id"] for t in chain["tasks"]] == [root.id, second.id, third.id]
    subjects = git(remote, "log", "--reverse", "--format=%s", f"main..{branch}").splitlines()
    assert subjects == [f"AgentFleet task {t.id}: {t.request.query}" for t in (root, second, third)]
    assert git(remote, "show", f"{branch}:notes.txt").splitlines() == ["start", "step", "step", "step"]
    assert "Add a first step" in prompts[1] and "Added a step." in prompts[1], "the follow-up's prompt"
    assert "Add a first step" in prompts[2] and "Add a second step" in prompts[2]


def test_a_follow_up_of_a_task_that_has_not_ended_is_a_409_with_the_reason(home) -> None:
    client = orchestrate(Api(make_service(home), QUICK))
    queued = client.post("/orchestrate", json=REQUEST).get_json()["task_id"]
    refused = client.post(f"/tasks/{queued}/followup", json={"query": "and then"})
    assert refused.status_code == 409
    assert "is QUEUED; a follow-up starts from a task's result" in refused.get_json()["error"]
    assert client.post("/tasks/nope/followup", json={"query": "x"}).status_code == 404
    assert client.post(f"/tasks/{queued}/followup", json={"query": "x", "repo_url": "y"}).status_code == 400
    chain = client.get(f"/tasks/{queued}/chain").get_json()
    assert chain["root_id"] == queued and [t["id"] for t in chain["tasks"]] == [queued]


def message(text: str, context_id: str, data: dict[str, Any] | None = None) -> Message:
    parts = [new_text_part(text), *([new_data_part(data)] if data else [])]
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), context_id=context_id, parts=parts)


def test_an_a2a_message_in_the_same_context_follows_up_the_context_s_last_task(repo_factory, tmp_path) -> None:
    remote = bare_remote(repo_factory, tmp_path)
    context = str(uuid.uuid4())
    with ScriptedLLM(STEP, per_turn=True) as llm, server_process(tmp_path, llm.url) as (url, _):

        async def send(*messages: Message) -> list[tuple[str, str]]:
            """Each message sent in turn: (final A2A state, AgentFleet task id)."""
            ends = []
            async with httpx.AsyncClient(headers=auth(tmp_path), timeout=httpx.Timeout(30, read=None)) as http:
                card = await A2ACardResolver(http, url).get_agent_card()
                client = ClientFactory(ClientConfig(httpx_client=http)).create(card)
                for sent in messages:
                    events = [e async for e in client.send_message(SendMessageRequest(message=sent))]
                    status = events[-1].status_update.status
                    ends.append((TaskState.Name(status.state), status.message.metadata["agentfleet_task_id"]))
            return ends

        first = message("Add a first step", context, {"repo_url": str(remote), "options": {"push_branch": True}})
        [(state1, root_id), (state2, followup_id)] = asyncio.run(send(first, message("Add another step", context)))
        followup = local_client(url, tmp_path).task(followup_id)
        prompts = user_prompts(llm.requests)
    assert (state1, state2) == ("TASK_STATE_COMPLETED", "TASK_STATE_COMPLETED")
    assert followup.parent_id == root_id and followup.root_id == root_id
    assert followup.result and followup.result.branch == f"agentfleet/{root_id}"
    assert git(remote, "show", f"agentfleet/{root_id}:notes.txt").splitlines() == ["start", "step", "step"]
    assert "Add a first step" in prompts[1]
