"""Embedded local implementations of the ports (no cloud account needed): SQLite store, queue and memory,
agent processes as the job runner, a directory of artifacts; and `agentfleet serve`'s process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfleet.ports import Backends

if TYPE_CHECKING:
    from agentfleet.settings import Settings


def build_backends(settings: Settings) -> Backends:
    from agentfleet.local.artifacts import LocalArtifactStore
    from agentfleet.local.jobs import LocalJobRunner
    from agentfleet.local.memory import SqliteMemoryStore
    from agentfleet.local.queue import SqliteTaskQueue
    from agentfleet.local.store import SqliteTaskStore

    settings.home.mkdir(parents=True, exist_ok=True)
    return Backends(
        store=SqliteTaskStore(settings.home / "tasks.db"),
        queue=SqliteTaskQueue(settings.home / "queue.db"),
        jobs=LocalJobRunner(settings),
        artifacts=LocalArtifactStore(settings.artifacts_dir),
        memory=SqliteMemoryStore(settings.home / "memory.db"),
    )
