"""The web console through the real `orchestrate` function (functions-framework's app and test
client) on the local backends: who may see and change what, and that everything shown is text.
The browser's view of it is tests/test_console_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from agentfleet.api import Api
from agentfleet.api.console import CSP
from agentfleet.api.diffview import render_patch
from agentfleet.api.pages import sse_step
from agentfleet.api.session import Sessions
from agentfleet.service import Service
from agentfleet.tasks import EventKind, TaskEvent
from tests.test_api import QUICK, REQUEST, make_service, orchestrate

TOKEN = "s3cret-console"
HOSTILE = "<script>window.pwned = 1</script><img src=x onerror=alert(1)>"


@pytest.fixture
def service(home: Path) -> Service:
    return make_service(home, api_token=TOKEN)


@pytest.fixture
def client(service: Service) -> FlaskClient:
    return orchestrate(Api(service, QUICK))


def sign_in(client: FlaskClient) -> str:
    """Sign in with the token; the CSRF token of the session."""
    assert client.post("/console/login", data={"token": TOKEN, "next": "/"}).status_code == 303
    page = client.get("/console/new").get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', page)[1]  # type: ignore[index]


def submitted(client: FlaskClient, csrf: str, **form: str) -> str:
    response = client.post("/console/tasks", data={"csrf": csrf, "repos": REQUEST["repo_url"], **form})
    assert response.status_code == 303, response.get_data(as_text=True)
    return str(response.headers["Location"]).rsplit("/", 1)[1]


def test_the_function_serves_the_console_behind_a_sign_in_with_the_token(client: FlaskClient) -> None:
    first = client.get("/")
    assert first.status_code == 303 and first.headers["Location"] == "/console/login?next=/"
    wrong = client.post("/console/login", data={"token": "wrong", "next": "/"})
    assert wrong.status_code == 401 and "Set-Cookie" not in wrong.headers
    right = client.post("/console/login", data={"token": TOKEN, "next": "/"})
    cookie = right.headers["Set-Cookie"]
    assert right.status_code == 303 and right.headers["Location"] == "/"
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    listed = client.get("/")
    assert listed.status_code == 200 and "<h1>Tasks</h1>" in listed.get_data(as_text=True)
    assert listed.headers["Content-Security-Policy"] == CSP
    assert listed.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP


def test_the_console_cookie_opens_no_route_of_the_json_api(client: FlaskClient) -> None:
    sign_in(client)
    assert client.get("/tasks").status_code == 401
    assert client.post("/orchestrate", json=REQUEST).status_code == 401


def test_a_form_without_its_csrf_token_or_from_another_site_is_refused_and_changes_nothing(
    client: FlaskClient, service: Service
) -> None:
    csrf = sign_in(client)
    form = {"query": "fix it", "repos": REQUEST["repo_url"]}
    assert client.post("/console/tasks", data=form).status_code == 403
    assert client.post("/console/tasks", data={**form, "csrf": csrf + "x"}).status_code == 403
    cross = client.post("/console/tasks", data={**form, "csrf": csrf}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    fetched = client.post("/console/tasks", data={**form, "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403
    assert service.tasks() == []
    client.delete_cookie("agentfleet_console")
    assert client.post("/console/tasks", data={**form, "csrf": csrf}).status_code == 401
    assert service.tasks() == []


def test_a_program_with_the_bearer_token_may_use_the_forms_without_a_cookie(client: FlaskClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = client.post("/console/tasks", data={"query": "fix it", "repos": REQUEST["repo_url"]}, headers=headers)
    assert response.status_code == 303 and "Set-Cookie" not in response.headers


def test_a_server_without_a_token_serves_the_console_but_still_checks_csrf(home: Path) -> None:
    client = orchestrate(Api(make_service(home), QUICK))
    page = client.get("/console/new")
    assert page.status_code == 200 and "agentfleet_console=" in page.headers["Set-Cookie"]
    assert client.post("/console/tasks", data={"query": "q", "repos": REQUEST["repo_url"]}).status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True))[1]  # type: ignore[index]
    assert submitted(client, csrf, query="q")
    assert client.get("/console/login").status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_signing_in_goes_on_only_to_a_path_of_this_server(client: FlaskClient, target: str) -> None:
    response = client.post("/console/login", data={"token": TOKEN, "next": target})
    assert response.headers["Location"] == "/"


def test_a_form_the_api_refuses_shows_the_apis_reason_and_keeps_what_was_typed(client: FlaskClient) -> None:
    csrf = sign_in(client)
    response = client.post("/console/tasks", data={"csrf": csrf, "query": "keep me", "repos": "not a url"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "repository URL" in page and ">keep me</textarea>" in page


def test_the_form_options_reach_the_task(client: FlaskClient, service: Service) -> None:
    csrf = sign_in(client)
    form = {"query": "fix", "check": "pytest -q", "setup": "pip install -e .", "max_steps": "7", "push_branch": "on"}
    task = service.task(submitted(client, csrf, **form))
    options = task.request.options
    assert (options.check, options.setup, options.max_steps) == ("pytest -q", "pip install -e .", 7)
    assert options.push_branch and not options.network


def test_markup_in_a_query_and_in_tool_output_is_shown_as_text(client: FlaskClient, service: Service) -> None:
    csrf = sign_in(client)
    task_id = submitted(client, csrf, query=HOSTILE)
    service.store.append_event(task_id, EventKind.TOOL_RESULT, {"name": "exec", "output": HOSTILE, "step": 1})
    for path in ("/", f"/console/tasks/{task_id}"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>window.pwned" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.pwned" in page
    stream = sse_step(TaskEvent(task_id=task_id, seq=9, kind=EventKind.TOOL_RESULT, data={"output": "a\rid: 1\r\n"}))
    assert "\r" not in stream and "\nid: 1" not in stream.split("event: step", 1)[1]


def test_a_long_tool_output_is_folded(client: FlaskClient, service: Service) -> None:
    csrf = sign_in(client)
    task_id = submitted(client, csrf, query="q")
    output = "\n".join(f"line {n}" for n in range(100))
    service.store.append_event(task_id, EventKind.TOOL_RESULT, {"name": "exec", "output": output, "step": 1})
    page = client.get(f"/console/tasks/{task_id}").get_data(as_text=True)
    assert "<details><summary>line 0 <span" in page and "100 lines" in page


def test_a_task_is_cancelled_from_its_page(client: FlaskClient, service: Service) -> None:
    csrf = sign_in(client)
    task_id = submitted(client, csrf, query="q")
    assert client.post(f"/console/tasks/{task_id}/cancel", data={"csrf": csrf}).status_code == 303
    assert service.task(task_id).status.value == "CANCELLED"
    again = client.post(f"/console/tasks/{task_id}/cancel", data={"csrf": csrf})
    assert again.status_code == 409 and "can be cancelled" in again.get_data(as_text=True)


def test_a_patch_is_numbered_coloured_and_escaped() -> None:
    patch = (
        "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -3,2 +3,2 @@\n"
        ' x = 1\n-print("<script>")\n+print("ok")\n'
    )
    [file] = render_patch(patch)
    assert file.path == "app.py" and (file.added, file.removed) == (1, 1)
    numbered = [(line.kind, line.old, line.new) for line in file.lines if line.kind not in ("meta", "hunk")]
    assert numbered == [("context", 3, 3), ("del", 4, None), ("add", None, 4)]
    removed = next(line.html for line in file.lines if line.kind == "del")
    assert "&lt;script&gt;" in removed and "<script>" not in removed and 'class="tok-nb"' in removed


def test_a_session_is_refused_when_forged_expired_or_from_another_token() -> None:
    sessions = Sessions(b"one")
    session, cookie = sessions.issue(now=1000)
    assert sessions.read(cookie, now=1001) == session
    assert sessions.read(cookie, now=session.expires + 1) is None
    assert Sessions(b"two").read(cookie, now=1001) is None
    nonce, expires, mac = cookie.split(".")
    assert sessions.read(f"{nonce}.{int(expires) + 3600}.{mac}", now=1001) is None
    assert sessions.csrf_matches(session, sessions.csrf(session))
    assert not Sessions(b"two").csrf_matches(session, sessions.csrf(session))
