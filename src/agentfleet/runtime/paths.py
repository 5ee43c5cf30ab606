"""Keeping every tool path inside the workspace."""

from __future__ import annotations

import os
from pathlib import Path

from agentfleet.errors import AgentFleetError


class PathEscapeError(AgentFleetError, PermissionError):
    """A path given to a tool points outside the workspace."""


def resolve_in_workspace(root: Path, rel: str) -> Path:
    """Resolve `rel` against `root`; refuse absolute paths, `..` escapes and symlinks pointing out.

    The returned path may not exist yet (for files a patch adds), but every existing component
    of it, symlinks followed, stays inside the workspace.
    """
    if "\x00" in rel:
        raise PathEscapeError(f"path {rel!r} contains a NUL byte")
    if os.path.isabs(rel) or rel.startswith("~"):
        raise PathEscapeError(f"path {rel!r} is absolute; give a path relative to the workspace root")
    root = root.resolve()
    candidate = (root / rel).resolve()
    if candidate != root and root not in candidate.parents:
        raise PathEscapeError(f"path {rel!r} points outside the workspace")
    return candidate
