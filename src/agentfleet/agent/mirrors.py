"""The cached bare mirrors of the repositories, and making a checkout from one.

A mirror holds only what the remote has (the agent never writes to it); it is fetched under a
lock per repository (`mirror_lock`, which snapshots take too). A checkout is made clean at a
commit by the host's hardened git (runtime/git.py) with the host's own index, and the agent gets
a copy of that index.

The history crosses the network once: a new mirror is a bare `git clone` (one transfer, whose
pack git checks as it arrives); a mirror already there is fetched only when one `ls-remote` shows
the remote's refs moved. A checkout gets copies of the mirror's object files (it is handed to the
sandbox user, so it must share no file with the mirror) and its refs as one packed-refs written
from the mirror's (`_new_gitdir`, `_catch_up`), not by a clone or a fetch: git's transport starts
up to six processes for what is here a copy of a few files between two folders on one disk.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path
from typing import Literal

from agentfleet.errors import WorkspaceError
from agentfleet.locks import locked
from agentfleet.names import is_local, workspace_id
from agentfleet.runtime.files import copy_new, read_small, real_dir, remove_path, write_new
from agentfleet.runtime.git import CHECKOUT_REFSPECS, restore_gitdir, run_git
from agentfleet.runtime.gitfiles import MIRRORED, OBJECT_ID, copy_objects, read_refs, write_checkout_refs

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
    """Bring the mirror up to the remote: one `ls-remote` lists the remote's branches, tags and
    HEAD; the fetch runs only when those differ from the mirror's (read from its files: the mirror
    is ours, written only by our git), and HEAD is moved when the remote's moved."""
    remote = fetch_url(url)
    listing = run_git(mirror, "ls-remote", "--symref", "--", remote, "HEAD", "refs/heads/*", "refs/tags/*").stdout
    remote_refs, head = _parse_listing(listing)
    if remote_refs != _branches_and_tags(read_refs(mirror)):
        # no FETCH_HEAD: nothing reads it, and a fetch that brought nothing leaves the mirror as it was
        # (a snapshot is saved only when its mirrors change)
        run_git(
            mirror,
            "fetch",
            "--prune",
            "--quiet",
            "--no-write-fetch-head",
            "--no-auto-maintenance",
            "--",
            remote,
            *MIRROR_REFSPECS,
        )
        if _wants_gc(mirror / "objects"):
            run_git(mirror, "maintenance", "run", "--auto", "--quiet")
    if head and (mirror / "HEAD").read_text().strip() != f"ref: {head}":  # ours: the agent never writes it
        run_git(mirror, "symbolic-ref", "HEAD", head)


GC_LOOSE_IN_17, GC_PACKS = 27, 50
"""When a mirror may need `gc --auto`, by git's own estimate and defaults: more than gc.auto (6700)
loose objects, counted as gc counts them (those in `objects/17`, times 256), or more than
gc.autoPackLimit (50) packs. A fetch no longer starts `maintenance --auto` to ask each time."""


def _wants_gc(objects: Path) -> bool:
    loose = [name for name in _listing(objects / "17") if len(name) == 38]
    packs = [name for name in _listing(objects / "pack") if name.endswith(".pack")]
    return len(loose) > GC_LOOSE_IN_17 or len(packs) > GC_PACKS


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _parse_listing(listing: str) -> tuple[dict[str, str], str]:
    """The branches and tags (name → object) an `ls-remote --symref` printed, and the branch its
    HEAD names ('' when none)."""
    refs, head = {}, ""
    for line in listing.splitlines():
        value, _, name = line.partition("\t")
        if name == "HEAD" and value.startswith("ref: refs/heads/"):
            head = value.removeprefix("ref: ")
        elif name.startswith(MIRRORED) and not name.endswith("^{}"):
            refs[name] = value
    return refs, head


def _branches_and_tags(refs: dict[str, str] | None) -> dict[str, str] | None:
    return None if refs is None else {k: v for k, v in refs.items() if k.startswith(MIRRORED)}


