"""The cached bare mirrors of the repositories, and making a checkout from one.

A mirror holds only what the remote has (the agent never writes to it); it is fetched under a
lock per repository (`mirror_lock`, which snapshots take too). A checkout is made clean at a
commit by the host's hardened git (runtime/git.py) with the host's own index, and the agent gets
a copy of that index.

The history crosses the network once: a new mirror is a bare `git clone` (one transfer, whose
pack git checks as it arrives), and a new checkout a local clone of the mirror that copies its
object files (`--no-hardlinks`: the checkout is handed to the sandbox user, so it must share no
file with the mirror). A checkout already there fetches from the mirror only what is new.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import uuid
from pathlib import Path
from typing import Literal

from agentfleet.locks import locked
from agentfleet.names import is_local, workspace_id
from agentfleet.runtime.files import copy_new, real_dir, remove_path, write_new
from agentfleet.runtime.git import CHECKOUT_REFSPECS, restore_gitdir, run_git

MIRROR_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
MirrorAction = Literal["created", "fetched"]
MIRROR_CONFIG = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"


def mirror_lock(mirrors_dir: Path, name: str) -> Path:
    """The lock file of the mirror `name` (a workspace id): whoever reads or writes it holds this."""
    return mirrors_dir / f"{name}.lock"


def fetch_url(url: str) -> str:
    """The URL as git is given it: local paths made absolute, since git runs in other folders."""
    if is_local(url) and not url.startswith("file://"):  # a path, which git would read from its own folder
        return str(Path(url).expanduser().resolve())
    return url


def update_mirror(url: str, mirrors_dir: Path) -> tuple[Path, MirrorAction]:
    """The repository's bare mirror, fetched now, and whether it was created or fetched."""
    mirrors_dir.mkdir(parents=True, exist_ok=True)
    name = workspace_id(url)
    final = mirrors_dir / f"{name}.git"
    with locked(mirror_lock(mirrors_dir, name)):
        if final.is_dir():
            _fetch_mirror(final, url)
            return final, "fetched"
        for stale in mirrors_dir.glob(f".tmp-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = mirrors_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        try:
            _clone_mirror(tmp, url)
            os.rename(tmp, final)  # a crash before this leaves only a .tmp- folder
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, "created"


def _clone_mirror(mirror: Path, url: str) -> None:
    """A new bare mirror of `url`: its branches, tags and HEAD, as `_fetch_mirror` keeps them.
    `--no-local`: a local path is read through git's transport like any remote, never by copying
    or linking its files. The config clone writes (with the URL, which may hold credentials) is
    replaced by a plain one: every fetch names the URL and refspecs itself."""
    remote = fetch_url(url)
    run_git(mirror.parent, "clone", "--bare", "--no-local", "--template=", "--quiet", "--", remote, str(mirror))
    write_new(mirror / "config", MIRROR_CONFIG)


def _fetch_mirror(mirror: Path, url: str) -> None:
    remote = fetch_url(url)
    # no FETCH_HEAD: nothing reads it, and a fetch that brought nothing leaves the mirror as it was
    # (a snapshot is saved only when its mirrors change)
    run_git(mirror, "fetch", "--prune", "--quiet", "--no-write-fetch-head", "--", remote, *MIRROR_REFSPECS)
    listing = run_git(mirror, "ls-remote", "--symref", "--", remote, "HEAD").stdout
    match = re.search(r"^ref: (refs/heads/\S+)\tHEAD$", listing, re.MULTILINE)
    if match and (mirror / "HEAD").read_text().strip() != f"ref: {match[1]}":  # ours: the agent never writes it
        run_git(mirror, "symbolic-ref", "HEAD", match[1])


def resolve_commit(mirror: Path, ref: str | None) -> str | None:
    """The commit `ref` (a branch, tag or sha; None: the default branch) names in the mirror."""
    spec = f"{ref or 'HEAD'}^{{commit}}"
    proc = run_git(mirror, "rev-parse", "--verify", "--quiet", "--end-of-options", spec, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def sync_checkout(path: Path, mirror: Path, commit: str, config: str, index: Path) -> None:
    """Make `path` a clean checkout of `commit`; untracked files go, ignored ones stay.

    Host git reads and writes `index` (ours, outside the workspace); the agent gets a copy."""
    gitdir = real_dir(path) / ".git"
    fresh, empty = "", False
    if gitdir.is_symlink() or not gitdir.is_dir():
        remove_path(gitdir)
        index.unlink(missing_ok=True)  # it described a repository that is gone
        empty = not any(path.iterdir())
        fresh = _clone_checkout(path, mirror)
    restore_gitdir(gitdir, config)
    index.parent.mkdir(parents=True, exist_ok=True)
    if not fresh:
        run_git(path, "fetch", "--prune", "--quiet", "--", str(mirror), *CHECKOUT_REFSPECS)
    # --force resets the index and every tracked file to `commit`, whatever the index said before
    run_git(path, "checkout", "--force", "--quiet", "--detach", commit, index=index)
    if fresh:  # HEAD is detached now: the clone's own branch and origin/HEAD go (see _clone_checkout)
        run_git(path, "update-ref", "--stdin", input=fresh)
    if not empty:  # in a folder that was empty, the checkout wrote all there is
        run_git(path, "clean", "-ffdq", index=index)
    copy_new(index, gitdir / "index")


_CLONE = ".agentfleet-clone"


def _clone_checkout(path: Path, mirror: Path) -> str:
    """A `.git` for `path` made by a local clone of `mirror` that copies its object files
    (`--no-hardlinks`: no file of the mirror is ever handed to the sandbox user). The clone goes
    into a folder of its own (`path` may hold files), then its `.git` moves into place. Returns
    the `update-ref --stdin` lines that drop what a checkout fetched from the mirror would not
    have (the clone's local branch and `origin/HEAD`): it holds `refs/remotes/origin/*`
    (CHECKOUT_REFSPECS) and tags, as a fetch leaves them."""
    tmp = path / _CLONE
    remove_path(tmp)
    run_git(path, "clone", "--no-checkout", "--no-hardlinks", "--template=", "--quiet", "--", str(mirror), _CLONE)
    head = (tmp / ".git" / "HEAD").read_text().strip()  # written by the clone just now
    os.rename(tmp / ".git", path / ".git")
    remove_path(tmp)
    branch = head.removeprefix("ref: ") if head.startswith("ref: refs/heads/") else ""
    return "option no-deref\ndelete refs/remotes/origin/HEAD\n" + (f"delete {branch}\n" if branch else "")


def checkout_token(path: Path) -> str:
    """A random name for this incarnation of the checkout at `path`, kept in its `.git`."""
    state = path / ".git" / "agentfleet.json"
    try:  # the agent can write this file: read only a small regular file, never a FIFO or a link
        fd = os.open(state, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            token = json.loads(fh.read(4096) if stat.S_ISREG(os.fstat(fd).st_mode) else b"")["token"]
        if isinstance(token, str) and token:
            return token
    except (OSError, ValueError, KeyError, TypeError):
        pass
    token = uuid.uuid4().hex
    write_new(state, json.dumps({"token": token}))
    return token
