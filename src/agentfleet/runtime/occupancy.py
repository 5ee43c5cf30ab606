"""One attempt at a time in a workspace, and none while a process of an earlier attempt lives.

Two lock files per workspace, under `$AGENTFLEET_HOME/locks/`, outside every workspace:
- `<workspace>.attempt`: the agent holds it, exclusively, for its whole attempt;
- `<workspace>.procs`: every process that acts in the workspace for an attempt holds it shared
  (the agent, while its in-process workspace server lives; a stdio workspace server started by
  another client holds it itself): the commands die with the process that holds it.
An agent that gets `.attempt` then takes `.procs` exclusively, which it can only do once every
process of earlier attempts has ended (cancelled, requeued or killed: a lock goes with its
process, however it dies), and lets it go at once for its own processes to take. It does the
same before the host reads the checkout at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentfleet.errors import WorkspaceError
from agentfleet.locks import acquire, locked
from agentfleet.settings import Settings
from agentfleet.tasks import Emit, EventKind

PROCESSES_WAIT_S = 60.0
"""How long the processes of an earlier attempt may take to end before the attempt gives up."""


@dataclass(frozen=True)
class Occupancy:
    workspace_id: str
    procs: Path
    """The lock file the attempt's processes hold shared while they live."""
    emit: Emit

    def wait_processes_gone(self) -> None:
        """Return once no process holds `procs`; WorkspaceError after PROCESSES_WAIT_S."""
        timeout_s = PROCESSES_WAIT_S

        def waiting() -> None:
            self.emit(EventKind.WORKSPACE, {"step": "wait", "for": "the processes of an earlier attempt to end"})

        try:
            with locked(self.procs, timeout_s=timeout_s, on_wait=waiting):
                pass
        except TimeoutError:
            raise WorkspaceError(
                f"processes started for workspace {self.workspace_id} are still running after {timeout_s:g} s; "
                "they could not be stopped (see the server's log)"
            ) from None


def attempt_lock(settings: Settings, workspace_id: str) -> Path:
    """The lock an attempt holds, exclusively, while it works in the workspace."""
    return settings.home / "locks" / f"{workspace_id}.attempt"


def processes_lock(settings: Settings, workspace_id: str) -> Path:
    """The lock every process acting in the workspace for an attempt holds, shared, while it lives."""
    return settings.home / "locks" / f"{workspace_id}.procs"


@contextmanager
def occupy(settings: Settings, workspace_id: str, emit: Emit) -> Iterator[Occupancy]:
    """Hold the workspace for one attempt: after any attempt before it, and after its processes."""

    def waiting() -> None:
        emit(EventKind.WORKSPACE, {"step": "wait", "for": "the attempt working in this workspace to end"})

    fd = acquire(attempt_lock(settings, workspace_id), on_wait=waiting)
    try:
        occupancy = Occupancy(workspace_id, processes_lock(settings, workspace_id), emit)
        occupancy.wait_processes_gone()
        yield occupancy
    finally:
        os.close(fd)
