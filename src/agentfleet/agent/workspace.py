"""A task's workspace: mirror → checkout at the base commit → setup (agent/setup.py) → input
files; and, after the agent, the patch against the base and the pushed branch.

`settings.workspaces_dir / task.workspace_id` persists between the tasks of a workspace. One
repository is checked out at its root; several each get a subfolder `repo_dirname(url)`.
Ignored files (a .venv, node_modules) survive from task to task: that is how setup results
are reused. Each checkout keeps a random token in `.git/agentfleet.json`; setup markers record
it, so a checkout made afresh runs setup again.

Everything under a workspace is writable by the agent, and git runs here as root: `.git` is
checked for symlinks and its config rewritten before each use (runtime/git.py).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from agentfleet.agent.followup import continue_chain
from agentfleet.agent.mirrors import fetch_url, resolve_commit, sync_checkout, update_mirror
from agentfleet.agent.setup import RunSetup, SetupAction, SetupRun, run_setups
from agentfleet.errors import WorkspaceError
from agentfleet.names import WORKSPACE_ID, input_file_key, redact_url, repo_dirname
from agentfleet.ports import ArtifactStore
from agentfleet.runtime import git
from agentfleet.runtime.files import real_dir, remove_path
from agentfleet.runtime.git import checkout_config, guard_checkout, run_git
from agentfleet.runtime.workspaces import host_index
from agentfleet.settings import Settings
from agentfleet.tasks import Emit, EventKind, RepoSpec, RepoStart, Task

__all__ = ["PreparedWorkspace", "RepoCheckout", "SetupRun", "prepare_workspace", "push_branch", "write_changes"]


@dataclass(frozen=True)
class RepoCheckout:
    url: str  # redacted
    path: Path
    base_commit: str
    ref: str | None
    fetch_url: str = field(default="", repr=False, compare=False)
    """Where the branch is pushed; '' means the checkout's `origin`."""
    git_config: str = field(default="", repr=False, compare=False)
    """The `.git/config` we wrote, put back before each git command we run after the agent."""
    index: Path | None = field(default=None, repr=False, compare=False)
    """The host's own index of this checkout, outside the workspace (never the agent's `.git/index`)."""
    key: str = ""
    """The repository's name in the task (its folder name; '' for a scratch workspace): RepoOutcome.name."""


@dataclass(frozen=True)
class PreparedWorkspace:
    root: Path
    repos: list[RepoCheckout]
    setup: SetupAction
    scratch: bool = False
    """Made for this task alone (input files, no repository): removed after it."""


def prepare_workspace(
    task: Task, settings: Settings, artifacts: ArtifactStore, *, emit: Emit, run_setup: RunSetup | None
) -> PreparedWorkspace:
    """Check out every repository of `task` at its base commit, run or reuse setup, copy inputs.
    A task with input files and no repository gets a scratch workspace instead."""
    specs = task.request.repo_specs()
    if not specs:
        return _prepare_scratch(task, settings, artifacts, emit)
    multi = len(specs) > 1
    root = _workspace_root(settings, task.workspace_id, multi, emit)
    paths = [root / repo_dirname(spec.url) if multi else root for spec in specs]
    starts = task.followup.repos if task.followup else {}
    repos = [
        _prepare_repo(spec, path, settings, emit, starts.get(repo_dirname(spec.url)), artifacts)
        for spec, path in zip(specs, paths, strict=True)
    ]
    if multi:
        _drop_other_checkouts(root, {repo.path.name for repo in repos})
    setup = run_setups(task, settings, root, [repo.path for repo in repos], emit, run_setup)
    _copy_inputs(task.request.files, root, artifacts, emit)
    return PreparedWorkspace(root=root, repos=repos, setup=setup)


def _workspace_root(settings: Settings, workspace_id: str, multi: bool, emit: Emit) -> Path:
    if not WORKSPACE_ID.match(workspace_id):
        raise WorkspaceError(f"workspace id {workspace_id!r} is not a plain folder name")
    root = settings.workspaces_dir / workspace_id
    single_layout = (root / ".git").exists() or (root / ".git").is_symlink()
    if root.exists() and single_layout == multi:  # one repository before, several now, or back
        remove_path(root)
        emit(EventKind.WORKSPACE, {"step": "reset", "reason": "the repositories of this workspace changed"})
    return real_dir(root)


