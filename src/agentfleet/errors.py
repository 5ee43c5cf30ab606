"""The project's error family.

Errors a user can fix carry a message that says what to fix. Each also subclasses the
builtin it most resembles, so callers can catch either. The retry contract of the ports rests on
those builtins: a ConnectionError or TimeoutError means "a retry may help", any other
AgentFleetError "a person must act".

Errors that cross a package boundary live here; those private to a module stay with it (PatchError
in runtime/apply_patch.py, UnsafeArchiveError in agent/snapshot.py, the Google family in
gcp/errors.py, which pairs this base with the same builtins).
"""

from __future__ import annotations

from pydantic import ValidationError


class AgentFleetError(Exception):
    """Base of every error AgentFleet raises on purpose."""


class ConfigError(AgentFleetError, ValueError):
    """A setting is missing or wrong; the message names the setting."""


class InvalidRequestError(AgentFleetError, ValueError):
    """A task request is invalid; the message says what to change."""


class WorkspaceError(AgentFleetError, RuntimeError):
    """Preparing a workspace failed (clone, fetch, checkout, setup)."""


class SandboxUnavailableError(AgentFleetError, RuntimeError):
    """Commands cannot be sandboxed here and unsandboxed execution is not allowed."""


class LLMUnavailableError(AgentFleetError, ConnectionError):
    """The model endpoint cannot be reached or keeps failing."""


class TaskNotFoundError(AgentFleetError, LookupError):
    """No task has that id."""


class ConflictError(AgentFleetError, RuntimeError):
    """The task (or workspace) is not in a state that allows the change (e.g. cancelling a finished task)."""


class RetryableError(AgentFleetError, RuntimeError):
    """A failure a redelivery can fix: the dispatch entry point raises it so the platform retries."""


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line per problem, never echoing the input (it may hold secrets)."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)
