"""The whole cloud flow on one machine (agentfleet.testing.cloud_flow): the orchestrate and dispatch
functions on functions-framework over real HTTP, the Firestore and Pub/Sub emulators, a Pub/Sub push
subscription, the Cloud Run Jobs fake driven by the real google-cloud-run client, the real agent
process (scripted model) and the GCS emulator.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from google.cloud import pubsub_v1

from agentfleet.gcp.artifacts import GcsArtifactStore
from agentfleet.gcp.store import FirestoreTaskStore
from agentfleet.ports import DispatchMessage
from agentfleet.tasks import EventKind, Task, TaskRequest, TaskStatus
from agentfleet.testing.cloud_flow import CloudFlow
from agentfleet.testing.emulators import CloudEmulators
from agentfleet.testing.polling import wait_for
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

PATCH = "*** Begin Patch\n*** Update File: app.py\n@@\n-print('hello')\n+print('hello, cloud')\n*** End Patch\n"
SCRIPT = [reply(None, tool_call("apply_patch", {"patch": PATCH})), reply("Changed the greeting.")]


@pytest.fixture(scope="module")
def flow(cloud: CloudEmulators, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudFlow]:
    workdir = tmp_path_factory.mktemp("cloud-flow")
    # Quick heartbeats and reaping so a test of a lost execution does not wait a minute.
    with ScriptedLLM(SCRIPT, per_turn=True) as llm, CloudFlow(cloud, workdir, llm_url=llm.url) as running:
        yield running


@pytest.fixture(scope="module")
def store(flow: CloudFlow) -> FirestoreTaskStore:
    return FirestoreTaskStore.from_settings(flow.settings())


@pytest.fixture(scope="module")
def artifacts(flow: CloudFlow) -> GcsArtifactStore:
    return GcsArtifactStore.from_settings(flow.settings())


def final(store: FirestoreTaskStore, task_id: str, timeout_s: float = 180.0) -> Task:
    def done() -> Task | None:
        task = store.get(task_id)
        return task if task is not None and task.status.final else None

    result = wait_for(done, timeout_s, f"task {task_id} to finish")
    assert isinstance(result, Task)
    return result


def runs_of(flow: CloudFlow, task_id: str) -> list[dict[str, str]]:
    """The environments of the executions the Cloud Run fake started for the task."""
    return [env for env in flow.started_envs() if env.get("AGENTFLEET_TASK_ID") == task_id]


def test_a_task_posted_to_orchestrate_runs_in_a_cloud_run_execution_and_leaves_its_patch_in_gcs(
    flow: CloudFlow, store: FirestoreTaskStore, artifacts: GcsArtifactStore, repo_factory: Callable[..., Path]
) -> None:
    repo = repo_factory({"app.py": "print('hello')\n"})
    response = httpx.post(
        f"{flow.urls['orchestrate']}/orchestrate", json={"query": "greet the cloud", "repo_url": str(repo)}
    )
    assert response.status_code == 202, response.text
    task = final(store, response.json()["task_id"])
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result is not None and task.result.patch
    assert "+print('hello, cloud')" in artifacts.get_bytes(task.result.patch).decode()
    statuses = [e.data["status"] for e in store.events(task.id) if e.kind is EventKind.STATUS]
    assert statuses == ["QUEUED", "DISPATCHED", "RUNNING", "SUCCEEDED"]
    [env] = runs_of(flow, task.id)
    assert env["AGENTFLEET_ATTEMPT"] == "1" and env["AGENTFLEET_BACKEND"] == "gcp"
    assert task.execution and task.execution.split("/")[-1].startswith(f"agent-{task.workspace_id}")
    # The status read back through the orchestrate function's own API.
    assert httpx.get(f"{flow.urls['orchestrate']}/tasks/{task.id}").json()["status"] == "SUCCEEDED"


def test_a_task_request_published_straight_onto_the_topic_is_stored_and_run(
    flow: CloudFlow, store: FirestoreTaskStore, repo_factory: Callable[..., Path]
) -> None:
    repo = repo_factory({"app.py": "print('hello')\n"})
    key = f"published-{uuid.uuid4().hex[:8]}"
    body = {"query": "greet the cloud", "repo_url": str(repo), "idempotency_key": key}
    pubsub_v1.PublisherClient().publish(flow.topic, json.dumps(body).encode()).result(timeout=30)

    def stored() -> Task | None:
        return next((t for t in store.list_tasks(limit=1000) if t.request.idempotency_key == key), None)

    task = wait_for(stored, what="the published task to be stored")
    assert isinstance(task, Task)
    assert final(store, task.id).status is TaskStatus.SUCCEEDED


def push_body(message: DispatchMessage, message_id: str) -> dict[str, object]:
    """A Pub/Sub push delivery, as the subscription posts it to the dispatch function."""
    return {
        "message": {
            "data": base64.b64encode(message.model_dump_json().encode()).decode(),
            "attributes": {"task_id": message.task_id, "attempt": str(message.attempt)},
            "messageId": message_id,
            "publishTime": "2026-11-24T00:00:00Z",
        },
        "subscription": "projects/agentfleet-test/subscriptions/dispatch",
    }


def test_the_same_message_delivered_three_times_at_once_starts_one_execution(
    flow: CloudFlow, store: FirestoreTaskStore, repo_factory: Callable[..., Path]
) -> None:
    repo = repo_factory({"app.py": "print('hello')\n"})
    task, _ = store.create(Task(request=TaskRequest(query="once", repo_url=str(repo))))  # stored, not published
    body = push_body(DispatchMessage(task_id=task.id, attempt=1, workspace_id=task.workspace_id), "dup-1")
    barrier = threading.Barrier(3)

    def deliver(_: int) -> int:
        barrier.wait()
        return httpx.post(flow.urls["dispatch"] + "/", json=body, timeout=60).status_code

    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(deliver, range(3)))
    assert codes == [200, 200, 200]
    assert final(store, task.id).status is TaskStatus.SUCCEEDED
    assert len(runs_of(flow, task.id)) == 1


def test_a_dispatch_that_fails_transiently_is_redelivered_and_succeeds(
    flow: CloudFlow, store: FirestoreTaskStore, repo_factory: Callable[..., Path]
) -> None:
    assert flow.fake is not None
    repo = repo_factory({"app.py": "print('hello')\n"})
    flow.fake.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    response = httpx.post(f"{flow.urls['orchestrate']}/orchestrate", json={"query": "retry me", "repo_url": str(repo)})
    task = final(store, response.json()["task_id"])
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert len(runs_of(flow, task.id)) == 1
    dispatch_log = (flow.workdir / "dispatch.log").read_text()
    assert "dispatch of message" in dispatch_log and "will be retried" in dispatch_log


def test_a_message_that_keeps_failing_lands_in_the_dead_letter_topic_and_its_task_stays_queued(
    flow: CloudFlow, store: FirestoreTaskStore, repo_factory: Callable[..., Path]
) -> None:
    assert flow.fake is not None
    repo = repo_factory({"app.py": "print('hello')\n"})
    flow.fake.fail_next(100, grpc.StatusCode.UNAVAILABLE)  # Cloud Run keeps refusing
    try:
        response = httpx.post(
            f"{flow.urls['orchestrate']}/orchestrate", json={"query": "poison", "repo_url": str(repo)}
        )
        task_id = response.json()["task_id"]
        letters = wait_for(flow.dead_letters, 120, "the message to be dead-lettered")
    finally:
        flow.fake.clear_failures()
    assert isinstance(letters, list)
    assert [m.message.attributes["task_id"] for m in letters] == [task_id]
    task = store.get(task_id)
    assert task is not None and task.status is TaskStatus.QUEUED
    # Not lost: the reaper (Cloud Scheduler → the reap function) publishes it again, and it runs.
    reaped = httpx.post(flow.urls["reap"] + "/", timeout=60)
    assert reaped.status_code == 200 and task.workspace_id in reaped.json()["rescheduled"], reaped.text
    assert final(store, task_id).status is TaskStatus.SUCCEEDED
