"""The computer control server: Debian's Chromium through Playwright, on pages this test serves on
loopback; in-process through the MCP client, once over streamable HTTP."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent

from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.mcp_servers.computer import Browser, BrowserConfig, build_server
from tests.mcp_servers.servers import http_server, need_binary

APP = b"""<!doctype html><html><head><title>Todo</title></head><body>
<h1>Todo</h1>
<label>New item <input id="item" name="item"></label>
<button id="add" onclick="add()">Add</button>
<ul id="list"></ul>
<script>
function add() {
  const li = document.createElement('li');
  li.textContent = document.getElementById('item').value;
  document.getElementById('list').appendChild(li);
}
</script></body></html>"""


class Site:
    """Pages on one loopback address: `/` the app, `/hang` never answers, `/away?to=URL` redirects,
    `/pixel` an image; `hits` records the paths asked for."""

    def __init__(self, host: str) -> None:
        self.hits: list[str] = []
        self.release = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                if self.path == "/hang":
                    site.release.wait(60)
                    return
                if self.path.startswith("/away?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.removeprefix("/away?to="))
                    self.end_headers()
                    return
                body = APP if self.path == "/" else b"<p>other page</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def chromium() -> str:
    return need_binary("/usr/bin/chromium", "apt-get install chromium, or make system-deps")


@pytest.fixture
def site() -> Iterator[Site]:
    site = Site("127.0.0.1")
    yield site
    site.stop()


@pytest.fixture
def elsewhere() -> Iterator[Site]:
    """A host that is not allowed by default: another loopback address (reachable, but not 127.0.0.1)."""
    site = Site("127.0.0.2")
    yield site
    site.stop()


def calls(browser: Browser, *steps: tuple[str, dict[str, Any]]) -> list[CallToolResult]:
    async def go() -> list[CallToolResult]:
        async with Client(build_server(browser)) as client:
            return [await client.call_tool(tool, arguments) for tool, arguments in steps]

    return anyio.run(go)


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def browser(tmp_path: Path | None = None, **config: Any) -> Browser:
    store = LocalArtifactStore(tmp_path / "artifacts") if tmp_path is not None else None
    return Browser(BrowserConfig(**config), store)


def test_the_server_offers_the_browser_tools(chromium) -> None:
    async def go() -> set[str]:
        async with Client(build_server(browser())) as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert anyio.run(go) == {"open", "screenshot", "click", "type", "page_text", "accessibility_tree", "evaluate"}


def test_the_agent_can_use_a_web_app_it_serves_on_loopback(chromium, site, tmp_path) -> None:
    opened, typed, clicked, text, tree, value, shot = calls(
        browser(tmp_path),
        ("open", {"url": site.url + "/"}),
        ("type", {"selector": "#item", "text": "buy milk"}),
        ("click", {"selector": "role=button[name='Add']"}),
        ("page_text", {}),
        ("accessibility_tree", {}),
        ("evaluate", {"script": "document.querySelectorAll('#list li').length"}),
        ("screenshot", {}),
    )
    for result in (opened, typed, clicked, text, tree, value, shot):
        assert not result.is_error, text_of(result)
    assert "HTTP 200" in text_of(opened) and "'Todo'" in text_of(opened)
    assert "buy milk" in text_of(text)
    assert '- button "Add"' in text_of(tree) and "- listitem: buy milk" in text_of(tree)
    assert text_of(value) == "1"
    (image,) = [b for b in shot.content if isinstance(b, ImageContent)]
    png = base64.b64decode(image.data)
    assert png.startswith(b"\x89PNG")
    (link,) = [b for b in shot.content if isinstance(b, ResourceLink)]
    assert link.uri.startswith("file://") and link.uri.endswith(".png")
    assert [p.read_bytes() for p in (tmp_path / "artifacts").rglob("*.png")] == [png]


def test_a_url_outside_loopback_is_refused_and_the_server_goes_on(chromium, site, elsewhere) -> None:
    far, file, other, near = calls(
        browser(),
        ("open", {"url": "http://example.com/"}),
        ("open", {"url": "file:///etc/passwd"}),
        ("open", {"url": elsewhere.url + "/"}),
        ("open", {"url": site.url + "/"}),
    )
    assert far.is_error and "'example.com' is not reachable" in text_of(far) and "--allow-host" in text_of(far)
    assert file.is_error and "not an http(s) URL" in text_of(file)
    assert other.is_error and "'127.0.0.2' is not reachable" in text_of(other)
    assert not near.is_error, text_of(near)
    assert elsewhere.hits == []


def test_a_redirect_a_subresource_or_a_script_cannot_reach_a_host_not_allowed(chromium, site, elsewhere) -> None:
    away, page, fetched = calls(
        browser(),
        ("open", {"url": f"{site.url}/away?to={elsewhere.url}/landing"}),
        ("open", {"url": site.url + "/"}),
        ("evaluate", {"script": f"fetch('{elsewhere.url}/data').then(() => 'reached', e => 'failed: ' + e)"}),
    )
    assert away.is_error, text_of(away)
    assert not page.is_error, text_of(page)
    assert "failed" in text_of(fetched) and "blocked requests" in text_of(fetched)
    assert elsewhere.hits == [], "nothing reached the host that is not allowed"


def test_an_allowed_host_is_reachable(chromium, elsewhere) -> None:
    (opened,) = calls(browser(allow_hosts=["127.0.0.2"]), ("open", {"url": elsewhere.url + "/"}))
    assert not opened.is_error, text_of(opened)
    assert elsewhere.hits == ["/"]


def test_a_page_that_never_loads_is_a_timeout_and_the_server_goes_on(chromium, site) -> None:
    hung, opened = calls(
        browser(navigation_timeout_s=1.5),
        ("open", {"url": site.url + "/hang"}),
        ("open", {"url": site.url + "/"}),
    )
    assert hung.is_error and "did not load within 1.5s" in text_of(hung)
    assert not opened.is_error, text_of(opened)


def test_a_missing_element_a_bad_script_and_an_unstarted_page_are_tool_errors(chromium, site) -> None:
    missing, broken, empty, ok = calls(
        browser(action_timeout_s=1),
        ("open", {"url": site.url + "/"}),
        ("click", {"selector": "#no-such-button"}),
        ("evaluate", {"script": "throw new Error('boom')"}),
        ("evaluate", {"script": " "}),
    )[1:] + calls(browser(), ("page_text", {}))
    assert missing.is_error and "timed out" in text_of(missing) and "selector" in text_of(missing)
    assert broken.is_error and "boom" in text_of(broken)
    assert empty.is_error and "empty" in text_of(empty)
    assert not ok.is_error and text_of(ok) == "", "a fresh page is blank"


def test_the_server_runs_over_streamable_http(chromium, site, tmp_path) -> None:
    async def go(url: str) -> tuple[CallToolResult, CallToolResult]:
        async with Client(url) as client:
            opened = await client.call_tool("open", {"url": site.url + "/"})
            return opened, await client.call_tool("page_text", {})

    with http_server("computer", "--no-artifacts", log=tmp_path / "server.log") as url:
        opened, text = anyio.run(go, url)
    assert not opened.is_error, text_of(opened)
    assert "Todo" in text_of(text) and "Add" in text_of(text)
