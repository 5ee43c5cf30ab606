"""Helpers of the shared servers' tests: a system binary they need, a server over streamable HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.net import free_port


def need_binary(path_or_name: str, install: str) -> str:
    """The binary's path; else skip saying how to install it (a failure under AGENTFLEET_REQUIRE_EMULATORS=1)."""
    found = shutil.which(path_or_name)
    if found is None:
        why = f"{path_or_name} is not installed ({install})"
        if os.environ.get("AGENTFLEET_REQUIRE_EMULATORS") == "1":
            pytest.fail(f"AGENTFLEET_REQUIRE_EMULATORS=1 but {why}")
        pytest.skip(why)
    return found


@contextlib.contextmanager
def http_server(module: str, *args: str, env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[str]:
    """`python -m agentfleet.mcp_servers.MODULE` over streamable HTTP on loopback; its /mcp URL."""
    port = free_port()
    argv = [sys.executable, "-m", f"agentfleet.mcp_servers.{module}", "--transport", "streamable-http"]
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(
        [*argv, "--port", str(port), *args], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start listening"
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(timeout=0.05)  # the pause between polls; fails fast if it exited
                assert server.poll() is None, "the server exited"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        server.wait(timeout=10)
        if log is not None:
            out.close()  # type: ignore[union-attr]
