"""The memory MCP server in process (`mcp.Client(server)`): recall and remember on one workspace."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp import Client

from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.mcp_servers import memory as server_module
from agentfleet.mcp_servers.memory import build_server
from agentfleet.memory import MemoryEntry

WS, OTHER = "calc-0123456789", "other-0123456789"


def calls(store: SqliteMemoryStore, *steps: tuple[str, dict]) -> list[tuple[str, bool]]:
    """(text, is_error) of each tool call, in order, on one server (one task)."""

    async def go() -> list[tuple[str, bool]]:
        async with Client(build_server(store, WS, "task-1")) as client:
            results = []
            for tool, arguments in steps:
                result = await client.call_tool(tool, arguments)
                results.append(("\n".join(getattr(b, "text", "") for b in result.content), bool(result.is_error)))
            return results

    return anyio.run(go)


def test_recall_searches_only_its_own_workspace(tmp_path: Path) -> None:
    store = SqliteMemoryStore(tmp_path / "m.db")
    store.add(MemoryEntry(workspace_id=WS, kind="task", task_id="t1", query="fix add", answer="add subtracted"))
    store.add(MemoryEntry(workspace_id=OTHER, kind="note", note="the secret of another repository: add"))
    [(text, is_error)] = calls(store, ("recall", {"query": "add"}))
    assert not is_error and "task t1" in text and "another repository" not in text


def test_remember_keeps_a_bounded_number_of_notes_from_its_task(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(server_module, "NOTES_PER_TASK", 2)
    store = SqliteMemoryStore(tmp_path / "m.db")
    results = calls(
        store,
        ("remember", {"note": "   "}),
        ("remember", {"note": "tests: make check"}),
        ("remember", {"note": "x" * 5000}),
        ("remember", {"note": "one too many"}),
    )
    assert results[0] == ("Error executing tool remember: the note is empty: give the fact to keep", True)
    assert results[1] == ("kept: tests: make check", False)
    assert results[2][0].startswith("kept (cut to its first characters): xxx") and not results[2][1]
    assert results[3][1] and "the most one task may keep" in results[3][0]
    notes = store.recent(WS)
    assert [n.task_id for n in notes] == ["task-1", "task-1"] and notes[1].note == "tests: make check"


def test_building_an_in_process_server_leaves_the_callers_logging_alone() -> None:
    # MCPServer configures the root logger when nothing has: at INFO, every HTTP request of the
    # agent's model client would then be printed in the middle of `agentfleet run`'s output.
    import logging
    import subprocess
    import sys

    code = (
        "import logging, tempfile; from pathlib import Path\n"
        "from agentfleet.mcp_servers import workspace, code_assistant\n"
        "code_assistant.build_server(Path(tempfile.mkdtemp()))\n"
        "print(logging.getLogger().getEffectiveLevel())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) >= logging.WARNING
