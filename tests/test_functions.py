"""The Cloud Functions entry points through functions-framework's own apps: `dispatch` with real
Pub/Sub CloudEvents (the messagePublished shape Eventarc delivers), `reap`, and the lazy build of
the service from the environment."""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent
from flask.testing import FlaskClient
from functions_framework import create_app

from agentfleet.api import Api
from agentfleet.backends import build_backends
from agentfleet.errors import RetryableError
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.queue import Delivery
from agentfleet.logs import JsonFormatter
from agentfleet.ports import Execution
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskStatus
from agentfleet.testing.polling import wait_for

SOURCE = str(Path(__file__).parents[1] / "functions" / "main.py")
REQUEST = {"query": "fix the failing test", "repo_url": "https://github.com/example/project"}
EXITS = [sys.executable, "-c", "pass"]


@dataclass
class CountingRunner:
    """The local runner, counting the launches it is asked for."""

    inner: LocalJobRunner
    launches: list[str] = field(default_factory=list)

    def launch(self, task: Task) -> Execution:
        self.launches.append(f"{task.id}/{task.attempt}")
        return self.inner.launch(task)

    def cancel(self, execution: str) -> None:
        self.inner.cancel(execution)

    def list_active(self) -> list[Execution]:
        return self.inner.list_active()

    def health(self) -> dict[str, Any]:
        return self.inner.health()


def make_service(home: Path, command: list[str] = EXITS, **settings: Any) -> Service:
    config = Settings(home=home, _env_file=None, **settings)  # type: ignore[call-arg]
    runner = CountingRunner(LocalJobRunner(config, command=command, grace_s=1.0))
    return Service(replace(build_backends(config), jobs=runner), config)


def load(target: str, signature_type: str, service: Service | None = None) -> tuple[FlaskClient, ModuleType]:
    """The function's app and its freshly loaded module (whose cached API is `service`'s, when given)."""
    app = create_app(target=target, source=SOURCE, signature_type=signature_type)
    module = sys.modules["main"]
    if service is not None:
        module._api = Api(service)  # type: ignore[attr-defined]
    return app.test_client(), module


@pytest.fixture
def service(home: Path) -> Service:
    return make_service(home)


def pubsub_event(data: bytes, attributes: dict[str, str] | None = None, message_id: str = "1001") -> CloudEvent:
    """A Pub/Sub messagePublished CloudEvent, as Eventarc delivers it."""
    ce_attributes = {
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": "//pubsub.googleapis.com/projects/demo/topics/tasks",
        "id": message_id,
    }
    message = {
        "data": base64.b64encode(data).decode(),
        "attributes": attributes or {},
        "messageId": message_id,
        "publishTime": "2026-11-24T10:00:00.000Z",
    }
    return CloudEvent(ce_attributes, {"message": message, "subscription": "projects/demo/subscriptions/eventarc-tasks"})


def deliver(client: FlaskClient, event: CloudEvent) -> int:
    headers, body = to_structured(event)
    return client.post("/", headers=headers, data=body).status_code


def published(service: Service) -> list[Delivery]:
    deliveries: list[Delivery] = service.backends.queue.pull(max_messages=100)  # type: ignore[attr-defined]
    return deliveries


def as_event(delivery: Delivery) -> CloudEvent:
    return pubsub_event(delivery.data, delivery.attributes, delivery.message_id)


# --- dispatch --------------------------------------------------------------------------------------


def test_a_dispatch_message_launches_one_execution_and_duplicate_deliveries_launch_none(service: Service) -> None:
    task, _ = service.submit(REQUEST)
    [delivery] = published(service)
    client, _ = load("dispatch", "cloudevent", service)

    assert [deliver(client, as_event(delivery)) for _ in range(3)] == [200, 200, 200]

    assert service.backends.jobs.launches == [f"{task.id}/1"]  # type: ignore[attr-defined]
    stored = service.store.get(task.id)
    assert stored is not None and stored.status is TaskStatus.DISPATCHED and stored.execution
    runner: LocalJobRunner = service.backends.jobs.inner  # type: ignore[attr-defined]
    execution = stored.execution
    assert wait_for(lambda: (e := runner.get(execution)) is not None and e.state == "succeeded")


def test_a_dispatch_message_in_the_attributes_alone_is_dispatched(service: Service) -> None:
    task, _ = service.submit(REQUEST)
    [delivery] = published(service)
    client, _ = load("dispatch", "cloudevent", service)
    assert deliver(client, pubsub_event(b"", delivery.attributes)) == 200
    assert service.backends.jobs.launches == [f"{task.id}/1"]  # type: ignore[attr-defined]


def test_a_task_request_published_onto_the_topic_is_stored_and_queued_once(service: Service) -> None:
    client, _ = load("dispatch", "cloudevent", service)
    event = pubsub_event(json.dumps(REQUEST).encode(), message_id="777")
    assert deliver(client, event) == 200
    assert deliver(client, event) == 200  # a redelivery of the same message

    [task] = service.store.list_tasks()
    assert task.status is TaskStatus.QUEUED and task.request.query == REQUEST["query"]
    [delivery] = published(service)
    assert delivery.attributes["task_id"] == task.id
    assert service.backends.jobs.launches == []  # type: ignore[attr-defined]


GARBAGE = [
    pytest.param(pubsub_event(b"\x00\x01 not json"), "not base64-encoded JSON", id="binary"),
    pytest.param(pubsub_event(b'{"hello": "world"}'), "neither a dispatch message nor a task request", id="unknown"),
    pytest.param(pubsub_event(b'{"query": ""}'), "query is empty", id="invalid-request"),
    pytest.param(pubsub_event(b"[" * 100_000 + b"]" * 100_000), "nests deeper than 32 levels", id="nested-100k"),
    pytest.param(
        pubsub_event(json.dumps({**REQUEST, "query": "\ud800"}).encode()), "not valid Unicode", id="lone-surrogate"
    ),
    pytest.param(
        CloudEvent({"type": "t", "source": "s"}, {"not": "pubsub"}), "no Pub/Sub 'message' object", id="not-pubsub"
    ),
]


