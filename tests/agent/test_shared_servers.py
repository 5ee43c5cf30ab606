"""Shared MCP servers a task names: configured ones are used; a task's own URL never reaches
loopback, private or link-local addresses from the (unsandboxed) agent process."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.agent.tools import shared_servers
from agentfleet.agent.work import work_task
from agentfleet.errors import ConfigError
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.net import free_port
from agentfleet.settings import McpServerConfig, Settings
from agentfleet.tasks import EventKind, McpServerSpec, Task, TaskEvent, TaskOptions, TaskRequest, TaskStatus
from agentfleet.testing.polling import wait_for
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

FILES = {"app.py": "print('hello')\n"}


@contextlib.contextmanager
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP listener on loopback that records whatever connects to it."""
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    received.append(conn.recv(4096) or b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def run(
    settings: Settings,
    repo: Path,
    script: list[dict],
    servers: list[McpServerSpec],
    seen: list[TaskEvent] | None = None,
) -> tuple[Task, list[dict]]:
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query="q", repo_url=str(repo), options=TaskOptions(mcp_servers=servers))
        listeners = [seen.append] if seen is not None else []
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir), listeners)
        return task, llm.requests


def test_a_tasks_mcp_url_on_loopback_is_never_connected_to(repo_factory, settings) -> None:
    with listener() as (port, received):
        url = f"http://127.0.0.1:{port}/mcp"
        allowed = settings.model_copy(update={"mcp_allowed_urls": [f"http://127.0.0.1:{port}/"]})
        task, _ = run(allowed, repo_factory(FILES), [reply("done")], [McpServerSpec(name="probe", url=url)])
    assert task.status is TaskStatus.FAILED
    assert task.error and "resolves to 127.0.0.1, a loopback, private or link-local address" in task.error
    assert received == [], "the agent sent nothing to the private address"


def test_a_configured_shared_server_is_connected_and_its_tools_offered(repo_factory, settings, tmp_path) -> None:
    shared = repo_factory({"shared.txt": "from the shared server\n"}, name="shared")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "agentfleet.mcp_servers.workspace", "--root", str(shared),
         "--transport", "streamable-http", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _listening(port), timeout_s=30, what="the shared server to listen")
        configured = settings.model_copy(
            update={"mcp_servers": {"shared": McpServerConfig(url=f"http://127.0.0.1:{port}/mcp")}}
        )
        script = [reply(None, tool_call("shared__read_file", {"path": "shared.txt"})), reply("Read it.")]
        task, requests = run(configured, repo_factory(FILES), script, [McpServerSpec(name="shared")])
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert "shared__read_file" in {t["function"]["name"] for t in requests[0]["tools"]}
    assert any("from the shared server" in (m.get("content") or "") for m in requests[-1]["messages"])


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_stdio_server_runs_beside_the_workspace_server_on_the_same_checkout_offering_only_its_allowed_tools(
    repo_factory, settings
) -> None:
    # A second workspace server as a configured stdio module: `{workspace}` is the task's checkout.
    second = McpServerConfig(
        module="workspace", args=["--root", "{workspace}"], tools=["read_file", "list_files"], always=True
    )
    configured = settings.model_copy(update={"mcp_servers": {"second": second}})
    script = [reply(None, tool_call("second__read_file", {"path": "app.py"})), reply("It prints hello.")]
    seen: list[TaskEvent] = []
    task, requests = run(configured, repo_factory(FILES), script, [], seen)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    offered = {t["function"]["name"] for t in requests[0]["tools"]}
    assert {"second__read_file", "second__list_files"} <= offered
    assert not any(name.startswith("second__") and name not in {"second__read_file", "second__list_files"}
                   for name in offered)  # fmt: skip
    assert any("print('hello')" in (m.get("content") or "") for m in requests[-1]["messages"])
    logs = [e.data.get("message") for e in seen if e.kind is EventKind.LOG]
    assert "MCP server second connected (stdio)" in logs


def test_a_server_the_task_names_but_nobody_configured_fails_the_task_saying_so(repo_factory, settings) -> None:
    configured = settings.model_copy(update={"mcp_servers": {}})
    task, requests = run(configured, repo_factory(FILES), [reply("done")], [McpServerSpec(name="nowhere")])
    assert task.status is TaskStatus.FAILED
    assert task.error and "MCP server 'nowhere' is not configured" in task.error
    assert requests == []


def test_the_built_in_servers_start_on_the_tasks_checkout_with_its_id_and_network_and_the_database_url(
    settings, tmp_path
) -> None:
    named = [McpServerSpec(name=n) for n in ("code", "media", "computer", "db")]
    configured = settings.model_copy(update={"database_url": "postgresql://agent:pw@127.0.0.1/app"})
    plans = {p.name: p for p in shared_servers(named, configured, tmp_path / "ws", "t123", network=True)}
    assert [p.transport for p in plans.values()] == ["stdio"] * 4
    code, media, computer, db = (plans[n].server for n in ("code", "media", "computer", "db"))
    assert code.args[-2:] == ["--root", str(tmp_path / "ws")]
    assert media.args[-2:] == ["--prefix", "tasks/t123/media"]
    assert computer.args[-3:] == ["--prefix", "tasks/t123/screenshots", "--network"]
    assert db.env["DATABASE_URL"] == "postgresql://agent:pw@127.0.0.1/app"
    assert not any("DATABASE_URL" in p.server.env for p in plans.values() if p.name != "db")
    assert "LLM_API_KEY" not in media.env and media.env["AGENTFLEET_HOME"] == str(settings.home)
    quiet = {p.name: p for p in shared_servers(named[2:3], configured, tmp_path / "ws", "t123")}
    assert "--network" not in quiet["computer"].server.args


def test_the_database_server_without_a_database_url_says_what_to_set(settings, tmp_path) -> None:
    with pytest.raises(ConfigError, match="MCP server 'db' needs DATABASE_URL, which is not set"):
        shared_servers([McpServerSpec(name="db")], settings.model_copy(update={"database_url": None}), tmp_path)
