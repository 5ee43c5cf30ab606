"""`agentfleet run` with every built-in shared MCP server: the agent (scripted model) queries a
database, outlines a file, messages an A2A agent, draws a diagram and screenshots a local page,
each server started over stdio beside the workspace server; what they made is in the task's
events and artifacts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from agentfleet.mcp_servers.toolbox import default_binary
from agentfleet.testing.a2a_echo import echo_app
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call
from tests.mcp_servers.servers import need_binary
from tests.mcp_servers.test_a2a_bridge import serve_asgi
from tests.mcp_servers.test_computer import Site
from tests.test_cli_run import agentfleet

REPO = {"shapes.py": "class Circle:\n    def area(self):\n        return 3.14\n\n\ndef total(shapes):\n    return 0\n"}


def test_the_agent_uses_each_shared_server_and_its_results_are_in_events_and_artifacts(
    repo_factory, tmp_path: Path
) -> None:
    need_binary("/usr/bin/chromium", "apt-get install chromium, or make system-deps")
    need_binary("dot", "apt-get install graphviz, or make system-deps")
    toolbox = default_binary()
    need_binary(str(toolbox) if toolbox else "toolbox", "make toolbox (npm, mcp_servers/toolbox)")
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        db.execute("INSERT INTO orders (item) VALUES ('teapot'), ('kettle')")
    site = Site("127.0.0.1")
    script = [
        reply(None, tool_call("query", {"sql": "SELECT item FROM orders ORDER BY id"})),
        reply(None, tool_call("outline", {"path": "shapes.py"})),
        reply(None, tool_call("send_message", {"agent": "echo", "text": "hello from the fleet"})),
        reply(None, tool_call("diagram", {"dot": "digraph { fleet -> repo }"})),
        reply(None, tool_call("open", {"url": site.url + "/"})),
        reply(None, tool_call("screenshot", {})),
        reply("Done: two orders, Circle.area at line 2, the echo agent answered, a diagram and a screenshot."),
    ]
    try:
        with serve_asgi(lambda port: echo_app(port, streaming=False)) as echo, ScriptedLLM(script) as llm:
            servers = {"a2a": {"module": "a2a_bridge", "args": ["--agent", f"echo={echo}"]}}
            args = ["run", "Use the shared servers", "--repo", str(repo_factory(REPO)), "--json"]
            for name in ("db", "code", "a2a", "media", "computer"):
                args += ["--mcp", name]
            env = {"DATABASE_URL": f"sqlite:///{database}", "AGENTFLEET_MCP_SERVERS": json.dumps(servers)}
            proc = agentfleet(tmp_path, *args, llm_url=llm.url, extra_env=env)
            offered = {tool["function"]["name"] for tool in llm.requests[0]["tools"]}
    finally:
        site.stop()
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)
    assert task["status"] == "SUCCEEDED"
    assert {"query", "outline", "send_message", "diagram", "open", "screenshot", "exec"} <= offered

    artifacts = tmp_path / "home" / "artifacts"
    events = [json.loads(line) for line in (artifacts / "tasks" / task["id"] / "events.jsonl").read_text().splitlines()]
    connected = {e["data"]["message"] for e in events if e["kind"] == "log" and "connected" in e["data"]["message"]}
    assert connected == {f"MCP server {name} connected (stdio)" for name in ("db", "code", "a2a", "media", "computer")}
    results = [e["data"] for e in events if e["kind"] == "tool_result"]
    assert [r["name"] for r in results] == ["query", "outline", "send_message", "diagram", "open", "screenshot"]
    assert not any(r.get("is_error") for r in results), results
    said = "\n".join(str(r.get("output", "")) for r in results)
    assert "teapot" in said and "kettle" in said
    assert "Circle" in said and "area" in said
    assert "echo: hello from the fleet" in said
    assert "Todo" in said  # the page opened
    made = sorted(p.relative_to(artifacts).as_posix() for p in (artifacts / "tasks" / task["id"]).rglob("*.png"))
    assert any(p.startswith(f"tasks/{task['id']}/media/") for p in made), made
    assert any(p.startswith(f"tasks/{task['id']}/screenshots/") for p in made), made
