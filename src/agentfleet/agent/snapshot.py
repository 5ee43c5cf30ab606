"""Workspace snapshots: one gzip'd tar per workspace, `snapshots/<workspace_id>.tar.gz`, holding
(relative to `settings.home`) the mirror of each repository of the task, the checkout with its
ignored setup output (a .venv; not `.agentfleet/inputs`) and the setup markers, so that a fresh
container starts where the workspace's last task left off. Restoring never fails a task: a
missing, unreadable, corrupt or unsafe archive is an event, and the task starts from what is on
disk. Saving is a compare-and-swap on the version restored: when another agent saved first, ours
is dropped ("superseded").

Whether to save is decided by a fingerprint of the mirrors and setup markers only: they change
when a fetch brings something new or setup runs. The checkout is left out on purpose: git
rewrites its index and reflog on every task and the agent edits its files, yet the next task
resets it to a clean checkout of the mirror anyway.

Extraction trusts nothing in the archive: absolute names, '..', duplicates, device files, hard
links to anything but an earlier file of the archive, members reached through a symlink, and
symlinks outside the checkout (or inside a `.git`) refuse the whole archive. Symlinks inside the
checkout may point anywhere (a .venv's `bin/python` points at /usr/bin): they are written as
links, never written through, and the agent can make the same ones itself.

One unit, over ~300 lines: restoring, the archive's safety checks, saving and the fingerprint all
rest on one layout of what is archived.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from agentfleet.agent.mirrors import mirror_lock
from agentfleet.errors import WorkspaceError
from agentfleet.locks import locked
from agentfleet.names import WORKSPACE_ID, snapshot_key, workspace_id
from agentfleet.ports import ArtifactStore
from agentfleet.runtime.files import remove_path
from agentfleet.settings import Settings
from agentfleet.tasks import Emit, EventKind, Task

CONTENT_HASHED = 64 * 1024
"""Files up to this size are fingerprinted by content (git rewrites HEAD and FETCH_HEAD unchanged)."""
SKIPPED = (".agentfleet/inputs",)
"""Paths inside a checkout that are never archived."""
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class UnsafeArchiveError(ValueError):
    """A snapshot member would land outside its folder or is not a plain file, folder or link."""


@dataclass(frozen=True)
class SnapshotState:
    """What restore found: the stored version (None: none) and the fingerprint of the result."""

    key: str
    version: str | None
    fingerprint: str


@dataclass(frozen=True)
class _Layout:
    roots: tuple[str, ...]  # relative to home: mirrors, checkout, setup markers
    mirrors: tuple[str, ...]
    checkout: str
    fingerprinted: tuple[str, ...]

    def lock(self, home: Path, root: str) -> AbstractContextManager[None]:
        """For a mirror, the lock `update_mirror` takes; else none."""
        if root not in self.mirrors:
            return nullcontext()
        mirror = home / root
        return locked(mirror_lock(mirror.parent, mirror.name.removesuffix(".git")))


def _layout(task: Task, settings: Settings) -> _Layout:
    if not WORKSPACE_ID.match(task.workspace_id):
        raise WorkspaceError(f"workspace id {task.workspace_id!r} is not a plain folder name")
    home = settings.home

    def rel(path: Path) -> str:
        return path.relative_to(home).as_posix()

    mirrors = sorted({rel(settings.mirrors_dir / f"{workspace_id(s.url)}.git") for s in task.request.repo_specs()})
    checkout = rel(settings.workspaces_dir / task.workspace_id)
    markers = rel(settings.setup_cache_dir / task.workspace_id)
    return _Layout((*mirrors, checkout, markers), tuple(mirrors), checkout, (*mirrors, markers))


# --- restore -------------------------------------------------------------------------------------


def restore_snapshot(task: Task, settings: Settings, artifacts: ArtifactStore, emit: Emit) -> SnapshotState:
    """Put the workspace's stored snapshot in place under `settings.home`; never raises for a bad one."""
    layout, key, home = _layout(task, settings), snapshot_key(task.workspace_id), settings.home
    started = time.monotonic()
    version = None
    home.mkdir(parents=True, exist_ok=True)
    with _temp_file(home) as archive:
        try:
            version = artifacts.get_file_version(key, archive)
        except KeyError:
            emit(EventKind.WORKSPACE, {"step": "snapshot", "action": "none"})
        except OSError as exc:  # ConnectionError included: start without it
            emit(EventKind.WORKSPACE, {"step": "snapshot", "action": "failed", "error": f"download: {exc}"})
        else:
            _unpack(archive, home, layout, emit, started)
    return SnapshotState(key, version, _fingerprint(home, layout.fingerprinted))