@pytest.mark.parametrize(("event", "reason"), GARBAGE)
def test_an_unusable_message_is_logged_and_acked(
    service: Service, caplog: pytest.LogCaptureFixture, event: CloudEvent, reason: str
) -> None:
    client, _ = load("dispatch", "cloudevent", service)
    with caplog.at_level(logging.INFO, logger="agentfleet"):
        assert deliver(client, event) == 200
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    line = json.loads(JsonFormatter().format(record))
    assert line["severity"] == "ERROR" and reason in line["message"]
    assert service.store.list_tasks() == []


def test_a_launch_that_can_be_retried_raises_so_the_platform_redelivers(home: Path) -> None:
    service = make_service(home, command=[str(home / "no-such-agent")])
    over_http, _ = service.submit(REQUEST)
    called, _ = service.submit({**REQUEST, "repo_url": "https://github.com/example/other"})
    first, second = published(service)
    client, module = load("dispatch", "cloudevent", service)

    headers, body = to_structured(as_event(first))
    response = client.post("/", headers=headers, data=body)
    assert response.status_code == 500 and response.headers["X-Google-Status"] == "crash"
    with pytest.raises(RetryableError, match=f"could not launch task {called.id}"):
        module.dispatch(as_event(second))
    for task in (over_http, called):
        stored = service.store.get(task.id)
        assert stored is not None and stored.status is TaskStatus.QUEUED


def test_a_redelivery_after_a_failed_start_starts_the_agent(home: Path) -> None:
    agent = home / "agent.sh"
    service = make_service(home, command=[str(agent)])
    task, _ = service.submit(REQUEST)
    [delivery] = published(service)
    client, _ = load("dispatch", "cloudevent", service)
    assert deliver(client, as_event(delivery)) == 500
    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(0o755)
    assert deliver(client, as_event(delivery)) == 200
    stored = service.store.get(task.id)
    assert stored is not None and stored.execution
    runner: LocalJobRunner = service.backends.jobs.inner  # type: ignore[attr-defined]
    execution = stored.execution
    assert wait_for(lambda: (e := runner.get(execution)) is not None and e.state == "succeeded", timeout_s=2)


def test_each_outcome_is_logged_as_json_with_the_task_id(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    task, _ = service.submit(REQUEST)
    [delivery] = published(service)
    client, _ = load("dispatch", "cloudevent", service)
    with caplog.at_level(logging.INFO, logger="agentfleet.dispatch"):
        deliver(client, as_event(delivery))
        deliver(client, as_event(delivery))
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "agentfleet.dispatch"]
    assert [line["task_id"] for line in lines] == [task.id, task.id]
    assert "launched" in lines[0]["message"] and "duplicate" in lines[1]["message"]


# --- reap and the entry points' own service ------------------------------------------------------


def test_reap_requeues_a_silent_task_and_reports_it_as_json(home: Path) -> None:
    service = make_service(home, heartbeat_timeout_s=0.05)
    task, _ = service.submit(REQUEST)
    service.store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.RUNNING)
    client, _ = load("reap", "http", service)

    def reaped() -> dict[str, Any] | None:
        response = client.post("/")
        assert response.status_code == 200 and response.mimetype == "application/json"
        report: dict[str, Any] = response.get_json()
        return report if report["requeued"] else None

    report = wait_for(reaped)
    assert report == {"requeued": [task.id], "failed": [], "rescheduled": []}, "the requeue already published it"
    stored = service.store.get(task.id)
    assert stored is not None and (stored.status, stored.attempt) == (TaskStatus.QUEUED, 2)


def test_the_functions_build_their_service_from_the_environment_once(home: Path) -> None:
    client, module = load("orchestrate", "http")
    assert module._api is None
    response = client.post("/orchestrate", json=REQUEST)
    assert response.status_code == 202
    api = module._api
    assert api is not None and api.service.settings.home == home
    assert client.get(f"/tasks/{response.get_json()['task_id']}").status_code == 200
    assert module._api is api
    assert (home / "tasks.db").exists()


def test_concurrent_first_calls_build_the_service_once(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst at a cold start: one build, the other requests wait for it (budget: one)."""
    _, module = load("orchestrate", "http")
    built: list[int] = []
    real_build = module.build_backends

    def counting_build(settings: Settings) -> Any:
        built.append(1)
        time.sleep(0.2)  # a slow build, so that the others arrive while it runs
        return real_build(settings)

    monkeypatch.setattr(module, "build_backends", counting_build)
    with ThreadPoolExecutor(8) as pool:
        apis = list(pool.map(lambda _: module.get_api(), range(8)))
    assert len(built) == 1 and all(api is apis[0] for api in apis)


def test_a_service_that_cannot_be_built_is_a_logged_json_500(
    home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AGENTFLEET_BACKEND", "gcp")
    for target in ("orchestrate", "reap"):
        client, module = load(target, "http")
        with caplog.at_level(logging.ERROR, logger="agentfleet.functions"):
            response = client.post("/orchestrate", json=REQUEST)
        assert response.status_code == 500
        assert response.get_json() == {"error": "the server cannot start; see the server logs"}
        assert module._api is None
    failures = [r.exc_text or "" for r in caplog.records if r.name == "agentfleet.functions"]
    assert len(failures) == 2 and all("AGENTFLEET_BACKEND=gcp" in text for text in failures)
