"""The composition root: settings → the backends they choose.

Each backend package builds its own (`agentfleet.local.build_backends`,
`agentfleet.gcp.build_backends`); the chosen one is imported only when asked for, so a local run
never loads the Google clients. The seams themselves (`ports.py`, which also holds `Backends`, the
bundle of them) know nothing of this: the graph points one way, adapters → ports.
"""

from __future__ import annotations

from agentfleet.ports import Backends, MemoryStore
from agentfleet.settings import Settings


def build_backends(settings: Settings) -> Backends:
    """The implementations `settings.backend` names."""
    if settings.backend == "gcp":
        from agentfleet import gcp

        return gcp.build_backends(settings)
    from agentfleet import local

    return local.build_backends(settings)


def build_memory(settings: Settings) -> MemoryStore:
    """The MemoryStore alone (`agentfleet run` works a task in its own process with no other backend)."""
    if settings.backend == "gcp":
        from agentfleet.gcp.memory import FirestoreMemoryStore

        return FirestoreMemoryStore.from_settings(settings)
    from agentfleet.local.memory import SqliteMemoryStore

    settings.home.mkdir(parents=True, exist_ok=True)
    return SqliteMemoryStore(settings.home / "memory.db")