def _unpack(archive: Path, home: Path, layout: _Layout, emit: Emit, started: float) -> None:
    event: dict[str, Any] = {"step": "snapshot", "bytes": archive.stat().st_size}
    staging = Path(tempfile.mkdtemp(dir=home, prefix=".snapshot-restore-"))
    try:
        _extract(archive, staging, layout)
        for root in layout.roots:
            with layout.lock(home, root):
                _swap_in(staging / root, home / root)
    except (UnsafeArchiveError, tarfile.FilterError) as exc:
        emit(EventKind.WORKSPACE, {**event, "action": "refused", "reason": f"unsafe archive: {exc}"})
    except _CORRUPT as exc:
        emit(EventKind.WORKSPACE, {**event, "action": "corrupt", "reason": f"{exc.__class__.__name__}: {exc}"})
    except OSError as exc:
        emit(EventKind.WORKSPACE, {**event, "action": "failed", "error": f"extract: {exc}"})
    else:
        emit(EventKind.WORKSPACE, {**event, "action": "restored", "duration_s": _since(started)})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: Path, staging: Path, layout: _Layout) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        checker = _MemberCheck(layout)
        members = [member for member in tar if checker.accept(member)]
        tar.extractall(staging, members=members, filter="tar")  # its own checks are a second fence


def _swap_in(staged: Path, dest: Path) -> None:
    if not staged.is_dir() or staged.is_symlink():
        return  # not in this archive: keep what is here
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_path(dest)
    os.rename(staged, dest)


