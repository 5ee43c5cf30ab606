"""What every command shares: the two consoles, and how a repository argument is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
"""Progress, events and errors."""
out = Console(soft_wrap=True)
"""The result: what a script reads."""


def repo_arg(value: str) -> str:
    """A repository argument: a local path made absolute (the same repository always gets the same
    workspace); anything else (a URL) as it is."""
    candidate = Path(value).expanduser()
    if not value.startswith("-") and candidate.exists():
        return str(candidate.resolve())
    return value


CHECK_HELP = "Acceptance check: a command that must pass for the task to succeed (default: .agentfleet/check)"
MCP_HELP = "Shared MCP server to use, by its configured name (repeatable; AGENTFLEET_MCP_SERVERS)"
SETUP_HELP = "Setup script run in the sandbox before the agent, with network ('' for none; default: see README)"


def mcp_specs(names: list[str] | None) -> list[dict[str, str]] | None:
    """The task's `mcp_servers` option from `--mcp NAME`s (None when none was given)."""
    return [{"name": name} for name in names] if names else None


def task_options(**given: Any) -> dict[str, Any]:
    """The task's `options` from the command line: only what was given, so the defaults stay the server's."""
    return {key: value for key, value in given.items() if value not in (None, False)}
