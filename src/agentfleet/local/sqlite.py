"""The SQLite habits the local backends share: WAL, a busy timeout, autocommit connections,
and write transactions that take the database's write lock up front (BEGIN IMMEDIATE), so a
read-check-write is atomic across threads and processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30.0


def connect(path: Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=check_same_thread)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    # WAL with synchronous=NORMAL survives a crash of any process (what a local queue must);
    # only a power cut may lose the last commits. FULL would fsync on every commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def create(path: Path, schema: str) -> None:
    """Make the database file (and its folder) with WAL on and `schema` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with connection(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)


@contextmanager
def connection(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for one block, closed at its end."""
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction holding the write lock from its start; rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
