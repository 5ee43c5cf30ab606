"""A small git wrapper and the cached bare mirrors.

Every command runs non-interactively (GIT_TERMINAL_PROMPT=0, ssh in batch mode), under a
time limit (GIT_TIMEOUT_S; Settings has no git timeout), with `safe.directory=*` (we run as
root on trees chowned to the sandbox user), with hooks and fsmonitor switched off (a
checkout's `.git` is writable by the agent, so nothing in it may make us run a program),
and with URL credentials stripped from every error message.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentfleet.errors import WorkspaceError
from agentfleet.tasks import workspace_id

GIT_TIMEOUT_S = 600
"""Wall-clock limit of one git command, in seconds."""

_SAFE_CONFIG = (
    "-c", "safe.directory=*", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
    "-c", "protocol.ext.allow=never",
)  # fmt: skip
_ENV_DROP = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES",
})  # fmt: skip
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
MIRROR_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
CHECKOUT_REFSPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
EXCLUDED = ("/.agentfleet/inputs/",)
"""Workspace paths that are never part of a patch, even when tracked."""
BYPRODUCTS = (
    ".venv/", "venv/", "node_modules/", "__pycache__/", "*.py[cod]", ".pytest_cache/",
    ".mypy_cache/", ".ruff_cache/", ".tox/", ".nox/",
)  # fmt: skip
"""Ignored in every checkout (info/exclude) whatever its .gitignore says: new files there never
enter a patch, and setup results there (environments, packages) survive `git clean`."""
_PATHSPEC = ("--", ".", *(f":(exclude,top){path.strip('/')}" for path in EXCLUDED))
_DIFF = ("diff", "--no-color", "--no-ext-diff", "--no-textconv")


def redact_text(text: str) -> str:
    """`text` with the user-info part of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(r"\1***@", text)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C")
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def run_git(
    cwd: Path, *args: str, check: bool = True, input: str | None = None, timeout: float = GIT_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run `git <args>` in `cwd`; WorkspaceError when it fails (if `check`) or runs too long."""
    argv = ["git", *_SAFE_CONFIG, *args]
    with subprocess.Popen(
        argv, cwd=cwd, env=_env(), text=True, encoding="utf-8", errors="surrogateescape",
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    ) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (ssh, remote-https) die with git
            proc.communicate()
            raise WorkspaceError(f"git {args[0]} took longer than {timeout:.0f} s and was stopped") from None
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and result.returncode != 0:
        detail = redact_text((err or out).strip())[-2000:] or f"exit code {result.returncode}"
        raise WorkspaceError(f"git {args[0]} failed: {detail}")
    return result


def fetch_url(url: str) -> str:
    """The URL as git is given it: local paths made absolute, since git runs in other folders."""
    if url.startswith(("/", "./", "../", "~")) or url in (".", ".."):
        return str(Path(url).expanduser().resolve())
    return url


# --- files the agent could have tampered with ------------------------------------------------


def remove_path(path: Path) -> None:
    """Remove a file, symlink or folder (never following a symlink); nothing if absent."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def real_dir(path: Path) -> Path:
    """Make `path` a real folder: whatever stands there that is not one (a symlink) goes."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_new(path: Path, data: str) -> None:
    """Replace `path` by a new regular file; a symlink standing there is removed, not followed."""
    remove_path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)


def has_symlink(folder: Path) -> bool:
    """Whether anything under `folder` is a symlink (git never makes one inside `.git`)."""
    for base, dirs, files in os.walk(folder):
        if any(os.path.islink(os.path.join(base, name)) for name in (*dirs, *files)):
            return True
    return False


def _quote(value: str) -> str:
    if "\x00" in value or "\n" in value:
        raise WorkspaceError("a git config value contains a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def checkout_config(remote_url: str, author_name: str, author_email: str) -> str:
    """The whole `.git/config` of a checkout: written fresh before every use, never trusted."""
    fetch = "".join(f"\tfetch = {spec}\n" for spec in CHECKOUT_REFSPECS)
    return (
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = true\n"
        f'[remote "origin"]\n\turl = {_quote(remote_url)}\n{fetch}'
        f"[user]\n\tname = {_quote(author_name)}\n\temail = {_quote(author_email)}\n"
    )


def check_gitdir(gitdir: Path) -> None:
    """WorkspaceError unless `gitdir` is a plain folder with no symlink anywhere inside."""
    if gitdir.is_symlink() or not gitdir.is_dir() or has_symlink(gitdir):
        raise WorkspaceError(f"{gitdir} is not a plain .git folder (it was replaced or holds symlinks)")


def restore_gitdir(gitdir: Path, config: str) -> None:
    """Put back the config and info/exclude we wrote; drop files that redirect git elsewhere.

    Refuses (WorkspaceError) a `.git` that is a symlink or holds one: we would write through it.
    """
    check_gitdir(gitdir)
    for name in ("commondir", "info/attributes", "objects/info/alternates"):
        remove_path(gitdir / name)
    write_new(gitdir / "config", config)
    lines = "".join(f"{path}\n" for path in (*EXCLUDED, *BYPRODUCTS))
    write_new(real_dir(gitdir / "info") / "exclude", "# AgentFleet: never part of a patch\n" + lines)


# --- mirrors ---------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_mirror(url: str, mirrors_dir: Path) -> tuple[Path, str]:
    """The repository's bare mirror, fetched now; ("created" | "fetched") says which it was."""
    mirrors_dir.mkdir(parents=True, exist_ok=True)
    name = workspace_id(url)
    final = mirrors_dir / f"{name}.git"
    with _locked(mirrors_dir / f"{name}.lock"):
        if final.is_dir():
            _fetch_mirror(final, url)
            return final, "fetched"
        for stale in mirrors_dir.glob(f".tmp-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = mirrors_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        try:
            run_git(mirrors_dir, "init", "--bare", "--quiet", "--", str(tmp))
            _fetch_mirror(tmp, url)
            os.rename(tmp, final)  # a crash before this leaves only a .tmp- folder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, "created"


def _fetch_mirror(mirror: Path, url: str) -> None:
    remote = fetch_url(url)
    run_git(mirror, "fetch", "--prune", "--quiet", "--", remote, *MIRROR_REFSPECS)
    listing = run_git(mirror, "ls-remote", "--symref", "--", remote, "HEAD").stdout
    match = re.search(r"^ref: (refs/heads/\S+)\tHEAD$", listing, re.MULTILINE)
    if match:
        run_git(mirror, "symbolic-ref", "HEAD", match[1])


def resolve_commit(mirror: Path, ref: str | None) -> str | None:
    """The commit `ref` (a branch, tag or sha; None: the default branch) names in the mirror."""
    spec = f"{ref or 'HEAD'}^{{commit}}"
    proc = run_git(mirror, "rev-parse", "--verify", "--quiet", "--end-of-options", spec, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


# --- checkouts -------------------------------------------------------------------------------


def sync_checkout(path: Path, mirror: Path, commit: str, config: str) -> None:
    """Make `path` a clean checkout of `commit`; untracked files go, ignored ones stay."""
    gitdir = real_dir(path) / ".git"
    if gitdir.is_symlink() or not gitdir.is_dir():
        remove_path(gitdir)
        run_git(path, "init", "--quiet", "--template=")
    restore_gitdir(gitdir, config)
    run_git(path, "fetch", "--prune", "--quiet", "--", str(mirror), *CHECKOUT_REFSPECS)
    run_git(path, "checkout", "--force", "--quiet", "--detach", commit)
    run_git(path, "reset", "--hard", "--quiet", commit)
    run_git(path, "clean", "-ffdq")


def checkout_token(path: Path) -> str:
    """A random name for this incarnation of the checkout at `path`, kept in its `.git`."""
    state = path / ".git" / "agentfleet.json"
    try:
        token = json.loads(state.read_text())["token"]
        if isinstance(token, str) and token:
            return token
    except (OSError, ValueError, KeyError, TypeError):
        pass
    token = uuid.uuid4().hex
    write_new(state, json.dumps({"token": token}))
    return token


def guard_checkout(path: Path, base_commit: str, config: str) -> None:
    """Before running git on a checkout the agent has had: check it, put our config back."""
    if path.is_symlink() or not _SHA.match(base_commit):
        raise WorkspaceError(f"{path} is not a checkout AgentFleet prepared")
    if config:
        restore_gitdir(path / ".git", config)
    else:
        check_gitdir(path / ".git")


def working_diff(path: Path, base: str, *flags: str) -> str:
    """`git diff <flags> <base>` of the working tree, new files included (as intent-to-add)."""
    run_git(path, "add", "--all", "--intent-to-add", "--", ".")  # EXCLUDED: ignored via info/exclude
    return run_git(path, *_DIFF, *flags, base, *_PATHSPEC).stdout


def commit_and_push(path: Path, branch: str, message: str, remote: str) -> None:
    """Commit every change on branch `branch` (made afresh at HEAD) and push it to `remote`."""
    run_git(path, "switch", "--quiet", "--force-create", branch)
    run_git(path, "add", "--all", "--", ".")
    run_git(path, "commit", "--quiet", "--no-verify", "--file=-", input=message)
    # forced: the branch belongs to one task, and a retried attempt pushes it again
    run_git(path, "push", "--quiet", "--", remote, f"+HEAD:refs/heads/{branch}")