def _drop_other_checkouts(root: Path, keep: set[str]) -> None:
    for entry in root.iterdir():
        if entry.name not in keep and not entry.is_symlink() and (entry / ".git").is_dir():
            remove_path(entry)


# --- mirror and checkout -----------------------------------------------------------------------


def _prepare_repo(
    spec: RepoSpec, path: Path, settings: Settings, emit: Emit, start: RepoStart | None, artifacts: ArtifactStore
) -> RepoCheckout:
    """The checkout at the spec's ref, or for a follow-up at its start (a commit, then the chain's patches)."""
    shown = redact_url(spec.url)
    mirror, fetched = update_mirror(spec.url, settings.mirrors_dir)
    emit(EventKind.WORKSPACE, {"step": "mirror", "action": fetched, "repo": shown})
    commit = resolve_commit(mirror, start.commit if start and start.commit else spec.ref)
    if commit is None and start and start.commit:
        raise WorkspaceError(f"commit {start.commit} of the follow-up's chain is no longer in {shown}")
    if commit is None and spec.ref is not None:
        raise WorkspaceError(f"ref {spec.ref!r} not found in {shown}; give an existing branch, tag or commit")
    if commit is None:
        raise WorkspaceError(f"{shown} has no commit on its default branch; push one or give a ref")
    remote = fetch_url(spec.url)
    config = checkout_config(remote, settings.git_author_name, settings.git_author_email)
    index = host_index(settings, path)
    reused = (path / ".git").is_dir()
    try:
        sync_checkout(path, mirror, commit, config, index)
    except WorkspaceError:
        if not reused:
            raise
        remove_path(path)  # a damaged or tampered checkout: make it again from the mirror
        reused = False
        sync_checkout(path, mirror, commit, config, index)
    action = "reused" if reused else "cloned"
    emit(EventKind.WORKSPACE, {"step": "checkout", "action": action, "commit": commit, "repo": shown})
    if start and start.patches:
        commit = continue_chain(path, mirror, commit, start.patches, artifacts, (config, index), emit)
    key = repo_dirname(spec.url)
    return RepoCheckout(shown, path, commit, spec.ref, fetch_url=remote, git_config=config, index=index, key=key)


# --- a scratch workspace -------------------------------------------------------------------------

SCRATCH_URL = "scratch (the task's input files)"


def _prepare_scratch(task: Task, settings: Settings, artifacts: ArtifactStore, emit: Emit) -> PreparedWorkspace:
    """A fresh workspace holding the task's input files at its root, committed as the base: the
    patch is then what the agent adds or changes. Its mirror is made here, from the files alone."""
    root = _workspace_root(settings, task.workspace_id, False, emit)
    remove_path(root)
    root = real_dir(root)
    mirror = settings.mirrors_dir / f"{task.workspace_id}.git"
    remove_path(mirror)
    settings.mirrors_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="agentfleet-inputs-") as tmp:
        files = _fetch_inputs(task.request.files, Path(tmp), artifacts)
        author = (settings.git_author_name, settings.git_author_email)
        commit = git.commit_files(mirror, files, "the task's input files", author)
    config = checkout_config(str(mirror), settings.git_author_name, settings.git_author_email)
    index = host_index(settings, root)
    sync_checkout(root, mirror, commit, config, index)
    emit(EventKind.WORKSPACE, {"step": "scratch", "files": [name for name, _ in files], "commit": commit})
    emit(EventKind.WORKSPACE, {"step": "files", "count": len(files)})
    start = task.followup.repos.get("") if task.followup else None
    if start and start.patches:
        commit = continue_chain(root, mirror, commit, start.patches, artifacts, (config, index), emit)
    checkout = RepoCheckout(SCRATCH_URL, root, commit, None, fetch_url=str(mirror), git_config=config, index=index)
    return PreparedWorkspace(root=root, repos=[checkout], setup="none", scratch=True)


def task_input_names(task: Task) -> list[str]:
    """The names the task's input files have in its workspace."""
    return [PurePosixPath(input_file_key(item)).name for item in task.request.files]


