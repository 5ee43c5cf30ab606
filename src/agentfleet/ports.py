"""The seams. Each port has a local implementation (agentfleet.local) and a gcp one
(agentfleet.gcp); implementations do not inherit from these protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class ArtifactStore(Protocol):
    """Patches, logs, input files and workspace snapshots, addressed by a relative key."""

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store `data` under `key`, replacing what was there; return the key."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The bytes under `key`; KeyError when there are none."""
        ...

    def put_file(self, key: str, path: Path) -> str:
        """Store a local file under `key`; return the key."""
        ...

    def get_file(self, key: str, dest: Path) -> Path:
        """Write the object under `key` to `dest`; KeyError when there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def uri(self, key: str) -> str:
        """Where a person can find the artifact (a path or gs:// URI)."""
        ...
