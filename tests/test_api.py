"""The HTTP API through the real `orchestrate` function: functions-framework's own app and test
client, the local backends in a temp AGENTFLEET_HOME, and an agent command that only exits."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from functions_framework import create_app
from jsonschema import Draft202012Validator
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Request

from agentfleet.api import Api
from agentfleet.api.bodies import MAX_BODY_BYTES
from agentfleet.api.events import StreamConfig
from agentfleet.api.http import ROUTES
from agentfleet.api.openapi import openapi_document
from agentfleet.backends import build_backends
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.memory import MemoryEntry
from agentfleet.ports import DispatchMessage
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, TaskEvent, TaskStatus

SOURCE = str(Path(__file__).parents[1] / "functions" / "main.py")
QUICK = StreamConfig(poll_s=0.01, keepalive_s=15.0, settle_s=0.0)
REQUEST = {"query": "fix the failing test", "repo_url": "https://github.com/example/project"}


def make_service(home: Path, command: list[str] | None = None, **settings: Any) -> Service:
    """The local backends in `home`, with a runner whose agent only exits."""
    config = Settings(home=home, _env_file=None, **settings)  # type: ignore[call-arg]
    backends = build_backends(config)
    runner = LocalJobRunner(config, command=command or [sys.executable, "-c", "pass"], grace_s=1.0)
    return Service(replace(backends, jobs=runner), config)


def orchestrate(api: Api) -> FlaskClient:
    app = create_app(target="orchestrate", source=SOURCE, signature_type="http")
    sys.modules["main"]._api = api  # type: ignore[attr-defined]  # the function module's cached API
    return app.test_client()


@pytest.fixture
def service(home: Path) -> Service:
    return make_service(home)


@pytest.fixture
def client(service: Service) -> FlaskClient:
    return orchestrate(Api(service, QUICK))


# --- the document ----------------------------------------------------------------------------


def documented_schema(method: str, path: str, status: int) -> dict[str, Any]:
    """The schema openapi.json gives for this response (an unknown route answers ErrorBody)."""
    doc = openapi_document()
    try:
        rule, _ = ROUTES.bind("localhost").match(path.split("?")[0], method, return_rule=True)
    except Exception:
        return {"$ref": "#/components/schemas/ErrorBody"}
    template = rule.rule.replace("<", "{").replace(">", "}")
    responses = doc["paths"][template][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {template} answered {status}, which openapi.json does not list"
    return dict(responses[str(status)]["content"]["application/json"]["schema"])


def assert_documented(response: TestResponse, method: str, path: str) -> Any:
    """The response is JSON of the shape openapi.json documents; returns the body."""
    assert response.mimetype == "application/json"
    body = response.get_json()
    schema = {**documented_schema(method, path, response.status_code), "components": openapi_document()["components"]}
    Draft202012Validator(schema).validate(body)
    return body


def call(client: FlaskClient, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = client.open(path, method=method, **kwargs)
    return response.status_code, assert_documented(response, method, path)


def test_openapi_json_is_an_openapi_3_document_listing_every_route(client: FlaskClient) -> None:
    status, doc = call(client, "GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert {"title", "version"} <= doc["info"].keys()
    for rule in ROUTES.iter_rules():
        template = rule.rule.replace("<", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = doc["paths"][template][method.lower()]
            assert operation["responses"], f"{method} {template} documents no response"
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/health"]["get"]["security"] == []


# --- submit and read ---------------------------------------------------------------------------


def test_a_submitted_task_is_accepted_queued_and_published(client: FlaskClient, service: Service) -> None:
    status, body = call(client, "POST", "/orchestrate", json=REQUEST)
    assert status == 202
    task_id = body["task_id"]
    assert body["status"] == "QUEUED"
    assert body["links"] == {
        "self": f"/tasks/{task_id}",
        "events": f"/tasks/{task_id}/events",
        "cancel": f"/tasks/{task_id}/cancel",
    }
    task = service.store.get(task_id)
    assert task is not None and task.status is TaskStatus.QUEUED
    assert body["workspace_id"] == task.workspace_id
    [delivery] = service.backends.queue.pull()  # type: ignore[attr-defined]
    assert DispatchMessage.model_validate_json(delivery.data).task_id == task_id


def test_a_repeated_idempotency_key_returns_the_first_task_and_publishes_nothing(
    client: FlaskClient, service: Service
) -> None:
    first_status, first = call(client, "POST", "/orchestrate", json={**REQUEST, "idempotency_key": "build-42"})
    again_status, again = call(client, "POST", "/orchestrate", json={**REQUEST, "idempotency_key": "build-42"})
    assert (first_status, again_status) == (202, 200)
    assert again["task_id"] == first["task_id"]
    assert service.backends.queue.pending() == 1  # type: ignore[attr-defined]


def test_an_idempotency_key_reused_for_a_different_request_is_a_409(client: FlaskClient, service: Service) -> None:
    call(client, "POST", "/orchestrate", json={**REQUEST, "idempotency_key": "build-43"})
    status, body = call(
        client, "POST", "/orchestrate", json={**REQUEST, "query": "other", "idempotency_key": "build-43"}
    )
    assert status == 409 and "was used for a different request" in body["error"]
    assert len(service.store.list_tasks()) == 1


def test_a_workspace_is_reset_unless_a_task_of_it_is_running(client: FlaskClient, service: Service) -> None:
    _, submitted = call(client, "POST", "/orchestrate", json=REQUEST)
    workspace = submitted["workspace_id"]
    status, body = call(client, "POST", f"/workspaces/{workspace}/reset")
    assert (status, body) == (200, {"workspace_id": workspace, "removed": []}), "a queued task does not hold it"
    service.store.transition(submitted["task_id"], [TaskStatus.QUEUED], TaskStatus.DISPATCHED, attempt=1)
    status, body = call(client, "POST", f"/workspaces/{workspace}/reset")
    assert status == 409 and "dispatched or running" in body["error"]
    status, body = call(client, "POST", "/workspaces/.../reset")
    assert status == 400 and "is not one" in body["error"]


def test_a_workspaces_memory_is_listed_searched_and_cleared(client: FlaskClient, service: Service) -> None:
    memory = service.backends.memory
    memory.add(MemoryEntry(workspace_id="calc-0123456789", kind="task", task_id="t1", query="fix add", answer="ok"))
    memory.add(MemoryEntry(workspace_id="calc-0123456789", kind="note", note="tests run with make check"))
    status, body = call(client, "GET", "/workspaces/calc-0123456789/memory")
    assert status == 200 and [e["kind"] for e in body["entries"]] == ["note", "task"]
    status, body = call(client, "GET", "/workspaces/calc-0123456789/memory?q=add&limit=5")
    assert status == 200 and [e["task_id"] for e in body["entries"]] == ["t1"]
    status, body = call(client, "DELETE", "/workspaces/calc-0123456789/memory")
    assert (status, body) == (200, {"workspace_id": "calc-0123456789", "removed": 2})
    status, body = call(client, "GET", "/workspaces/calc-0123456789/memory")
    assert (status, body["entries"]) == (200, [])
    status, body = call(client, "DELETE", "/workspaces/.../memory")
    assert status == 400 and "is not one" in body["error"]
    status, body = call(client, "GET", "/workspaces/calc-0123456789/memory?limit=0")
    assert status == 400


def test_an_input_file_is_uploaded_raw_or_as_a_form_and_a_task_names_it(client: FlaskClient, service: Service) -> None:
    raw = client.post("/files?name=repo1_readme.md", data=b"# one\n", content_type="application/octet-stream")
    assert raw.status_code == 201, raw.get_json()
    assert raw.get_json() == {"key": "inputs/repo1_readme.md", "name": "repo1_readme.md", "size": 6}
    form = client.post("/files", data={"file": (io.BytesIO(b"# two\n"), "repo2_readme.md")})
    assert form.status_code == 201 and form.get_json()["key"] == "inputs/repo2_readme.md"
    batch = client.post("/files?name=b1/notes.txt", data=b"n", content_type="text/plain")
    assert batch.get_json()["key"] == "inputs/b1/notes.txt"
    assert service.backends.artifacts.get_bytes("inputs/repo2_readme.md") == b"# two\n"
    seed = {
        "query": "Compare the README files from multiple repositories",
        "files": ["repo1_readme.md", "repo2_readme.md"],
    }
    submitted = client.post("/orchestrate", json=seed)
    assert submitted.status_code == 202, submitted.get_json()
    task = service.task(submitted.get_json()["task_id"])
    assert task.workspace_id == f"scratch-{task.id}" and task.request.files == seed["files"]


@pytest.mark.parametrize(
    ("url", "data", "content_type", "status", "says"),
    [
        ("/files", b"x", "application/octet-stream", 400, "add ?name="),
        ("/files?name=../etc/passwd", b"x", "application/octet-stream", 400, "is not allowed"),
        ("/files?name=.env", b"x", "application/octet-stream", 400, "is not allowed"),
        ("/files?name=a/b/c.md", b"x", "application/octet-stream", 400, "at most one folder"),
        ("/files?name=x.md", {"other": (io.BytesIO(b"x"), "x.md")}, None, 400, "no `file` part"),
    ],
)
def test_a_bad_upload_gets_a_400_saying_what_to_fix(
    client: FlaskClient, url: str, data: Any, content_type: str | None, status: int, says: str
) -> None:
    answer = client.post(url, data=data, content_type=content_type) if content_type else client.post(url, data=data)
    assert answer.status_code == status and says in answer.get_json()["error"]


def test_an_upload_over_the_limit_is_a_413(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agentfleet.api.http.MAX_UPLOAD_BYTES", 1000)
    answer = client.post("/files?name=big.bin", data=b"x" * 5000, content_type="application/octet-stream")
    assert answer.status_code == 413 and "larger than 1000 bytes" in answer.get_json()["error"]


def test_a_task_needs_a_repository_or_input_files(client: FlaskClient) -> None:
    answer = client.post("/orchestrate", json={"query": "do something"})
    assert answer.status_code == 400 and "or input files" in answer.get_json()["error"]
    pushed = client.post("/orchestrate", json={"query": "x", "files": ["a.md"], "options": {"push_branch": True}})
    assert pushed.status_code == 400 and "push_branch needs a repository" in pushed.get_json()["error"]


def test_a_task_is_read_back_and_tasks_are_listed_by_status_and_workspace(client: FlaskClient) -> None:
    _, one = call(client, "POST", "/orchestrate", json=REQUEST)
    _, two = call(client, "POST", "/orchestrate", json={**REQUEST, "repo_url": "https://github.com/example/other"})
    call(client, "POST", f"/tasks/{two['task_id']}/cancel")

    status, task = call(client, "GET", f"/tasks/{one['task_id']}")
    assert status == 200 and task["id"] == one["task_id"] and task["request"]["query"] == REQUEST["query"]

    def ids(query: str) -> list[str]:
        status, body = call(client, "GET", f"/tasks{query}")
        assert status == 200
        return [t["id"] for t in body["tasks"]]

    assert ids("") == [two["task_id"], one["task_id"]]
    assert ids("?status=QUEUED") == [one["task_id"]]
    assert ids("?status=cancelled") == [two["task_id"]]
    assert ids(f"?workspace={one['workspace_id']}") == [one["task_id"]]
    assert ids("?limit=1") == [two["task_id"]]


def test_events_come_in_pages_until_the_task_has_ended(client: FlaskClient, service: Service) -> None:
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    task_id = created["task_id"]
    for n in range(4):
        service.store.append_event(task_id, EventKind.LOG, {"line": f"step {n}"})

    _, page = call(client, "GET", f"/tasks/{task_id}/events?after=0&limit=3")
    assert [e["seq"] for e in page["events"]] == [1, 2, 3]
    assert (page["next_after"], page["final"]) == (3, False)
    _, page = call(client, "GET", f"/tasks/{task_id}/events?after=3")
    assert [e["data"].get("line") for e in page["events"]] == ["step 2", "step 3"]
    assert (page["next_after"], page["final"]) == (5, False)

    call(client, "POST", f"/tasks/{task_id}/cancel")
    _, page = call(client, "GET", f"/tasks/{task_id}/events?after=5")
    assert [e["data"] for e in page["events"]] == [{"status": "CANCELLED"}]
    assert (page["next_after"], page["final"]) == (6, True)


def test_cancel_answers_the_task_then_409_once_it_has_ended(client: FlaskClient) -> None:
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    status, task = call(client, "POST", f"/tasks/{created['task_id']}/cancel")
    assert status == 200 and task["status"] == "CANCELLED"
    status, body = call(client, "POST", f"/tasks/{created['task_id']}/cancel")
    assert status == 409
    assert "CANCELLED" in body["error"] and "only a QUEUED, DISPATCHED or RUNNING task" in body["error"]


def test_containers_lists_the_active_executions_by_workspace(home: Path) -> None:
    service = make_service(home, command=[sys.executable, "-c", "import time; time.sleep(60)"])
    client = orchestrate(Api(service, QUICK))
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    task = service.store.get(created["task_id"])
    assert task is not None
    execution = service.backends.jobs.launch(task)
    try:
        status, body = call(client, "GET", "/containers")
        assert status == 200 and body["count"] == 1
        assert [e["name"] for e in body["workspaces"][task.workspace_id]] == [execution.name]
    finally:
        service.backends.jobs.cancel(execution.name)


def test_health_answers_without_a_token_with_no_details_and_503_when_a_backend_is_not(home: Path) -> None:
    service = make_service(home, api_token="s3cret")
    status, body = call(orchestrate(Api(service, QUICK)), "GET", "/health")
    assert (status, body) == (200, {"status": "ok", "backends": {}}), "no paths or counts without the token"
    bearer = {"Authorization": "Bearer s3cret"}
    status, body = call(orchestrate(Api(service, QUICK)), "GET", "/health", headers=bearer)
    assert status == 200 and body["status"] == "ok"
    assert set(body["backends"]) == {"store", "queue", "jobs"}

    class DownRunner(LocalJobRunner):
        def health(self) -> dict[str, Any]:
            return {"ok": False, "error": "cannot reach the jobs API"}

    down = replace(service.backends, jobs=DownRunner(service.settings))
    status, body = call(orchestrate(Api(Service(down, service.settings), QUICK)), "GET", "/health", headers=bearer)
    assert status == 503 and body["status"] == "degraded"
    assert body["backends"]["jobs"]["ok"] is False
    status, body = call(orchestrate(Api(Service(down, service.settings), QUICK)), "GET", "/health")
    assert (status, body) == (503, {"status": "degraded", "backends": {}})


# --- the event stream ----------------------------------------------------------------------------


def sse_blocks(response: TestResponse) -> Iterator[dict[str, str]]:
    """Each SSE block of a streamed response as {field: value} (a comment as {"comment": ...})."""
    buffer = ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields: dict[str, str] = {}
            for line in block.splitlines():
                name, _, value = line.partition(":")
                fields[name or "comment"] = value.strip()
            yield fields


def finish_slowly(service: Service, task_id: str, lines: int) -> threading.Thread:
    """From another thread: run the task, log `lines` lines, succeed it."""

    def work() -> None:
        service.store.transition(task_id, [TaskStatus.QUEUED], TaskStatus.RUNNING)
        service.store.append_event(task_id, EventKind.STATUS, {"status": "RUNNING"})
        for n in range(lines):
            service.store.append_event(task_id, EventKind.LOG, {"line": f"line {n}"})
            time.sleep(0.005)
        service.store.transition(task_id, [TaskStatus.RUNNING], TaskStatus.SUCCEEDED)
        service.store.append_event(task_id, EventKind.STATUS, {"status": "SUCCEEDED"})

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_the_event_stream_sends_every_event_in_order_then_an_end_event(service: Service) -> None:
    client = orchestrate(Api(service, StreamConfig(poll_s=0.01, keepalive_s=15.0, settle_s=0.2)))
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    task_id = created["task_id"]
    response = client.get(f"/tasks/{task_id}/events", headers={"Accept": "text/event-stream"}, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    thread = finish_slowly(service, task_id, lines=20)
    blocks = list(sse_blocks(response))
    thread.join()

    *events, end = blocks
    assert [int(b["id"]) for b in events] == list(range(1, 24))
    assert [b["event"] for b in events] == ["status", "status", *["log"] * 20, "status"]
    assert [json.loads(b["data"])["seq"] for b in events] == list(range(1, 24))
    assert json.loads(events[-1]["data"])["data"] == {"status": "SUCCEEDED"}
    assert end["event"] == "end" and json.loads(end["data"]) == {"status": "SUCCEEDED", "last_seq": 23}


def test_the_event_stream_resumes_after_the_last_event_id(client: FlaskClient, service: Service) -> None:
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    task_id = created["task_id"]
    for n in range(5):
        service.store.append_event(task_id, EventKind.LOG, {"line": f"line {n}"})
    service.cancel(task_id)
    url = f"/tasks/{task_id}/events"

    def ids(**kwargs: Any) -> list[str]:
        response = client.get(url, buffered=False, **kwargs)
        return [b.get("id", b.get("event", "")) for b in sse_blocks(response)]

    assert ids(headers={"Accept": "text/event-stream", "Last-Event-ID": "4"}) == ["5", "6", "7", "end"]
    assert ids(headers={"Accept": "text/event-stream"}, query_string={"after": "6"}) == ["7", "end"]
    # The header wins over ?after, as a reconnecting EventSource sends both.
    headers = {"Accept": "text/event-stream", "Last-Event-ID": "6"}
    assert ids(headers=headers, query_string={"after": "1"}) == ["7", "end"]


def test_a_silent_stream_sends_keep_alive_comments(service: Service) -> None:
    client = orchestrate(Api(service, StreamConfig(poll_s=0.01, keepalive_s=0.02, settle_s=0.0)))
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    headers = {"Accept": "text/event-stream"}
    response = client.get(f"/tasks/{created['task_id']}/events?after=1", headers=headers, buffered=False)
    stream = sse_blocks(response)
    assert next(stream) == {"comment": "keep-alive"}
    service.cancel(created["task_id"])
    assert [b["event"] for b in stream if "event" in b] == ["status", "end"]


# --- bad input ---------------------------------------------------------------------------------


def big_body(size: int) -> bytes:
    return json.dumps({**REQUEST, "query": "x" * size}).encode()


def with_raw(field: str, raw: str) -> bytes:
    """The good request with `field` set to raw JSON text (which json.dumps could not write)."""
    return json.dumps({**REQUEST, field: "RAW"}).replace('"RAW"', raw).encode()


HOSTILE_POSTS = [
    pytest.param(with_raw("options", "[" * 100_000 + "]" * 100_000), "application/json", 400,
                 "nests deeper than 32 levels", id="arrays-100k-deep"),
    pytest.param(with_raw("options", '{"a": ' * 5000 + "1" + "}" * 5000), "application/json", 400,
                 "nests deeper than 32 levels", id="objects-5000-deep"),
    pytest.param(with_raw("options", '{"max_steps": ' + "9" * 5000 + "}"), "application/json", 400,
                 "cannot be read", id="5000-digit-integer"),
    pytest.param(with_raw("query", '"fix \\ud800 it"'), "application/json", 400,
                 "query is not valid Unicode text", id="lone-surrogate"),
    pytest.param(json.dumps({**REQUEST, "files": ["../../etc/passwd"]}).encode(), "application/json", 400,
                 "not a valid artifact key", id="file-escapes"),
    pytest.param(json.dumps({**REQUEST, "files": ["gs://bucket/a/../../x"]}).encode(), "application/json", 400,
                 "not a valid artifact key", id="gs-file-escapes"),
]  # fmt: skip


BAD_POSTS = [
    pytest.param(b'{"query": "fix it", ', "application/json", 400, "not valid JSON", id="malformed"),
    pytest.param(b"", "application/json", 400, "body is empty", id="empty"),
    pytest.param(b'["fix it"]', "application/json", 400, "must be a JSON object", id="not-an-object"),
    pytest.param(b"\xff\xfe{}", "application/json", 400, "UTF-8", id="not-utf8"),
    pytest.param(
        json.dumps({**REQUEST, "colour": "red"}).encode(), "application/json", 400, "colour", id="unknown-field"
    ),
    pytest.param(
        json.dumps({**REQUEST, "options": {"max_steps": "many"}}).encode(),
        "application/json",
        400,
        "options.max_steps",
        id="wrong-type",
    ),
    pytest.param(json.dumps({"query": "fix it"}).encode(), "application/json", 400, "repo_url or repos", id="no-repo"),
    pytest.param(
        json.dumps({**REQUEST, "repo_url": "ftp://example.com/x"}).encode(),
        "application/json",
        400,
        "scheme 'ftp' is not supported",
        id="bad-url",
    ),
    pytest.param(json.dumps(REQUEST).encode(), "text/plain", 415, "Content-Type: application/json", id="text"),
    pytest.param(json.dumps(REQUEST).encode(), None, 415, "Content-Type: application/json", id="no-type"),
    pytest.param(big_body(MAX_BODY_BYTES), "application/json", 413, "larger than", id="too-large"),
    *HOSTILE_POSTS,
]


@pytest.mark.parametrize(("body", "content_type", "status", "hint"), BAD_POSTS)
def test_a_bad_submission_gets_a_json_error_saying_what_to_fix(
    client: FlaskClient, service: Service, body: bytes, content_type: str | None, status: int, hint: str
) -> None:
    response = client.post("/orchestrate", data=body, content_type=content_type)
    assert response.status_code == status
    error = assert_documented(response, "POST", "/orchestrate")["error"]
    assert hint in error and "Traceback" not in response.text
    assert service.store.list_tasks() == []


def test_a_body_without_a_length_is_cut_at_the_limit(client: FlaskClient) -> None:
    """A chunked body (no Content-Length) is read only up to the limit, then refused."""
    builder = EnvironBuilder(path="/orchestrate", method="POST", content_type="application/json")
    environ = builder.get_environ()
    environ.pop("CONTENT_LENGTH", None)
    stream = io.BytesIO(big_body(4 * MAX_BODY_BYTES))
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"})
    response = client.open(Request(environ))
    assert response.status_code == 413
    assert stream.tell() <= MAX_BODY_BYTES + 1
    assert "larger than" in response.get_json()["error"]


BAD_GETS = [
    pytest.param("GET", "/nowhere", 404, "no route GET /nowhere", id="unknown-route"),
    pytest.param("GET", "/tasks/nope", 404, "no task nope", id="unknown-task"),
    pytest.param("GET", "/tasks/nope/events", 404, "no task nope", id="unknown-task-events"),
    pytest.param("POST", "/tasks/nope/cancel", 404, "no task nope", id="unknown-task-cancel"),
    pytest.param("GET", "/tasks?status=DONE", 400, "QUEUED, DISPATCHED, RUNNING, SUCCEEDED", id="bad-status"),
    pytest.param("GET", "/tasks?limit=lots", 400, "'limit' must be a whole number", id="bad-limit"),
    pytest.param("GET", "/tasks?limit=0", 400, "at least 1", id="zero-limit"),
    pytest.param("DELETE", "/tasks/abc", 405, "use GET", id="wrong-method"),
    pytest.param("GET", "/orchestrate", 405, "use POST", id="get-orchestrate"),
]


@pytest.mark.parametrize(("method", "path", "status", "hint"), BAD_GETS)
def test_a_bad_request_gets_a_json_error_saying_what_to_fix(
    client: FlaskClient, method: str, path: str, status: int, hint: str
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == status
    assert hint in assert_documented(response, method, path)["error"]
    if status == 405:
        assert "Allow" in response.headers


def test_a_bad_event_cursor_is_a_400(client: FlaskClient) -> None:
    _, created = call(client, "POST", "/orchestrate", json=REQUEST)
    url = f"/tasks/{created['task_id']}/events"
    status, body = call(client, "GET", f"{url}?after=-1")
    assert status == 400 and "'after'" in body["error"]
    response = client.get(url, headers={"Accept": "text/event-stream", "Last-Event-ID": "x"})
    assert response.status_code == 400 and "Last-Event-ID" in response.get_json()["error"]


def test_an_unexpected_failure_is_logged_and_answered_with_a_bare_500(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenRunner(LocalJobRunner):
        def list_active(self) -> list[Any]:
            raise RuntimeError("database password is hunter2")

    broken = Service(replace(service.backends, jobs=BrokenRunner(service.settings)), service.settings)
    with caplog.at_level(logging.ERROR, logger="agentfleet.api"):
        response = orchestrate(Api(broken, QUICK)).get("/containers")
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error; see the server logs"}
    [record] = [r for r in caplog.records if r.name == "agentfleet.api"]
    assert record.exc_info is not None and "GET /containers" in record.getMessage()


# --- auth --------------------------------------------------------------------------------------


def test_with_a_token_every_route_but_health_needs_the_bearer_token(home: Path) -> None:
    client = orchestrate(Api(make_service(home, api_token="s3cret"), QUICK))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        response = client.get("/tasks", headers=headers)
        assert response.status_code == 401
        assert "Authorization: Bearer" in assert_documented(response, "GET", "/tasks")["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/orchestrate", json=REQUEST).status_code == 401
    assert client.get("/nowhere").status_code == 401
    assert client.get("/tasks", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_a_stream_that_fails_midway_ends_and_is_logged(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    class FailingEvents:
        def __init__(self, store: Any) -> None:
            self.store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        def events(self, task_id: str, after: int = 0, limit: int = 1000) -> list[TaskEvent]:
            raise OSError("disk I/O error")

    task, _ = service.submit(REQUEST)
    broken = Service(replace(service.backends, store=FailingEvents(service.store)), service.settings)  # type: ignore[arg-type]
    client = orchestrate(Api(broken, QUICK))
    with caplog.at_level(logging.ERROR, logger="agentfleet.api"):
        response = client.get(f"/tasks/{task.id}/events", headers={"Accept": "text/event-stream"}, buffered=False)
        assert response.status_code == 200 and list(sse_blocks(response)) == []
    [record] = [r for r in caplog.records if r.name == "agentfleet.api"]
    assert record.exc_info is not None and task.id in record.getMessage()


def test_an_unreachable_store_is_a_documented_503_with_retry_after(service: Service) -> None:
    class Unreachable:
        def __init__(self, store: Any) -> None:
            self.store = store

        def __getattr__(self, name: str) -> Any:
            return getattr(self.store, name)

        def get(self, task_id: str) -> None:
            raise ConnectionError("firestore is unreachable")

    broken = Service(replace(service.backends, store=Unreachable(service.store)), service.settings)  # type: ignore[arg-type]
    response = orchestrate(Api(broken, QUICK)).get("/tasks/some-task")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "unreachable" in assert_documented(response, "GET", "/tasks/{task_id}")["error"]
