"""The HTTP client against a server that closes a kept-alive connection as a request goes out (its
idle timeout): a read is sent again on a new connection, a write is not (it may have been done)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest

from agentfleet.client import ApiError, Client
from agentfleet.tasks import Task, TaskRequest

TASK = Task(request=TaskRequest(query="q", repo_url="https://github.com/acme/widgets"))


@contextmanager
def dropping_first(answer: bytes, reset: bool = False) -> Iterator[tuple[str, list[bytes]]]:
    """A server on loopback that reads the first request and hangs up without a word (closes, or
    with `reset` resets the connection), then answers the next with `answer` (JSON); the requests
    it read, one per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    seen: list[bytes] = []

    def serve() -> None:
        for n in range(2):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                seen.append(conn.recv(65536))
                if not n and reset:  # a close that sends RST, not FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if n:
                    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(answer)}\r\n"
                    conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # ends an accept still waiting
        listener.close()
        thread.join(timeout=10)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_read_the_server_hung_up_on_is_sent_again_once(reset: bool) -> None:
    with dropping_first(TASK.model_dump_json().encode(), reset) as (url, seen):
        got = Client(url, timeout_s=10).task(TASK.id)
    assert got.id == TASK.id
    assert len(seen) == 2 and all(r.startswith(f"GET /tasks/{TASK.id} ".encode()) for r in seen)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_write_the_server_hung_up_on_is_not_sent_again(reset: bool) -> None:
    with dropping_first(json.dumps({"id": "x"}).encode(), reset) as (url, seen), pytest.raises(ApiError) as failed:
        Client(url, timeout_s=10).submit({"query": "q", "repo_url": "https://github.com/acme/widgets"})
    assert failed.value.status == 0 and "cannot reach" in str(failed.value)
    assert len(seen) == 1, "a submission may have been stored: it is not sent twice"