def _fetch_inputs(items: list[str], into: Path, artifacts: ArtifactStore) -> list[tuple[str, Path]]:
    """Each input file fetched into `into` under its base name: (name, path) in the given order."""
    fetched: list[tuple[str, Path]] = []
    for item in items:
        try:
            key = input_file_key(item)
        except ValueError as exc:
            raise WorkspaceError(str(exc)) from None
        name = PurePosixPath(key).name
        if (into / name).exists():
            raise WorkspaceError(f"two input files are named {name!r}; rename one of them")
        try:
            artifacts.get_file(key, into / name)
        except KeyError:
            raise WorkspaceError(f"input file {item!r} was not found; upload it first (POST /files)") from None
        except ValueError as exc:
            raise WorkspaceError(f"input file {item!r} is not a valid artifact key: {exc}") from None
        fetched.append((name, into / name))
    return fetched


# --- input files -------------------------------------------------------------------------------


def _copy_inputs(files: list[str], root: Path, artifacts: ArtifactStore, emit: Emit) -> None:
    """Each artifact key (or gs://bucket/key) into `.agentfleet/inputs/<basename>`, afresh."""
    inputs = real_dir(root / ".agentfleet") / "inputs"  # a symlinked .agentfleet is removed first
    if inputs.is_symlink() or not inputs.is_dir() or os.listdir(inputs):  # an empty folder stays (rmdir is slow)
        remove_path(inputs)
        inputs.mkdir()
    _fetch_inputs(files, inputs, artifacts)
    emit(EventKind.WORKSPACE, {"step": "files", "count": len(files)})


# --- after the agent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What the agent changed in one checkout, as the host's own git sees it."""

    patch_bytes: int
    stat: str
    files: list[str]
    """The paths the patch changes."""
    nested: list[str]
    """Nested repositories (folders with a `.git` of their own) left out of the patch."""


def write_changes(checkout: RepoCheckout, dest: IO[bytes], limit: int) -> Changes:
    """Write the binary patch from the base commit to the working tree (new files included) to
    `dest`, at most `limit` bytes of it, and describe it (`patch_bytes` is the whole size).
    The working tree is recorded in the host's own index first."""
    index = _guarded_index(checkout)
    nested = git.stage_worktree(checkout.path, index)
    size = git.write_diff(checkout.path, checkout.base_commit, index, nested, dest, limit)
    stat = git.diff_stat(checkout.path, checkout.base_commit, index, nested) if size else ""
    files = git.changed_files(checkout.path, checkout.base_commit, index, nested) if size else []
    return Changes(patch_bytes=size, stat=stat.rstrip("\n"), files=files, nested=nested)


def changed_paths(checkout: RepoCheckout) -> list[str]:
    """The paths the agent has changed so far in `checkout` (new files included), as the host's own
    git sees them through the same guarded index as the patch."""
    index = _guarded_index(checkout)
    nested = git.stage_worktree(checkout.path, index)
    return git.changed_files(checkout.path, checkout.base_commit, index, nested)


def push_branch(checkout: RepoCheckout, branch: str, message: str, *, force: bool = True) -> str:
    """Commit every change (as write_changes recorded it) on the base commit and push it to the
    repository's origin as `branch`; the commit. `force=False` (a follow-up) only adds it on top of
    the branch as it is: PushRejectedError when the remote holds commits it does not build on."""
    index = _guarded_index(checkout)
    if branch.startswith("-") or run_git(checkout.path, "check-ref-format", "--branch", branch, check=False).returncode:
        raise WorkspaceError(f"branch name {branch!r} is not valid; use letters, digits, '-', '_' and '/'")
    git.stage_worktree(checkout.path, index)
    remote = checkout.fetch_url or "origin"
    try:
        return git.commit_and_push(checkout.path, checkout.base_commit, index, branch, message, remote, force=force)
    except git.PushRejectedError as exc:
        raise git.PushRejectedError(
            f"the remote {checkout.url} rejected the push to {branch}: it holds commits this task did not start "
            f"from (someone else pushed to it); nothing was forced. ({exc})"
        ) from None
    except WorkspaceError as exc:
        raise WorkspaceError(f"could not push branch {branch} to {checkout.url}: {exc}") from None


def _guarded_index(checkout: RepoCheckout) -> Path:
    """The host's index of the checkout, once its `.git` has been checked and our config put back."""
    guard_checkout(checkout.path, checkout.base_commit, checkout.git_config)
    if checkout.index is None:
        raise WorkspaceError(f"{checkout.path} is not a checkout AgentFleet prepared (it has no host index)")
    return checkout.index