class _MemberCheck:
    """Decides member by member, in archive order: extract, skip (not ours), or refuse all."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self.seen: set[str] = set()
        self.files: set[str] = set()
        self.links: set[str] = set()

    def accept(self, member: tarfile.TarInfo) -> bool:
        parts = [p for p in PurePosixPath(member.name).parts if p != "."]
        if member.name.startswith("/") or ".." in parts or not parts:
            raise UnsafeArchiveError(f"{member.name!r} is an absolute path or climbs out with '..'")
        name = "/".join(parts)
        root = next((r for r in self.layout.roots if name == r or name.startswith(r + "/")), None)
        if root is None:
            return False  # another repository's mirror, or not ours: leave it
        if name in self.seen:
            raise UnsafeArchiveError(f"{name!r} appears twice")
        if any("/".join(parts[:i]) in self.links for i in range(1, len(parts))):
            raise UnsafeArchiveError(f"{name!r} would be written through a symbolic link")
        self._check_type(member, name, root)
        self.seen.add(name)
        if member.isreg():
            self.files.add(name)
        elif member.issym():
            self.links.add(name)
        return True

    def _check_type(self, member: tarfile.TarInfo, name: str, root: str) -> None:
        if name == root and not member.isdir():
            raise UnsafeArchiveError(f"{name!r} must be a folder")
        if member.isdir() or member.isreg():
            return
        if member.issym():
            inside = name.removeprefix(root + "/").split("/")
            if root != self.layout.checkout or ".git" in inside:
                raise UnsafeArchiveError(f"{name!r} is a symbolic link where only files and folders belong")
            return
        if member.islnk():
            target = "/".join(p for p in PurePosixPath(member.linkname).parts if p != ".")
            if target not in self.files:
                raise UnsafeArchiveError(f"{name!r} is a hard link to {member.linkname!r}, not to a file before it")
            return
        raise UnsafeArchiveError(f"{name!r} is not a file, folder or link (a device or a pipe)")


# --- save ----------------------------------------------------------------------------------------


SaveResult = Literal["saved", "unchanged", "superseded", "failed"]


def save_snapshot(
    state: SnapshotState, task: Task, settings: Settings, artifacts: ArtifactStore, emit: Emit
) -> SaveResult:
    """Upload the workspace's snapshot if it changed since restore: saved, unchanged, superseded
    (another agent saved first; ours is dropped) or failed (an event; no raise)."""
    layout, home = _layout(task, settings), settings.home
    started = time.monotonic()
    if _fingerprint(home, layout.fingerprinted) == state.fingerprint:
        emit(EventKind.WORKSPACE, {"step": "snapshot", "action": "unchanged"})
        return "unchanged"
    home.mkdir(parents=True, exist_ok=True)
    with _temp_file(home) as archive:
        try:
            _pack(home, layout, archive)
            size = archive.stat().st_size
            version = artifacts.put_file_if(state.key, archive, version=state.version)
        except (OSError, tarfile.TarError) as exc:  # ConnectionError included: the task is unaffected
            emit(EventKind.WORKSPACE, {"step": "snapshot", "action": "failed", "error": f"upload: {exc}"})
            return "failed"
    event = {"step": "snapshot", "bytes": size, "duration_s": _since(started)}
    if version is None:
        emit(
            EventKind.WORKSPACE, {**event, "action": "superseded", "reason": "another task saved this workspace first"}
        )
        return "superseded"
    emit(EventKind.WORKSPACE, {**event, "action": "saved"})
    return "saved"


def _pack(home: Path, layout: _Layout, dest: Path) -> None:
    """A gzip'd PAX tar of the roots, members in sorted order, owned by 0:0, gzip header without time."""
    with (
        dest.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for root in layout.roots:
            skip = {home / root / s for s in SKIPPED} if root == layout.checkout else set()
            with layout.lock(home, root):
                for path in _walk(home / root, skip):
                    _add(tar, path, path.relative_to(home).as_posix())


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(path), arcname)
    if info is None or not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        return  # sockets, pipes, devices: never part of a snapshot
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isreg():
        with path.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        tar.addfile(info)


# --- shared --------------------------------------------------------------------------------------


def _walk(top: Path, skip: Collection[Path] = ()) -> Iterator[Path]:
    """`top` and everything under it in a fixed order, symlinks not followed; nothing if not a folder."""
    if top.is_symlink() or not top.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if base / d not in skip)
        yield base
        yield from (base / name for name in sorted(filenames))
        yield from (base / d for d in dirnames if (base / d).is_symlink())


def _fingerprint(home: Path, roots: tuple[str, ...]) -> str:
    """sha256 over (path, type and mode, size, content or mtime) of everything under `roots`."""
    digest = hashlib.sha256()
    for root in roots:
        for path in _walk(home / root):
            digest.update(f"{path.relative_to(home).as_posix()}\0".encode())
            try:
                digest.update(_entry(path))
            except OSError:  # vanished or unreadable: counts as a change, never as an error
                digest.update(os.urandom(8))
    return digest.hexdigest()


def _entry(path: Path) -> bytes:
    st = path.lstat()
    head = f"{st.st_mode}\0{st.st_size}\0".encode()
    if stat.S_ISLNK(st.st_mode):
        return head + os.readlink(path).encode(errors="surrogateescape")
    if stat.S_ISREG(st.st_mode):
        return head + (path.read_bytes() if st.st_size <= CONTENT_HASHED else b"%d" % st.st_mtime_ns)
    return f"{st.st_mode}\0".encode()  # a folder: its mtime changes with every temp file inside


@contextmanager
def _temp_file(folder: Path) -> Iterator[Path]:
    fd, name = tempfile.mkstemp(dir=folder, prefix=".snapshot-", suffix=".tar.gz")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