def resolve_commit(mirror: Path, ref: str | None) -> str | None:
    """The commit `ref` (a branch, tag or sha; None: the default branch) names in the mirror."""
    branch = _branch_commit(mirror, ref)
    if branch:
        return branch
    spec = f"{ref or 'HEAD'}^{{commit}}"
    proc = run_git(mirror, "rev-parse", "--verify", "--quiet", "--end-of-options", spec, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


_DWIM = ("{}", "refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}", "refs/remotes/{}/HEAD")
"""Where rev-parse looks for a name, in its order (git's ref_rev_parse_rules)."""


def _branch_commit(mirror: Path, ref: str | None) -> str | None:
    """The commit of `ref` read from the mirror's files when it names a branch the way rev-parse
    would take it (git lets a branch hold only a commit); None for anything else (a tag, a sha, an
    expression), which rev-parse then resolves."""
    if ref is None or ref == "HEAD":
        head = read_small(mirror / "HEAD", 4096) or b""
        ref = head.decode("utf-8", "replace").strip().removeprefix("ref: refs/heads/")
        if not head.startswith(b"ref: refs/heads/"):
            return None
    refs = read_refs(mirror) or {}
    found = next((rule.format(ref) for rule in _DWIM if rule.format(ref) in refs), "")
    value = refs.get(found, "")
    return value if found.startswith("refs/heads/") and OBJECT_ID.match(value) else None


def sync_checkout(path: Path, mirror: Path, commit: str, config: str, index: Path) -> None:
    """Make `path` a clean checkout of `commit`; untracked files go, ignored ones stay.

    Host git reads and writes `index` (ours, outside the workspace); the agent gets a copy."""
    gitdir = real_dir(path) / ".git"
    fresh = empty = False
    if gitdir.is_symlink() or not gitdir.is_dir():
        remove_path(gitdir)
        index.unlink(missing_ok=True)  # it described a repository that is gone
        empty = not any(path.iterdir())
        _new_gitdir(path, mirror)
        fresh = True
    restore_gitdir(gitdir, config)
    index.parent.mkdir(parents=True, exist_ok=True)
    if not fresh:
        _catch_up(path, mirror)
    # --force resets the index and every tracked file to `commit`, whatever the index said before
    run_git(path, "checkout", "--force", "--quiet", "--detach", commit, index=index)
    if not empty:  # in a folder that was empty, the checkout wrote all there is
        run_git(path, "clean", "-ffdq", index=index)
    copy_new(index, gitdir / "index")


COPY_LIMIT = 32 << 20
"""The most bytes of object files a checkout copies from its mirror to catch up. More (the mirror
was repacked since) and it fetches from the mirror instead, which sends only the objects it lacks."""


def _catch_up(path: Path, mirror: Path) -> None:
    """Give a checkout its mirror's objects and refs, as `git fetch` from the mirror would, without
    its six processes: the object files the checkout lacks are copied (new files: nothing is shared
    with the mirror, which is ours), then its refs are made the mirror's (write_checkout_refs). A copy over
    COPY_LIMIT (the mirror was repacked) is left to the fetch, which sends only what is missing."""
    gitdir = path / ".git"
    refs = _mirror_refs(mirror)
    try:
        copied = copy_objects(mirror, gitdir, COPY_LIMIT)
    except OSError as exc:  # the agent left no object folder, or something else where one should be
        raise WorkspaceError(f"{gitdir}/objects cannot take the mirror's objects: {exc}") from None
    if not copied:
        run_git(path, "fetch", "--prune", "--quiet", "--", str(mirror), *CHECKOUT_REFSPECS)
    try:
        write_checkout_refs(gitdir, refs)
    except OSError as exc:
        raise WorkspaceError(f"{gitdir}/refs cannot be put back: {exc}") from None


def _mirror_refs(mirror: Path) -> dict[str, str]:
    refs = read_refs(mirror)
    if refs is None:
        raise WorkspaceError(f"the mirror {mirror} holds refs that are not plain files")
    return refs


_NEW_GITDIR = ".agentfleet-clone"


def _new_gitdir(path: Path, mirror: Path) -> None:
    """A `.git` for `path` made from its mirror's files, as a local `git clone --no-hardlinks` makes
    it, without the clone's process: the mirror's object files copied (new files: no file of the
    mirror is ever handed to the sandbox user), its refs written as one packed-refs as a fetch
    from the mirror names them (CHECKOUT_REFSPECS: branches under `refs/remotes/origin/`, tags),
    no local branch, and a HEAD the checkout then detaches. Made in a folder of its own (`path`
    may hold files), then moved into place, so a crash never leaves half a `.git`."""
    refs = _mirror_refs(mirror)
    tmp = path / _NEW_GITDIR
    remove_path(tmp)
    for folder in ("objects/pack", "objects/info", "info"):
        (tmp / folder).mkdir(parents=True)
    write_new(tmp / "HEAD", "ref: refs/heads/main\n")  # unborn until the checkout detaches it
    copy_objects(mirror, tmp, limit=None)
    write_checkout_refs(tmp, refs)
    os.rename(tmp, path / ".git")


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
