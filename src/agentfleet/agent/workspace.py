"""A task's workspace: mirror → checkout at the base commit → setup, once per lockfile hash →
input files; and, after the agent, the patch against the base and the pushed branch.

`settings.workspaces_dir / task.workspace_id` persists between the tasks of a workspace. One
repository is checked out at its root; several each get a subfolder `repo_dirname(url)`.
Ignored files (a .venv, node_modules) survive from task to task: that is how setup results
are reused. Each checkout keeps a random token in `.git/agentfleet.json`; setup markers record
it, so a checkout made afresh runs setup again.

Everything under a workspace is writable by the agent, and git runs here as root: `.git` is
checked for symlinks and its config rewritten before each use (see agent/git.py).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from agentfleet.agent.mirrors import checkout_token, fetch_url, resolve_commit, sync_checkout, update_mirror
from agentfleet.errors import WorkspaceError
from agentfleet.ports import ArtifactStore
from agentfleet.runtime import git
from agentfleet.runtime.files import open_regular, read_small, real_dir, remove_path
from agentfleet.runtime.git import checkout_config, guard_checkout, run_git
from agentfleet.runtime.workspaces import host_index
from agentfleet.settings import Settings
from agentfleet.tasks import WORKSPACE_ID, RepoSpec, Task, input_file_key, redact_url, repo_dirname

SETUP_SCRIPT = ".agentfleet/setup.sh"
LOCKFILES = (
    *("requirements*.txt", "poetry.lock", "uv.lock", "Pipfile", "Pipfile.lock", "pyproject.toml", "setup.py"),
    *("setup.cfg", "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml"),
    *("bun.lockb", "Cargo.toml", "Cargo.lock", "go.mod", "go.sum", "Gemfile", "Gemfile.lock", "composer.json"),
    *("composer.lock", ".python-version", ".nvmrc", ".tool-versions"),
)
"""Files at a checkout's root whose contents decide whether setup must run again."""
OUTPUT_KEEP = 4000
MAX_SETUP_SCRIPT_BYTES = 1 << 20

Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class SetupRun:
    exit_code: int
    output: str


RunSetup = Callable[[Path, str], SetupRun]


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


@dataclass(frozen=True)
class PreparedWorkspace:
    root: Path
    repos: list[RepoCheckout]
    setup: str  # "ran" | "reused" | "none"


@dataclass(frozen=True)
class _SetupStep:
    where: str  # "options.setup" or "<folder>/.agentfleet/setup.sh"
    cwd: Path
    script: str
    repos: tuple[RepoCheckout, ...]


def prepare_workspace(
    task: Task, settings: Settings, artifacts: ArtifactStore, *, emit: Emit, run_setup: RunSetup | None
) -> PreparedWorkspace:
    """Check out every repository of `task` at its base commit, run or reuse setup, copy inputs."""
    specs = task.request.repo_specs()
    multi = len(specs) > 1
    root = _workspace_root(settings, task.workspace_id, multi, emit)
    paths = [root / repo_dirname(spec.url) if multi else root for spec in specs]
    repos = [_prepare_repo(spec, path, settings, emit) for spec, path in zip(specs, paths, strict=True)]
    if multi:
        _drop_other_checkouts(root, {repo.path.name for repo in repos})
    setup = _setup(task, settings, root, repos, emit, run_setup)
    _copy_inputs(task.request.files, root, artifacts, emit)
    return PreparedWorkspace(root=root, repos=repos, setup=setup)


def _workspace_root(settings: Settings, workspace_id: str, multi: bool, emit: Emit) -> Path:
    if not WORKSPACE_ID.match(workspace_id):
        raise WorkspaceError(f"workspace id {workspace_id!r} is not a plain folder name")
    root = settings.workspaces_dir / workspace_id
    single_layout = (root / ".git").exists() or (root / ".git").is_symlink()
    if root.exists() and single_layout == multi:  # one repository before, several now, or back
        remove_path(root)
        emit("workspace", {"step": "reset", "reason": "the repositories of this workspace changed"})
    return real_dir(root)


def _drop_other_checkouts(root: Path, keep: set[str]) -> None:
    for entry in root.iterdir():
        if entry.name not in keep and not entry.is_symlink() and (entry / ".git").is_dir():
            remove_path(entry)


# --- mirror and checkout -----------------------------------------------------------------------


def _prepare_repo(spec: RepoSpec, path: Path, settings: Settings, emit: Emit) -> RepoCheckout:
    shown = redact_url(spec.url)
    mirror, fetched = update_mirror(spec.url, settings.mirrors_dir)
    emit("workspace", {"step": "mirror", "action": fetched, "repo": shown})
    commit = resolve_commit(mirror, spec.ref)
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
    emit("workspace", {"step": "checkout", "action": action, "commit": commit, "repo": shown})
    return RepoCheckout(shown, path, commit, spec.ref, fetch_url=remote, git_config=config, index=index)


# --- setup -------------------------------------------------------------------------------------


def _setup(
    task: Task,
    settings: Settings,
    root: Path,
    repos: list[RepoCheckout],
    emit: Emit,
    run_setup: RunSetup | None,
) -> str:
    steps = _setup_steps(task, root, repos)
    if not steps or run_setup is None:
        reason = {"reason": "no setup runner here"} if steps else {}
        emit("workspace", {"step": "setup", "action": "none", **reason})
        return "none"
    cache = settings.setup_cache_dir / task.workspace_id
    actions = [_setup_once(step, root, cache, emit, run_setup) for step in steps]
    return "ran" if "ran" in actions else "reused"


