"""What a workspace keeps on this machine between its tasks, and forgetting it.

`$AGENTFLEET_HOME/workspaces/<id>` is the checkout (or the folders of several), with whatever
ignored files its tasks and their setup left there; `setup-cache/<id>` holds the setup markers,
`indexes/` the host's own git index of each checkout, `locks/<id>.*` the workspace's locks
(runtime/occupancy.py).
"""

from __future__ import annotations

from pathlib import Path

from agentfleet.errors import WorkspaceError
from agentfleet.locks import locked
from agentfleet.names import WORKSPACE_ID
from agentfleet.runtime.files import remove_path
from agentfleet.runtime.occupancy import attempt_lock
from agentfleet.settings import Settings


def host_index(settings: Settings, checkout: Path) -> Path:
    """Where the host keeps its own index of the checkout at `checkout` (outside every workspace)."""
    relative = checkout.relative_to(settings.workspaces_dir).as_posix()
    return settings.home / "indexes" / f"{relative.replace('/', '--')}.index"


def reset_workspace_files(settings: Settings, workspace_id: str) -> list[str]:
    """Remove what a workspace keeps on this machine between tasks: the checkout with its ignored
    files (environments, build output, anything setup or the agent left there), the setup markers
    (setup runs again) and the host's indexes. The mirrors stay: they hold only what the remote has.
    TimeoutError when an attempt is working in the workspace."""
    if not WORKSPACE_ID.match(workspace_id):
        raise WorkspaceError(f"workspace id {workspace_id!r} is not a plain folder name")
    with locked(attempt_lock(settings, workspace_id), timeout_s=0):
        return _remove(settings, workspace_id)


def forget_workspace(settings: Settings, workspace_id: str) -> list[str]:
    """Remove all of a workspace made for one task (a scratch workspace), its mirror too; the caller
    is the attempt working in it (it holds the workspace's lock)."""
    removed = _remove(settings, workspace_id)
    mirror = settings.mirrors_dir / f"{workspace_id}.git"
    if mirror.exists() or mirror.is_symlink():
        remove_path(mirror)
        removed.append("mirror")
    return removed


def _remove(settings: Settings, workspace_id: str) -> list[str]:
    removed = []
    for name, path in (
        ("checkout", settings.workspaces_dir / workspace_id),
        ("setup markers", settings.setup_cache_dir / workspace_id),
    ):
        if path.exists() or path.is_symlink():
            remove_path(path)
            removed.append(name)
    for index in (settings.home / "indexes").glob(f"{workspace_id}.index"):
        index.unlink()
    for index in (settings.home / "indexes").glob(f"{workspace_id}--*.index"):
        index.unlink()
    return removed
