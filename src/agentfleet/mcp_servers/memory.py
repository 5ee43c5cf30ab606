"""The memory MCP server: `recall(query)` and `remember(note)` over one workspace's MemoryStore.

It runs in the agent's own process (`ToolBox.connect("memory", build_server(...))`), never in the
sandbox: the store is the deployment's (a SQLite file under AGENTFLEET_HOME, or Firestore), which
the agent's commands cannot reach. One server serves one task on one workspace: the workspace is
fixed when it is built, so a tool call can neither read nor write another workspace's memory. What
a tool returns is bounded: `recall` at most RECALL_LIMIT entries, `remember` at most
NOTES_PER_TASK notes a task, each clipped as every entry is (agentfleet.memory).
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from agentfleet.memory import MAX_TEXT, MemoryEntry, clip
from agentfleet.ports import MemoryStore

RECALL_LIMIT = 5
NOTES_PER_TASK = 10
INSTRUCTIONS = (
    "What earlier tasks on this repository did and found: search it with recall; keep a fact for later "
    "tasks with remember."
)


def build_server(store: MemoryStore, workspace_id: str, task_id: str | None = None, name: str = "memory") -> MCPServer:
    """The MCP server over `workspace_id`'s memory; notes are kept as coming from `task_id`."""
    server: MCPServer = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")
    kept: list[str] = []

    @server.tool(structured_output=False)
    def recall(query: str) -> str:
        """Search what earlier tasks on this repository did (their queries, answers, changed files, setup
        and test commands) and the notes kept with remember; the best matches first."""
        found = store.search(workspace_id, query, limit=RECALL_LIMIT)
        if not found:
            return f"nothing in this repository's memory matches {clip(query, 200)!r}"
        return "\n".join(entry.render() for entry in found)

    @server.tool(structured_output=False)
    def remember(note: str) -> str:
        """Keep a fact about this repository for later tasks (how to build or test it, a pitfall, where
        something lives). One short fact per call."""
        if not note.strip():
            raise ToolError("the note is empty: give the fact to keep")
        if len(kept) >= NOTES_PER_TASK:
            raise ToolError(f"this task has kept {NOTES_PER_TASK} notes, the most one task may keep")
        entry = store.add(MemoryEntry(workspace_id=workspace_id, kind="note", task_id=task_id, note=note))
        kept.append(entry.id)
        cut = " (cut to its first characters)" if len(note.strip()) > MAX_TEXT else ""
        return f"kept{cut}: {entry.note}"

    return server