def _setup_steps(task: Task, root: Path, repos: list[RepoCheckout]) -> list[_SetupStep]:
    """`options.setup` once at the root, or else each repository's own `.agentfleet/setup.sh`."""
    if task.request.options.setup:
        return [_SetupStep("options.setup", root, task.request.options.setup, tuple(repos))]
    steps = []
    for repo in repos:
        script = repo.path / SETUP_SCRIPT
        if not script.is_file() or script.is_symlink():
            continue
        where = (repo.path.relative_to(root) / SETUP_SCRIPT).as_posix()
        data = read_small(script, MAX_SETUP_SCRIPT_BYTES)
        if data is None:
            raise WorkspaceError(f"{where} is not a regular file of at most {MAX_SETUP_SCRIPT_BYTES:,} bytes")
        steps.append(_SetupStep(where, repo.path, data.decode("utf-8", "replace"), (repo,)))
    return steps


def setup_hash(step: _SetupStep, root: Path) -> str:
    """sha256 over the script and the lockfiles at the root of each of the step's checkouts."""
    digest = hashlib.sha256()

    def feed(name: str, data: bytes) -> None:
        digest.update(f"{name}\0{len(data)}\0".encode() + data)

    feed(step.where, step.script.encode())
    for repo in step.repos:
        for name in sorted(os.listdir(repo.path)):
            fh = open_regular(repo.path / name) if _is_lockfile(name) else None
            if fh is not None:
                with fh:
                    size = os.fstat(fh.fileno()).st_size
                    digest.update(f"{(repo.path.relative_to(root) / name).as_posix()}\0{size}\0".encode())
                    while chunk := fh.read(1 << 20):  # streamed: a lockfile may be large
                        digest.update(chunk)
    return digest.hexdigest()


def _is_lockfile(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in LOCKFILES)


def _setup_once(step: _SetupStep, root: Path, cache: Path, emit: Emit, run_setup: RunSetup) -> str:
    digest = setup_hash(step, root)
    token = "+".join(checkout_token(repo.path) for repo in step.repos)
    marker = cache / f"{digest}.json"
    event = {"step": "setup", "hash": digest, "script": step.where}
    if _read_marker(marker).get("token") == token:
        emit("workspace", {**event, "action": "reused"})
        return "reused"
    _forget(cache, step.where)  # a crash or failure from here on leaves no marker for this step
    started = time.monotonic()
    run = run_setup(step.cwd, step.script)
    duration = round(time.monotonic() - started, 3)
    if run.exit_code != 0:
        raise WorkspaceError(
            f"setup ({step.where}) failed with exit code {run.exit_code}; fix the script or the "
            f"lockfiles. Last output:\n{run.output[-2000:]}"
        )
    record = {"script": step.where, "token": token, "exit_code": run.exit_code,
              "output": run.output[-OUTPUT_KEEP:], "duration_s": duration}  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, marker)
    emit("workspace", {**event, "action": "ran", "duration_s": duration})
    return "ran"


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _forget(cache: Path, where: str) -> None:
    for marker in cache.glob("*.json"):
        if _read_marker(marker).get("script") == where:
            marker.unlink(missing_ok=True)


# --- input files -------------------------------------------------------------------------------


def _copy_inputs(files: list[str], root: Path, artifacts: ArtifactStore, emit: Emit) -> None:
    """Each artifact key (or gs://bucket/key) into `.agentfleet/inputs/<basename>`, afresh."""
    inputs = real_dir(root / ".agentfleet") / "inputs"  # a symlinked .agentfleet is removed first
    remove_path(inputs)
    inputs.mkdir()
    for item in files:
        try:
            key = input_file_key(item)
        except ValueError as exc:
            raise WorkspaceError(str(exc)) from None
        name = PurePosixPath(key).name
        if (inputs / name).exists():
            raise WorkspaceError(f"two input files are named {name!r}; rename one of them")
        try:
            artifacts.get_file(key, inputs / name)
        except KeyError:
            raise WorkspaceError(f"input file {item!r} was not found; upload it first") from None
        except ValueError as exc:
            raise WorkspaceError(f"input file {item!r} is not a valid artifact key: {exc}") from None
    emit("workspace", {"step": "files", "count": len(files)})


# --- after the agent ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Changes:
    """What the agent changed in one checkout, as the host's own git sees it."""

    patch_bytes: int
    stat: str
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
    return Changes(patch_bytes=size, stat=stat.rstrip("\n"), nested=nested)


def push_branch(checkout: RepoCheckout, branch: str, message: str) -> None:
    """Commit every change (as write_changes recorded it) on a new branch `branch` at the base
    commit and push it to the repository's origin."""
    index = _guarded_index(checkout)
    if branch.startswith("-") or run_git(checkout.path, "check-ref-format", "--branch", branch, check=False).returncode:
        raise WorkspaceError(f"branch name {branch!r} is not valid; use letters, digits, '-', '_' and '/'")
    git.stage_worktree(checkout.path, index)
    try:
        git.commit_and_push(checkout.path, checkout.base_commit, index, branch, message, checkout.fetch_url or "origin")
    except WorkspaceError as exc:
        raise WorkspaceError(f"could not push branch {branch} to {checkout.url}: {exc}") from None


def _guarded_index(checkout: RepoCheckout) -> Path:
    """The host's index of the checkout, once its `.git` has been checked and our config put back."""
    guard_checkout(checkout.path, checkout.base_commit, checkout.git_config)
    if checkout.index is None:
        raise WorkspaceError(f"{checkout.path} is not a checkout AgentFleet prepared (it has no host index)")
    return checkout.index
