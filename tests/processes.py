"""Finding the processes a test started, by a unique marker in their command line."""

from __future__ import annotations

import uuid
from pathlib import Path


def pids_running(marker: str) -> list[int]:
    """Processes (not yet zombies: those have an empty command line) whose argv holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def unique_sleep_seconds() -> str:
    """An argument for `sleep` (about 300 s) that no other process has: its marker."""
    return f"300.{uuid.uuid4().int % 10**12:012d}"
