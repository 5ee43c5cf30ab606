"""MemoryStore on a SQLite file with an FTS5 index (the local stand-in for the Firestore one).

Its own file, `$AGENTFLEET_HOME/memory.db`, beside `tasks.db` and `queue.db` as the local backends
keep one file per port: the agent processes write it when a task ends, the API reads and clears
it, with the same habits (WAL, a busy timeout, sqlite.ThreadConnections' connections, writes in BEGIN
IMMEDIATE). `entries` holds each MemoryEntry's JSON (`doc`); `entry_terms`, an FTS5 table, indexes
its search terms (agentfleet.memory.terms, written space-separated; `_` is a token character, so
FTS5's tokens are those terms). A search asks FTS5 for the entries that hold any of the query's
terms, then ranks them as the memory model says (most shared terms, then newest), the same order
the gcp store gives.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agentfleet.local import sqlite
from agentfleet.local.store import iso
from agentfleet.memory import KEEP_PER_WORKSPACE, MAX_QUERY_TERMS, MemoryEntry, rank, terms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_workspace_created ON entries (workspace_id, created_at);
CREATE VIRTUAL TABLE IF NOT EXISTS entry_terms USING fts5(
    terms, entry_id UNINDEXED, workspace_id UNINDEXED, tokenize = "unicode61 tokenchars '_'"
);
"""
_CANDIDATES = KEEP_PER_WORKSPACE
"""The most FTS5 matches ranked for one search (a workspace keeps no more entries than this)."""


def _entry(row: sqlite3.Row) -> MemoryEntry:
    return MemoryEntry.model_validate_json(row["doc"])


class SqliteMemoryStore(sqlite.ThreadConnections):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    def add(self, entry: MemoryEntry) -> MemoryEntry:
        kept = entry.clipped()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO entries (id, workspace_id, created_at, doc) VALUES (?, ?, ?, ?)",
                (kept.id, kept.workspace_id, iso(kept.created_at), kept.model_dump_json()),
            )
            conn.execute(
                "INSERT INTO entry_terms (terms, entry_id, workspace_id) VALUES (?, ?, ?)",
                (" ".join(kept.terms()), kept.id, kept.workspace_id),
            )
            old = conn.execute(
                "SELECT id FROM entries WHERE workspace_id = ? ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?",
                (kept.workspace_id, KEEP_PER_WORKSPACE),
            ).fetchall()
            for row in old:
                self._remove(conn, row["id"])
        return kept

    @staticmethod
    def _remove(conn: sqlite3.Connection, entry_id: str) -> None:
        conn.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        conn.execute("DELETE FROM entry_terms WHERE entry_id = ?", (entry_id,))

    def recent(self, workspace_id: str, limit: int = 20) -> list[MemoryEntry]:
        rows = self._conn().execute(
            "SELECT doc FROM entries WHERE workspace_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (workspace_id, limit),
        )
        return [_entry(row) for row in rows]

    def search(self, workspace_id: str, query: str, limit: int = 5) -> list[MemoryEntry]:
        wanted = terms(query, MAX_QUERY_TERMS)
        if not wanted or limit < 1:
            return []
        match = " OR ".join(f'"{term}"' for term in wanted)  # a term is letters, digits and _: no quote in it
        rows = self._conn().execute(
            "SELECT e.doc FROM entry_terms f JOIN entries e ON e.id = f.entry_id "
            "WHERE entry_terms MATCH ? AND f.workspace_id = ? LIMIT ?",
            (match, workspace_id, _CANDIDATES),
        )
        return rank((_entry(row) for row in rows), query, limit)

    def clear(self, workspace_id: str) -> int:
        with self._write() as conn:
            removed = conn.execute("DELETE FROM entries WHERE workspace_id = ?", (workspace_id,)).rowcount
            conn.execute("DELETE FROM entry_terms WHERE workspace_id = ?", (workspace_id,))
        return int(removed)

    def health(self) -> dict[str, Any]:
        try:
            count = self._conn().execute("SELECT count(*) FROM entries").fetchone()[0]
        except sqlite3.Error as exc:
            return {"ok": False, "backend": "sqlite-fts5", "error": str(exc)}
        return {"ok": True, "backend": "sqlite-fts5", "entries": count}
