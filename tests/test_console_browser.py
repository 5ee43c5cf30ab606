"""The web console in real headless Chromium (Debian's, driven by Playwright) against a real
`agentfleet serve` working tasks with the real agent and the scripted model.

The model holds a conversation whose query names a gate until the test opens it, so a page is
certainly open before the steps it must show live exist. A screenshot of a task page is kept
under $AGENTFLEET_TEST_ARTIFACTS (or the test's temp folder); its path is printed.

The follow-up and memory tests run once the API has those routes (POST /tasks/{id}/followup,
GET/DELETE /workspaces/{id}/memory): until then they are skipped saying so.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfleet.local.token import read_token
from agentfleet.testing.repos import make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call
from tests.mcp_servers.servers import need_binary
from tests.test_serve import server_process

playwright_sync = pytest.importorskip("playwright.sync_api")
from agentfleet.mcp_servers.computer import CHROMIUM, CHROMIUM_ARGS, INSTALL_HINT  # noqa: E402

FILES = {"app.py": "print('hello')\n"}
HOSTILE_OUTPUT = "<b id=from-tool>bold</b><script>window.pwned = 'tool'</script>"
SCRIPT = [
    reply(None, tool_call("exec", {"command": f"printf '%s\\n' '{HOSTILE_OUTPUT}'; echo \"print('bye')\" > app.py"})),
    reply("app.py now prints bye."),
]
HOSTILE_QUERY = (
    "<script>window.pwned = 'query'</script><img src=x onerror=\"window.pwned = 'img'\"> make app.py print bye"
)
TIMEOUT_MS = 60_000


class GatedLLM(ScriptedLLM):
    """The scripted model, answering each conversation by its turn; a conversation whose messages
    name a gate waits until the test opens it."""

    def __init__(self, script: list[dict], gates: dict[str, threading.Event]) -> None:
        super().__init__(script, per_turn=True)
        self.gates = gates

    def answer(self, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict, float]:
        said = json.dumps(body.get("messages", []))
        for word, gate in self.gates.items():
            if word in said:
                gate.wait(timeout=120)
        return super().answer(body, headers)


@dataclass
class Console:
    url: str
    token: str
    repo: str
    gates: dict[str, threading.Event]
    browser: Any
    page: Any
    artifacts: Path

    def sign_in(self, page: Any, token: str) -> None:
        page.goto(f"{self.url}/")
        assert "/console/login" in page.url, "a visitor who has not signed in is sent to the sign-in form"
        page.fill("#token", token)
        page.click("#sign-in")

    def submit(self, query: str) -> str:
        """Submit a task through the form; the task page's id."""
        self.page.goto(f"{self.url}/console/new")
        self.page.fill("#query", query)
        self.page.fill("#repos", self.repo)
        self.page.click("#submit")
        self.page.wait_for_url(f"{self.url}/console/tasks/*")
        return str(self.page.url.rsplit("/", 1)[1])

    def wait_for_status(self, status: str) -> None:
        self.page.wait_for_selector(f"#status:text-is('{status}')", timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    need_binary(CHROMIUM, INSTALL_HINT)
    tmp = tmp_path_factory.mktemp("console")
    artifacts = Path(os.environ.get("AGENTFLEET_TEST_ARTIFACTS") or tmp / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    repo = str(make_repo(tmp / "repos" / "app", FILES))
    gates = {"HOLD-LIVE": threading.Event(), "HOLD-CANCEL": threading.Event()}
    with (
        GatedLLM(SCRIPT, gates) as llm,
        server_process(tmp, llm.url) as (url, _),
        playwright_sync.sync_playwright() as driver,
    ):
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        token = read_token(tmp / "home") or ""
        signed_in = Console(url, token, repo, gates, browser, page, artifacts)
        try:
            signed_in.sign_in(page, token)
            page.wait_for_url(f"{url}/")
            yield signed_in
        finally:
            for gate in gates.values():
                gate.set()
            browser.close()


def test_a_person_signs_in_with_the_token_before_seeing_anything(console: Console) -> None:
    context = console.browser.new_context()
    page = context.new_page()
    console.sign_in(page, "not-the-token")
    assert "not the server's API token" in page.inner_text("main")
    assert context.cookies() == []
    page.fill("#token", console.token)
    page.click("#sign-in")
    page.wait_for_url(f"{console.url}/")
    [cookie] = context.cookies()
    assert cookie["name"] == "agentfleet_console" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    context.close()


def test_a_task_submitted_from_the_form_shows_its_steps_live_then_its_summary_and_diff(console: Console) -> None:
    page = console.page
    task_id = console.submit("make app.py print bye HOLD-LIVE")
    console.wait_for_status("RUNNING")  # the status itself arrived over the stream
    page.evaluate("window.notReloaded = true")
    assert page.locator(".step.kind-tool_result").count() == 0, "the model is held: no tool ran yet"
    console.gates["HOLD-LIVE"].set()
    page.wait_for_selector(".step.kind-tool_result", timeout=TIMEOUT_MS)
    assert page.evaluate("window.notReloaded") is True, "the step was appended live, not by a reload"
    page.wait_for_selector("#diff", timeout=TIMEOUT_MS)  # the end of the stream reloads the page
    assert page.inner_text("#status") == "SUCCEEDED"
    assert "app.py now prints bye." in page.inner_text("#result")
    added = page.locator("#diff tr.add").first
    assert "print('bye')" in added.inner_text()
    assert added.locator("span.tok-nb").count() >= 1, "the code is coloured by its language"
    assert page.locator("#diff tr.del").count() == 1
    shot = console.artifacts / f"console-task-{task_id}.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the task page: {shot}")
    assert shot.stat().st_size > 10_000


def test_a_query_and_tool_output_holding_markup_show_as_text_and_run_nothing(console: Console) -> None:
    page = console.page
    console.submit(HOSTILE_QUERY)
    page.wait_for_selector("#diff", timeout=TIMEOUT_MS)
    assert page.inner_text("#query") == HOSTILE_QUERY
    assert HOSTILE_OUTPUT in page.inner_text("#steps")
    assert page.locator("#from-tool").count() == 0 and page.locator("#steps img").count() == 0
    page.goto(f"{console.url}/")
    assert "<script>window.pwned" in page.inner_text("table.tasks")
    assert page.evaluate("window.pwned") is None


def test_a_running_task_is_cancelled_from_its_page(console: Console) -> None:
    page = console.page
    console.submit("HOLD-CANCEL make app.py print bye")
    console.wait_for_status("RUNNING")
    page.click("#cancel")
    console.wait_for_status("CANCELLED")
    page.goto(f"{console.url}/?status=CANCELLED")
    assert page.locator("tr.task").count() == 1


def test_without_the_token_the_state_changing_routes_refuse(console: Console) -> None:
    page = console.page
    page.goto(f"{console.url}/console/new")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}
    form = {"csrf": csrf, "query": "make app.py print bye", "repos": console.repo}
    owner = {"Authorization": f"Bearer {console.token}"}
    before = len(httpx.get(f"{console.url}/tasks", headers=owner).json()["tasks"])
    with httpx.Client(base_url=console.url) as anonymous:
        assert anonymous.post("/console/tasks", data=form).status_code == 401
        assert anonymous.post("/orchestrate", json={"query": "q", "repo_url": console.repo}).status_code == 401
    with httpx.Client(base_url=console.url, cookies=cookie) as signed_in:
        assert signed_in.post("/console/tasks", data={**form, "csrf": "forged"}).status_code == 403
        assert signed_in.post("/console/tasks", data={k: v for k, v in form.items() if k != "csrf"}).status_code == 403
        cross_site = signed_in.post("/console/tasks", data=form, headers={"Origin": "http://evil.example"})
        assert cross_site.status_code == 403
        assert signed_in.post("/orchestrate", json={"query": "q", "repo_url": console.repo}).status_code == 401
        assert signed_in.get("/tasks").status_code == 401, "the cookie is the console's, not the JSON API's"
    after = len(httpx.get(f"{console.url}/tasks", headers=owner).json()["tasks"])
    assert after == before, "no refused request made a task"


