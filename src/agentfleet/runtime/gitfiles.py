"""A repository's refs and object files handled as git lays them out on disk (its files format),
for the few things the host does to a checkout without a git process: reading a mirror's refs,
copying a mirror's object files into a checkout, writing a checkout's refs.

Starting git costs a few milliseconds a process, most of a warm prepare; these are plain file
operations on two folders of one disk. A checkout's `.git` is the agent's, so nothing here
follows a link or opens anything but a regular file there (runtime/files.py), and what it writes
is new files (check_gitdir has refused any link in `.git` before).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from agentfleet.runtime.files import read_small, real_dir, write_new

MIRRORED = ("refs/heads/", "refs/tags/")
"""The refs a mirror keeps of its remote (its fetch refspecs)."""
OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
"""An object id, SHA-1 or SHA-256, as git writes it."""


REFS_LIMIT = 64 << 20
"""The largest packed-refs file read; a bigger one (or anything not a regular file) is left to git."""


def read_refs(gitdir: Path) -> dict[str, str] | None:
    """Every ref under `refs/` of a repository in git's files format, name → its file's value (an
    object id, or `ref: <target>` for a symbolic one): packed-refs, then the loose refs over them.
    None when something is not as git writes it (a ref that is not a small regular file, a
    packed-refs too big). Reads only regular files, never
    through a link, so it is safe on a `.git` the agent has had."""
    refs: dict[str, str] = {}
    path = gitdir / "packed-refs"
    packed = read_small(path, REFS_LIMIT) if path.is_symlink() or path.exists() else b""
    if packed is None:
        return None
    for line in packed.decode("utf-8", "surrogateescape").splitlines():
        if line and line[0] not in "#^":
            value, _, name = line.partition(" ")
            refs[name] = value
    top = gitdir / "refs"
    for base, _, files in os.walk(top):
        for file in files:
            if file.endswith(".lock"):
                continue
            data = read_small(Path(base, file), 4096)
            if data is None:
                return None
            name = os.path.relpath(os.path.join(base, file), gitdir)
            refs[name] = data.decode("utf-8", "surrogateescape").strip()
    return refs


_KEPT_REF_FOLDERS = ("heads", "tags")
"""The folders under `refs/` a `.git` keeps (git init makes them); all else there is the agent's."""


def write_checkout_refs(gitdir: Path, refs: dict[str, str]) -> None:
    """Make a checkout's refs exactly its mirror's, named as a fetch from it names them
    (CHECKOUT_REFSPECS), all in one packed-refs: every loose ref goes (what the agent made or
    moved: branches, tags, symbolic refs, a stash; none is read, so none is followed), and
    packed-refs is written again unless it already says just that. check_gitdir has refused
    any link in `.git`; a FIFO or a folder where a ref was is removed like a file."""
    top = gitdir / "refs"
    for base, dirs, files in os.walk(top, topdown=False):
        for name in files:
            os.unlink(os.path.join(base, name))
        for name in dirs:
            if base != str(top) or name not in _KEPT_REF_FOLDERS:
                os.rmdir(os.path.join(base, name))
    for name in _KEPT_REF_FOLDERS:
        real_dir(top / name)
    packed = _packed_refs(refs)
    if read_small(gitdir / "packed-refs", len(packed) + 1) != packed.encode():
        write_new(gitdir / "packed-refs", packed)


def _packed_refs(refs: dict[str, str]) -> str:
    """The packed-refs of a checkout whose mirror has `refs`: sorted by name, as git sorts them."""
    named = [(_tracking_name(ref), value) for ref, value in refs.items() if ref.startswith(MIRRORED)]
    lines = sorted((name.encode(), f"{value} {name}\n") for name, value in named if OBJECT_ID.match(value))
    return "# pack-refs with: sorted \n" + "".join(line for _, line in lines)


def _tracking_name(name: str) -> str:
    """The name a mirror's ref has in a checkout (CHECKOUT_REFSPECS): its branches under origin/."""
    return "refs/remotes/origin/" + name.removeprefix("refs/heads/") if name.startswith("refs/heads/") else name


_PACK_FILES = (".pack", ".rev", ".idx")
"""The files of a pack a checkout copies, in this order: git finds a pack by its index, so that comes last."""


def copy_objects(mirror: Path, gitdir: Path, limit: int | None) -> bool:
    """Copy each object file of `mirror` that the checkout's `gitdir` lacks (by name: loose objects
    and packs are named by their contents); False, copying nothing, when that is over `limit`."""
    source, dest = mirror / "objects", gitdir / "objects"
    have = _object_files(dest)
    missing = {name: size for name, size in _object_files(source).items() if name not in have}
    if limit is not None and sum(missing.values()) > limit:
        return False
    for name in sorted(missing, key=_copy_order):
        target = dest / name
        real_dir(target.parent)  # objects/ab or objects/pack; check_gitdir has refused any link in .git
        tmp = target.parent / f"tmp_agentfleet_{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "wb") as out, (source / name).open("rb") as data:
            shutil.copyfileobj(data, out)
        os.rename(tmp, target)
    return True


def _copy_order(name: str) -> int:
    """Loose objects first, then each pack's files in _PACK_FILES order."""
    return _PACK_FILES.index(Path(name).suffix) + 1 if name.startswith("pack/") else 0


def _object_files(objects: Path) -> dict[str, int]:
    """The loose objects and pack files under an `objects` folder: name relative to it → size."""
    found: dict[str, int] = {}
    with os.scandir(objects) as top:
        for folder in top:
            loose = len(folder.name) == 2 and all(c in "0123456789abcdef" for c in folder.name)
            if not (loose or folder.name == "pack") or not folder.is_dir(follow_symlinks=False):
                continue
            with os.scandir(folder.path) as inside:
                for file in inside:
                    wanted = not file.name.startswith("tmp") and (loose or file.name.endswith(_PACK_FILES))
                    if wanted and file.is_file(follow_symlinks=False):
                        found[f"{folder.name}/{file.name}"] = file.stat(follow_symlinks=False).st_size
    return found
