"""TaskQueue on a SQLite file: a durable, leased queue shared by threads and processes.

The local stand-in for the Pub/Sub topic "tasks" and its push subscription. `publish` is the
port; `pull`/`ack`/`nack`/`dead_letter` are the local consumer side the dispatcher loop uses.

A pulled message is leased: invisible to other pulls until it is acked, nacked or its lease
expires, then it is delivered again with `delivery_attempt` + 1. So a message published (or
pulled) before a crash is dispatched after the restart. A message that would be delivered more
than `max_delivery_attempts` times goes to the dead letters instead (Pub/Sub's dead-letter
policy). Visible messages come out in publish order.

Every write is one transaction (WAL, busy timeout): `BEGIN IMMEDIATE` where it reads first (a
pull), so concurrent pullers in any thread or process never lease the same message twice; a
single statement (publish, ack, nack) is its own. The connections stay open
(sqlite.ThreadConnections: one per reading thread, one for the writes): a fresh one per write cost
~20 ms, mostly the checkpoint the last connection to close runs, against ~0.1 ms for the write itself.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentfleet.local import sqlite
from agentfleet.ports import DispatchMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    published_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    delivery_attempt INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages (visible_at, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    published_at REAL NOT NULL,
    delivery_attempt INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""

_COLUMNS = "id, data, attributes, published_at, delivery_attempt"
ACK_PAGE = 100
"""Ids one DELETE acks (SQLite allows 32766 parameters a statement)."""


@dataclass(frozen=True)
class Delivery:
    """One delivery of a message to a consumer (or, from `dead_letters()`, a dead letter)."""

    message_id: str
    data: bytes
    """The published bytes: a DispatchMessage's JSON, or whatever a user published raw."""
    attributes: dict[str, str]
    """task_id, attempt, workspace_id for a DispatchMessage."""
    delivery_attempt: int
    """1 on the first delivery, +1 on each redelivery."""
    published_at: datetime
    reason: str | None = None
    """Why it was dead-lettered; None for a live delivery."""


def _delivery(row: sqlite3.Row, reason: str | None = None) -> Delivery:
    return Delivery(
        message_id=row["id"],
        data=bytes(row["data"]),
        attributes=json.loads(row["attributes"]),
        delivery_attempt=row["delivery_attempt"],
        published_at=datetime.fromtimestamp(row["published_at"], UTC),
        reason=reason,
    )


class SqliteTaskQueue(sqlite.ThreadConnections):
    def __init__(self, path: Path, *, max_delivery_attempts: int = 5) -> None:
        if max_delivery_attempts < 1:
            raise ValueError("max_delivery_attempts must be at least 1")
        super().__init__(path, _SCHEMA)
        self.max_delivery_attempts = max_delivery_attempts
        self.listeners: list[Callable[[], None]] = []
        """Called after each publish in this process (the server's dispatcher wakes on it, as a
        push subscription delivers at once); a publish from another process is found by polling."""

    # --- the port ------------------------------------------------------------------------

    def publish(self, message: DispatchMessage) -> str:
        return self.publish_raw(message.model_dump_json().encode(), message.attributes())

    def health(self) -> dict[str, Any]:
        dead = self._conn().execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        return {"backend": "local-sqlite", "path": str(self.path), "pending": self.pending(), "dead_letters": dead}

    # --- the local consumer side -----------------------------------------------------------

    def publish_raw(self, data: bytes, attributes: dict[str, str] | None = None) -> str:
        """Publish any bytes, as a user publishing straight onto the topic does; return the id."""
        message_id = uuid.uuid4().hex
        now = time.time()
        self._write_one(
            "INSERT INTO messages (id, data, attributes, published_at, visible_at) VALUES (?, ?, ?, ?, ?)",
            (message_id, data, json.dumps(attributes or {}), now, now),
        )
        for listener in self.listeners:
            listener()
        return message_id

    def pull(self, max_messages: int = 10, lease_s: float = 60.0) -> list[Delivery]:
        """Lease up to `max_messages` visible messages, oldest first, for `lease_s` seconds."""
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        deliveries: list[Delivery] = []
        with self._write() as conn:
            now = time.time()
            while len(deliveries) < max_messages:
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE visible_at <= ? ORDER BY seq LIMIT ?",
                    (now, max_messages - len(deliveries)),
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    delivery = self._lease(conn, row, now + lease_s)
                    if delivery is not None:
                        deliveries.append(delivery)
        return deliveries

    def _lease(self, conn: sqlite3.Connection, row: sqlite3.Row, until: float) -> Delivery | None:
        """Deliver the row leased until `until`, or dead-letter it when it had all its deliveries."""
        if row["delivery_attempt"] >= self.max_delivery_attempts:
            reason = f"not acked after {row['delivery_attempt']} deliveries (max_delivery_attempts)"
            self._move_to_dead_letters(conn, row["id"], reason)
            return None
        conn.execute(
            "UPDATE messages SET visible_at = ?, delivery_attempt = delivery_attempt + 1 WHERE id = ?",
            (until, row["id"]),
        )
        delivery = _delivery(row)
        return replace(delivery, delivery_attempt=delivery.delivery_attempt + 1)

    def ack(self, *message_ids: str) -> None:
        """Done with the messages: remove them, in one write. Acking an unknown or already acked id
        does nothing."""
        for page in range(0, len(message_ids), ACK_PAGE):
            ids = message_ids[page : page + ACK_PAGE]
            self._write_one(f"DELETE FROM messages WHERE id IN ({', '.join('?' * len(ids))})", ids)

    def nack(self, message_id: str, delay_s: float = 0.0) -> None:
        """Give the message back: visible again after `delay_s` seconds."""
        self._write_one("UPDATE messages SET visible_at = ? WHERE id = ?", (time.time() + delay_s, message_id))

    def dead_letter(self, message_id: str, reason: str) -> None:
        """Move the message to the dead letters (kept, listed by `dead_letters()`)."""
        with self._write() as conn:
            self._move_to_dead_letters(conn, message_id, reason)

    def dead_letters(self) -> list[Delivery]:
        rows = self._conn().execute(f"SELECT {_COLUMNS}, reason FROM dead_letters ORDER BY dead_at, id").fetchall()
        return [_delivery(row, row["reason"]) for row in rows]

    def pending(self) -> int:
        """Messages not yet acked nor dead-lettered, leased ones included."""
        return int(self._conn().execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    @staticmethod
    def _move_to_dead_letters(conn: sqlite3.Connection, message_id: str, reason: str) -> None:
        conn.execute(
            f"INSERT OR REPLACE INTO dead_letters ({_COLUMNS}, reason, dead_at) "
            f"SELECT {_COLUMNS}, ?, ? FROM messages WHERE id = ?",
            (reason, time.time(), message_id),
        )
        conn.execute("DELETE FROM messages WHERE id = ?", (message_id,))
