"""Tool-call latency of each shared MCP server over stdio beside streamable HTTP on 127.0.0.1, in one run.

    .venv/bin/python bench/mcp_transport.py [--calls 50] [--rounds 5] [--only NAME]

Each server in src/agentfleet/mcp_servers/ is started twice from the same command: once over stdio
(the official `mcp` client launching it with `StdioServerParameters`) and once over streamable HTTP
on 127.0.0.1 (a subprocess; the `mcp` client with its /mcp URL). The toolbox's two transports are
Google's binary's own `--stdio` and its HTTP endpoint. Start-up is process start → the first
successful list_tools (HTTP: the port polled every 10 ms). Then, with one session per transport
held open, WARMUP untimed calls each, and `--calls` calls of the same tool per transport, timed in
`--rounds` interleaved rounds (the transport that goes first alternates).

Prints per server p50 and p90 of each transport in ms, the ratio HTTP/stdio of the p50s with its
min-max over the rounds (each round's own p50 ratio), and both start-up times. A server whose
dependency is missing here (Chromium, Graphviz, the toolbox binary) is reported as skipped with
why; the others go on. Everything runs on loopback and is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

import agentfleet
from agentfleet.mcp_servers.toolbox import default_binary
from agentfleet.net import free_port
from agentfleet.testing.a2a_echo import echo_app
from agentfleet.testing.asgi import serving
from agentfleet.testing.polling import stop_process
from agentfleet.testing.repos import make_repo

WARMUP = 5
START_TIMEOUT_S = 60.0
SRC = str(Path(agentfleet.__file__).resolve().parents[1])  # the servers run the code this bench imports
PAGE = "<!doctype html><title>Bench</title><h1>Bench page</h1><p>A page served on loopback.</p>"
PY = "def parse(text):\n    return text.split()\n\n\nclass Shop:\n    def buy(self, item):\n        return item\n"


@dataclass
class Server:
    """One shared server: its module, the tool call timed, and what it needs here."""

    name: str
    tool: str
    arguments: dict[str, Any]
    missing: Callable[[], str | None] = lambda: None
    first: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # calls a session starts with
    args: list[str] = field(default_factory=list)  # filled by `prepare`


def no_module(name: str, extra: str) -> Callable[[], str | None]:
    return lambda: None if importlib.util.find_spec(name) else f"{name} is not installed (pip install '.[{extra}]')"


def no_binary(path: str, debian: str) -> Callable[[], str | None]:
    why = f"{path} is not installed (apt-get install {debian}, or make system-deps)"
    return lambda: None if shutil.which(path) else why


def toolbox_missing() -> str | None:
    if default_binary() is None:
        return "the MCP Toolbox binary is missing: run `make toolbox` (npm, mcp_servers/toolbox)"
    return no_binary("bwrap", "bubblewrap")()


def computer_missing() -> str | None:
    if why := no_module("playwright", "mcp-computer")():
        return why
    from agentfleet.mcp_servers.computer import CHROMIUM  # imports playwright

    return no_binary(CHROMIUM, "chromium")()


SERVERS = [
    Server("workspace", "read_file", {"path": "app.py"}),
    Server("code_assistant", "outline", {"path": "app.py"}, no_module("tree_sitter_python", "mcp-code")),
    Server("genmedia", "diagram", {"dot": "digraph { a -> b }"}, no_binary("dot", "graphviz")),
    Server("computer", "page_text", {}, computer_missing),
    Server("a2a_bridge", "get_agent_card", {"agent": "echo"}),
    Server("toolbox", "query", {"sql": "SELECT 1"}, toolbox_missing),
]


@contextlib.contextmanager
def prepare(servers: list[Server], tmp: Path) -> Iterator[None]:
    """What the servers work on: a checkout, a page and an A2A agent on loopback, a SQLite file."""
    by_name = {s.name: s for s in servers}
    with contextlib.ExitStack() as stack:
        if "workspace" in by_name or "code_assistant" in by_name:
            repo = make_repo(tmp / "repo", {"app.py": PY, "README.md": "# bench\n"})
            for name in ("workspace", "code_assistant"):
                if name in by_name:
                    by_name[name].args = ["--root", str(repo)]
        if "computer" in by_name:
            page = stack.enter_context(serving(Starlette(routes=[Route("/", lambda _: HTMLResponse(PAGE))])))
            by_name["computer"].args = ["--no-artifacts"]
            by_name["computer"].first = [("open", {"url": f"{page}/"})]
        if "a2a_bridge" in by_name:
            port = free_port()
            agent = stack.enter_context(serving(echo_app(port, streaming=False), port=port))
            by_name["a2a_bridge"].args = ["--agent", f"echo={agent}"]
        if "toolbox" in by_name:
            with contextlib.closing(sqlite3.connect(tmp / "app.db")) as db, db:
                db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
            by_name["toolbox"].args = ["--database-url", f"sqlite:///{tmp / 'app.db'}"]
        yield


def argv(server: Server, *transport: str) -> list[str]:
    return [sys.executable, "-m", f"agentfleet.mcp_servers.{server.name}", *server.args, "--transport", *transport]


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    began = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = time.perf_counter() - began
    if result.is_error:
        text = " ".join(getattr(item, "text", "") for item in result.content)
        raise RuntimeError(f"{tool} answered an error: {text[:300]}")
    return elapsed


@contextlib.asynccontextmanager
async def over_stdio(server: Server, env: dict[str, str], cwd: Path) -> AsyncIterator[tuple[Client, float]]:
    """A session with the server over stdio, and its start-up time (launch → first list_tools)."""
    command, *args = argv(server, "stdio")
    params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
    with (cwd / f"{server.name}-stdio.log").open("w") as log:
        began = time.perf_counter()
        async with Client(stdio_client(params, errlog=log), cache=None) as client:
            await client.list_tools()
            yield client, time.perf_counter() - began


@contextlib.asynccontextmanager
async def over_http(server: Server, env: dict[str, str], cwd: Path) -> AsyncIterator[tuple[Client, float]]:
    """A session with the server over streamable HTTP, and its start-up time (Popen → first list_tools)."""
    port = free_port()
    with (cwd / f"{server.name}-http.log").open("wb") as log:
        began = time.perf_counter()
        command = argv(server, "streamable-http", "--host", "127.0.0.1", "--port", str(port))
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None or time.perf_counter() - began > START_TIMEOUT_S:
                tail = (cwd / f"{server.name}-http.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"{server.name} over HTTP did not start listening: {tail}")
            await anyio.sleep(0.01)
        async with Client(f"http://127.0.0.1:{port}/mcp", cache=None) as client:
            await client.list_tools()
            yield client, time.perf_counter() - began
    finally:
        stop_process(proc, timeout_s=10)


@dataclass
class Figures:
    name: str
    tool: str
    rounds: dict[str, list[list[float]]]  # transport → each round's latencies, seconds
    start_s: dict[str, float]

    def q_ms(self, transport: str, q: float, only: int | None = None) -> float:
        values = [v for i, r in enumerate(self.rounds[transport]) if only in (None, i) for v in r]
        return 1000 * (statistics.median(values) if q == 0.5 else sorted(values)[round(q * (len(values) - 1))])

    def ratios(self) -> list[float]:
        return [self.q_ms("http", 0.5, i) / self.q_ms("stdio", 0.5, i) for i in range(len(self.rounds["http"]))]


async def measure(server: Server, index: int, args: argparse.Namespace, env: dict[str, str], cwd: Path) -> Figures:
    transports = {"stdio": over_stdio, "http": over_http}
    order = list(transports) if index % 2 == 0 else list(transports)[::-1]  # which starts first alternates too
    sessions: dict[str, Client] = {}
    start_s: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as stack:
        for transport in order:
            sessions[transport], start_s[transport] = await stack.enter_async_context(
                transports[transport](server, env, cwd)
            )
        for client in sessions.values():
            for tool, arguments in [*server.first, *[(server.tool, server.arguments)] * WARMUP]:
                await call(client, tool, arguments)
        shares = [args.calls // args.rounds + (i < args.calls % args.rounds) for i in range(args.rounds)]
        rounds: dict[str, list[list[float]]] = {t: [] for t in transports}
        for i, count in enumerate(shares):
            for transport in order if i % 2 == 0 else order[::-1]:
                client = sessions[transport]
                rounds[transport].append([await call(client, server.tool, server.arguments) for _ in range(count)])
    return Figures(server.name, server.tool, rounds, start_s)


HEADER = (
    f"  {'server':<16}{'tool':<16}{'stdio p50':>10}{'p90':>8}{'http p50':>10}{'p90':>8}"
    f"{'http/stdio':>12}{'rounds':>13}{'start stdio':>13}{'start http':>12}"
)


def row(f: Figures) -> str:
    ratios = f.ratios()
    return (
        f"  {f.name:<16}{f.tool:<16}{f.q_ms('stdio', 0.5):10.2f}{f.q_ms('stdio', 0.9):8.2f}"
        f"{f.q_ms('http', 0.5):10.2f}{f.q_ms('http', 0.9):8.2f}"
        f"{'x' + format(f.q_ms('http', 0.5) / f.q_ms('stdio', 0.5), '.2f'):>12}"
        f"{format(min(ratios), '.2f') + '-' + format(max(ratios), '.2f'):>13}"
        f"{1000 * f.start_s['stdio']:13.0f}{1000 * f.start_s['http']:12.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="timed calls per transport (default 50)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the calls are split in")
    parser.add_argument("--only", choices=[s.name for s in SERVERS], action="append", help="this server (repeat)")
    args = parser.parse_args()
    if not 1 <= args.rounds <= args.calls <= 10_000:
        parser.error("use 1 <= --rounds <= --calls <= 10000")
    servers = [s for s in SERVERS if not args.only or s.name in args.only]
    tmp = Path(tempfile.mkdtemp(prefix="agentfleet-bench-mcp-"))
    env = {**os.environ, "PYTHONPATH": SRC, "AGENTFLEET_HOME": str(tmp / "home"), "AGENTFLEET_BACKEND": "local"}
    try:
        skipped = {s.name: why for s in servers if (why := s.missing())}
        runnable = [s for s in servers if s.name not in skipped]
        print(
            f"MCP tool calls, stdio beside streamable HTTP on 127.0.0.1: {args.calls} calls per transport "
            f"in {args.rounds} interleaved round(s), after {WARMUP} warm-up calls each (ms):"
        )
        print(HEADER)
        with prepare(runnable, tmp):
            for index, server in enumerate(runnable):
                try:
                    print(row(anyio.run(measure, server, index, args, env, tmp)), flush=True)
                except Exception as exc:  # one server failing does not stop the others
                    print(f"  {server.name:<16}failed: {type(exc).__name__}: {exc}"[:300], flush=True)
        for name, why in skipped.items():
            print(f"  {name:<16}skipped: {why}")
        print("  http/stdio: the ratio of the p50s; rounds: its min-max over the rounds; start: launch → list_tools")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
