"""The Google Cloud implementations of the ports: Firestore (TaskStore, MemoryStore), Pub/Sub (TaskQueue),
Cloud Run Jobs (JobRunner), Cloud Storage (ArtifactStore). Imported only when
AGENTFLEET_BACKEND=gcp; every client honours its emulator variable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfleet.ports import Backends

if TYPE_CHECKING:
    from agentfleet.settings import Settings


def build_backends(settings: Settings) -> Backends:
    from agentfleet.gcp.artifacts import GcsArtifactStore
    from agentfleet.gcp.jobs import CloudRunJobRunner
    from agentfleet.gcp.memory import FirestoreMemoryStore
    from agentfleet.gcp.queue import PubSubTaskQueue
    from agentfleet.gcp.store import FirestoreTaskStore

    return Backends(
        store=FirestoreTaskStore.from_settings(settings),
        queue=PubSubTaskQueue.from_settings(settings),
        jobs=CloudRunJobRunner.from_settings(settings),
        artifacts=GcsArtifactStore.from_settings(settings),
        memory=FirestoreMemoryStore.from_settings(settings),
    )
