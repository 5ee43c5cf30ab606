"""An ASGI app served on loopback for the length of a `with` block (tests and benches)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from agentfleet.net import free_port
from agentfleet.testing.polling import wait_for


@contextlib.contextmanager
def serving(app: Any, *, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Serve `app` on `port` (default: a free one) of `host`; yields its base URL (`http://host:port`);
    stops it after. Pass a port when the app must know its own address (an A2A agent's card)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"asgi-{port}", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout_s=30, what=f"the app on {host}:{port} to start")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
