"""The computer control MCP server: a headless browser for checking the web apps the agent builds.

Playwright drives the system's Chromium (Debian's `chromium`; Playwright's own browser downloads
are not used). One page per server session, started on the first tool call and closed when the
session ends. Navigation reaches only loopback and the hosts named with `--allow-host`, unless
`--network` allows everything: Playwright's request routing refuses every other request with a
clear error, and Chromium's own host resolver maps every other name to nothing, so a redirect, a
WebSocket or a script's fetch cannot leave either.

    python -m agentfleet.mcp_servers.computer [--allow-host HOST]... [--network] [--transport ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ContentBlock, TextContent
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Playwright, Route, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from pydantic import BaseModel, ConfigDict, Field

from agentfleet.mcp_servers.results import new_key, stored
from agentfleet.mcp_servers.transport import add_transport_args, serve

if TYPE_CHECKING:
    from playwright.async_api import Browser as PlaywrightBrowser

    from agentfleet.ports import ArtifactStore

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_TEXT_CHARS = 50_000
INSTALL_HINT = "apt-get install chromium (make system-deps)"
INSTRUCTIONS = (
    "A headless browser for checking web pages: `open` a URL (loopback and allowed hosts only), then "
    "`screenshot`, `click`, `type`, `page_text`, `accessibility_tree` or `evaluate` on that page. "
    "Selectors are Playwright's: CSS, text=Label, role=button[name='Save']."
)


class BrowserConfig(BaseModel):
    """How the server's browser is started and what it may reach."""

    model_config = ConfigDict(extra="forbid")

    executable: str = Field(CHROMIUM, description="Chromium binary Playwright drives")
    allow_hosts: list[str] = Field(default_factory=list, description="hosts reachable besides loopback")
    network: bool = Field(False, description="reach any host (no routing rules)")
    navigation_timeout_s: float = Field(15.0, gt=0, description="how long `open` waits for the page to load")
    action_timeout_s: float = Field(5.0, gt=0, description="how long a click, a typing or a script may take")
    width: int = Field(1280, ge=200, le=4000, description="viewport width in pixels")
    height: int = Field(800, ge=200, le=4000, description="viewport height in pixels")

    def hosts(self) -> set[str]:
        return {h.lower().strip("[]") for h in (*LOOPBACK, *self.allow_hosts)}

    def launch_args(self) -> list[str]:
        if self.network:
            return list(CHROMIUM_ARGS)
        excluded = ", ".join(f"EXCLUDE [{h}]" if ":" in h else f"EXCLUDE {h}" for h in sorted(self.hosts()))
        return [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP * ~NOTFOUND, {excluded}"]


class Browser:
    """One Chromium page, started on first use; the operations behind the tools."""

    def __init__(self, config: BrowserConfig, store: ArtifactStore | None = None, prefix: str = "screenshots") -> None:
        self.config = config
        self.store = store
        self.prefix = prefix
        self.blocked: list[str] = []
        self._playwright: Playwright | None = None
        self._browser: PlaywrightBrowser | None = None
        self._page: Page | None = None
        self._lock: asyncio.Lock | None = None

    def check_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ToolError(f"{url[:200]!r} is not an http(s) URL; open a page such as http://127.0.0.1:8000/")
        if not self.config.network and (parts.hostname or "").lower() not in self.config.hosts():
            raise ToolError(
                f"{parts.hostname!r} is not reachable from this browser: only loopback "
                f"({', '.join(LOOPBACK)}) and the allowed hosts ({', '.join(self.config.allow_hosts) or 'none'}); "
                "serve the app on 127.0.0.1, or start the server with --allow-host or --network"
            )
        return url

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return True
        if parts.scheme not in ("http", "https", "ws", "wss"):
            return False
        return self.config.network or (parts.hostname or "").lower() in self.config.hosts()

    async def _route(self, route: Route) -> None:
        if self._allowed(route.request.url):
            await route.continue_()
        else:
            self.blocked.append(route.request.url[:300])
            await route.abort("blockedbyclient")

    async def page(self) -> Page:
        if self._page is not None:
            return self._page
        if shutil.which(self.config.executable) is None:
            raise ToolError(f"no browser at {self.config.executable}: {INSTALL_HINT}")
        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=self.config.executable, headless=True, args=self.config.launch_args()
        )
        context = await self._browser.new_context(
            viewport={"width": self.config.width, "height": self.config.height}, service_workers="block"
        )
        context.set_default_timeout(self.config.action_timeout_s * 1000)
        context.set_default_navigation_timeout(self.config.navigation_timeout_s * 1000)
        if not self.config.network:
            await context.route("**/*", self._route)
        self._page = await context.new_page()
        return self._page

    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def close(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._page = self._browser = self._playwright = self._lock = None
        if browser is not None:
            await browser.close()
        if playwright is not None:
            await playwright.stop()

    def _blocked_note(self) -> str:
        if not self.blocked:
            return ""
        shown, self.blocked = self.blocked[:5], []
        return "\nblocked requests (host not allowed): " + ", ".join(shown)

    async def open(self, url: str) -> str:
        self.check_url(url)
        page = await self.page()
        timeout = self.config.navigation_timeout_s
        try:
            response = await page.goto(url, wait_until="load")
        except PlaywrightTimeoutError:
            raise ToolError(f"{url} did not load within {timeout:g}s; is the app running and answering?") from None
        except PlaywrightError as exc:
            with contextlib.suppress(PlaywrightError):  # Chromium's error page follows; the next open must not race it
                await page.wait_for_url(lambda u: u.startswith("chrome-error:"), wait_until="commit", timeout=2000)
            why = _first_line(exc)
            if "ERR_NAME_NOT_RESOLVED" in why and not self.config.network:
                why += " (a name, or a redirect to a host, outside loopback and the allowed hosts is not reachable)"
            raise ToolError(f"could not open {url}: {why}{self._blocked_note()}") from None
        status = f"HTTP {response.status}" if response is not None else "no response"
        return f"opened {page.url} ({status}), title {await page.title()!r}{self._blocked_note()}"

    async def screenshot(self, full_page: bool = False) -> list[ContentBlock]:
        page = await self.page()
        png = await _acting("screenshot", page.screenshot(full_page=full_page, type="png"))
        if self.store is None:
            from mcp.server.mcpserver.utilities.types import Image

            return [TextContent(text=f"screenshot of {page.url}"), Image(data=png, format="png").to_image_content()]
        return stored(self.store, new_key(self.prefix, "screenshot", "png"), png, f"screenshot of {page.url}")

    async def click(self, selector: str) -> str:
        page = await self.page()
        await _acting(f"click {selector!r}", page.locator(selector).first.click())
        return f"clicked {selector}; now at {page.url}{self._blocked_note()}"

    async def type(self, selector: str, text: str, submit: bool = False) -> str:
        page = await self.page()
        field = page.locator(selector).first
        await _acting(f"type into {selector!r}", field.fill(text))
        if submit:
            await _acting(f"press Enter in {selector!r}", field.press("Enter"))
        return f"typed {len(text)} characters into {selector}" + (" and pressed Enter" if submit else "")

    async def text(self) -> str:
        page = await self.page()
        return _clip(await _acting("read the page", page.locator("body").inner_text()))

    async def accessibility_tree(self) -> str:
        page = await self.page()
        return _clip(await _acting("read the accessibility tree", page.locator("body").aria_snapshot()))

    async def evaluate(self, script: str) -> str:
        if not script.strip():
            raise ToolError("the script is empty; give a JavaScript expression such as document.title")
        page = await self.page()
        value = await _acting("the script", page.evaluate(script))
        return _clip(json.dumps(value, default=str, ensure_ascii=False)) + self._blocked_note()


async def _acting(what: str, action: Awaitable[T]) -> T:
    """Await a Playwright action; its failure as a ToolError saying what did not work."""
    try:
        return await action
    except PlaywrightTimeoutError:
        raise ToolError(
            f"{what} timed out; check the selector (page_text and accessibility_tree show the page)"
        ) from None
    except PlaywrightError as exc:
        raise ToolError(f"{what} failed: {_first_line(exc)}") from None


def _first_line(exc: PlaywrightError) -> str:
    return (exc.message or str(exc)).strip().splitlines()[0][:500]


def _clip(text: str) -> str:
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return text[:MAX_TEXT_CHARS] + f"\n… [cut at {MAX_TEXT_CHARS} of {len(text)} characters]"


def build_server(browser: Browser, name: str = "computer") -> MCPServer:
    """The MCP server exposing a Browser's operations as tools; the browser closes with the session."""

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await browser.close()

    server: MCPServer = MCPServer(name, instructions=INSTRUCTIONS, lifespan=lifespan, log_level="WARNING")

    async def one_at_a_time(action: Callable[[], Awaitable[T]]) -> T:
        async with browser.lock():
            return await action()

    @server.tool(name="open", structured_output=False)
    async def open_(url: str) -> str:
        """Open a URL in the browser (loopback and allowed hosts only); says the status and title."""
        return await one_at_a_time(lambda: browser.open(url))

    @server.tool(structured_output=False)
    async def screenshot(full_page: bool = False) -> list[ContentBlock]:
        """A PNG screenshot of the page (the viewport, or the whole page with full_page)."""
        return await one_at_a_time(lambda: browser.screenshot(full_page))

    @server.tool(structured_output=False)
    async def click(selector: str) -> str:
        """Click the first element matching a selector: CSS (#save), text=Save, role=button[name='Save']."""
        return await one_at_a_time(lambda: browser.click(selector))

    @server.tool(name="type", structured_output=False)
    async def type_(selector: str, text: str, submit: bool = False) -> str:
        """Fill an input matching a selector with text (replacing what it held); submit presses Enter."""
        return await one_at_a_time(lambda: browser.type(selector, text, submit))

    @server.tool(structured_output=False)
    async def page_text() -> str:
        """The visible text of the page."""
        return await one_at_a_time(browser.text)

    @server.tool(structured_output=False)
    async def accessibility_tree() -> str:
        """The page's accessibility tree (ARIA snapshot, YAML): roles, names, states."""
        return await one_at_a_time(browser.accessibility_tree)

    @server.tool(structured_output=False)
    async def evaluate(script: str) -> str:
        """Evaluate a JavaScript expression or function in the page; returns its value as JSON."""
        return await one_at_a_time(lambda: browser.evaluate(script))

    return server


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentfleet-computer-mcp", description=__doc__)
    add_transport_args(parser)
    parser.add_argument("--allow-host", action="append", default=[], help="a host the browser may reach (repeat)")
    parser.add_argument("--network", action="store_true", help="let the browser reach any host")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium binary")
    parser.add_argument("--navigation-timeout", type=float, default=15.0, help="seconds `open` waits for a page")
    parser.add_argument("--prefix", default="screenshots", help="artifact key prefix of the screenshots")
    parser.add_argument("--no-artifacts", action="store_true", help="return screenshots without storing them")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from agentfleet.mcp_servers.genmedia import artifact_store
    from agentfleet.settings import Settings

    args = _parse_args(argv)
    config = BrowserConfig(
        executable=args.chromium,
        allow_hosts=args.allow_host,
        network=args.network,
        navigation_timeout_s=args.navigation_timeout,
    )
    store = None if args.no_artifacts else artifact_store(Settings())
    server = build_server(Browser(config, store, args.prefix))
    serve(server, args)


if __name__ == "__main__":
    main()
