"""The SQLite habits the local backends share: WAL, a busy timeout, autocommit connections,
and write transactions that take the database's write lock up front (BEGIN IMMEDIATE), so a
read-check-write is atomic across threads and processes.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30.0
_FORKED: list[sqlite3.Connection] = []
"""Connections a fork copied into this process: kept, never used nor closed. SQLite forbids using a
connection across a fork, and closing the copy may checkpoint the WAL the parent is using."""
_WRITERS: dict[str, threading.RLock] = {}
"""One lock per database file for this process's writers (see ThreadConnections._write)."""
_WRITERS_LOCK = threading.Lock()


def _forget_writers() -> None:
    _WRITERS.clear()  # a lock another thread held at the fork would stay held in the child


os.register_at_fork(after_in_child=_forget_writers)


def _writer(key: str) -> threading.RLock:
    with _WRITERS_LOCK:
        lock = _WRITERS.get(key)
        if lock is None:
            lock = _WRITERS[key] = threading.RLock()
        return lock


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


class ThreadConnections:
    """A database file made with `schema`: one connection per thread for reads, and one connection
    for this object's writes, which the writers take turns on (a fresh one of each after a fork):
    what the local stores are built on."""

    def __init__(self, path: Path, schema: str) -> None:
        self.path = path
        self._local = threading.local()
        create(path, schema)
        self._key = str(path.resolve())
        self._writer_conn: sqlite3.Connection | None = None
        self._writer_pid = 0

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; a fresh one in a new thread or after a fork."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            if conn is not None:
                _FORKED.append(conn)
            conn = connect(self.path, check_same_thread=False)
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the write connection. This process's writers of the file take
        turns on a lock first: SQLite's busy handler would have a waiting thread sleep 1, 2, 5, 10…
        ms between tries for a lock held a few microseconds (p99 of POST /orchestrate over 100 ms
        with 8 clients); the lock wakes the next writer as soon as the write is done. Other
        processes (the agents) still meet at SQLite's lock, with its busy timeout.

        Since the writers take turns anyway, they share one connection: its page cache stays warm.
        A connection drops its whole cache whenever it finds the file changed by another one, so
        with one per thread each write re-read the pages it touches (32 server threads in turn)."""
        with _writer(self._key), write_transaction(self._write_conn()) as conn:
            yield conn

    def _write_one(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        """One write statement, its own transaction (SQLite's autocommit): no BEGIN and COMMIT
        around it, two calls fewer (each releases and takes back the GIL). Only for a statement
        that needs no read before it; it takes the write lock itself, with the busy timeout."""
        with _writer(self._key):
            return self._write_conn().execute(sql, params)

    def _write_conn(self) -> sqlite3.Connection:
        """The write connection (taken under the writer lock); a fresh one after a fork."""
        conn = self._writer_conn
        if conn is None or self._writer_pid != os.getpid():
            if conn is not None:
                _FORKED.append(conn)
            conn = connect(self.path, check_same_thread=False)
            self._writer_conn, self._writer_pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection and the write connection (other threads' close when
        those threads end; a later write opens a new one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            if self._local.pid == os.getpid():
                conn.close()
            else:
                _FORKED.append(conn)
            self._local.conn = None
        with _writer(self._key):
            writer, self._writer_conn = self._writer_conn, None
            if writer is not None:
                if self._writer_pid == os.getpid():
                    writer.close()
                else:
                    _FORKED.append(writer)
