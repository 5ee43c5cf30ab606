"""The bearer token of a local `agentfleet serve` when none is configured.

A command in a sandbox allowed onto the network reaches the host's loopback, so a local server
without a token would take tasks from inside a sandbox. `agentfleet serve` therefore always
requires one: AGENTFLEET_API_TOKEN, or else a random token it keeps in `$AGENTFLEET_HOME/api-token`
(mode 0600; the sandbox never sees AGENTFLEET_HOME). The CLI on the same machine reads it there.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE = "api-token"


def read_token(home: Path) -> str | None:
    """The token kept in `home`, or None."""
    try:
        token = (home / FILE).read_text().strip()
    except OSError:
        return None
    return token or None


def local_token(home: Path) -> str:
    """The token kept in `home`, made (and kept, readable by this user only) when there is none."""
    token = read_token(home)
    if token:
        return token
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = home / f".{FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, home / FILE)
    return read_token(home) or token