def test_a_follow_up_sent_from_a_finished_task_opens_the_new_task_linked_to_it(console: Console) -> None:
    page = console.page
    parent = console.submit("make app.py print bye")
    page.wait_for_selector("#followup", timeout=TIMEOUT_MS)
    page.fill("#followup-query", "now make it print bye twice")
    page.click("#send-followup")
    page.wait_for_url(f"{console.url}/console/tasks/*")
    child = page.url.rsplit("/", 1)[1]
    assert child != parent
    assert page.locator(f"a[href='/console/tasks/{parent}']").count() == 1, "the child names its parent"
    page.goto(f"{console.url}/console/tasks/{parent}")
    assert page.locator(f"a[href='/console/tasks/{child}']").count() == 1, "the parent names its follow-up"


def test_a_workspace_memory_shows_what_earlier_tasks_did_and_is_cleared(console: Console) -> None:
    page = console.page
    console.submit("make app.py print bye, remembered")
    page.wait_for_selector("#diff", timeout=TIMEOUT_MS)
    page.click("a[href^='/console/workspaces/']")
    assert "make app.py print bye, remembered" in page.inner_text("main")
    page.click("text=Clear the memory")
    page.wait_for_load_state()
    assert "make app.py print bye, remembered" not in page.inner_text("main")
