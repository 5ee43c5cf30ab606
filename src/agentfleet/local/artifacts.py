"""ArtifactStore on a local directory. Writes go to a temp file and are renamed into place,
so a reader never sees half an artifact.

Versions: a file's version is `"{inode}-{mtime_ns}"`. Every write is a new file renamed into
place, stamped with an mtime later than the one it replaces, so the version changes on every
write. `put_file_if` compares and renames under an exclusive `fcntl` lock on a sidecar file
(`.lock-<name>` beside the artifact), so of several writers from one version exactly one wins.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from agentfleet.locks import locked
from agentfleet.names import check_artifact_key


def _version(st: os.stat_result) -> str:
    return f"{st.st_ino}-{st.st_mtime_ns}"


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_artifact_key(key)

    @contextmanager
    def _staged(self, key: str, write: Callable[[BinaryIO], object]) -> Iterator[tuple[Path, Path]]:
        """(temp file holding what `write` wrote, its destination); the temp file is gone after."""
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            yield Path(tmp), dest
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _atomic_write(self, key: str, write: Callable[[BinaryIO], object]) -> str:
        with self._staged(key, write) as (tmp, dest):
            _publish(tmp, dest)
        return key

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._atomic_write(key, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path) -> str:
        return self._atomic_write(key, _copier(path))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def get_file(self, key: str, dest: Path) -> Path:
        self.get_file_version(key, dest)
        return dest

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def get_file_version(self, key: str, dest: Path) -> str:
        """Copies from one open file: a write renames a new file in and never touches this one."""
        try:
            src = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise KeyError(key) from None
        with src:
            st = os.fstat(src.fileno())
            dest.parent.mkdir(parents=True, exist_ok=True)
            with dest.open("wb") as out:
                shutil.copyfileobj(src, out)
        return _version(st)

    def put_file_if(self, key: str, path: Path, *, version: str | None) -> str | None:
        with self._staged(key, _copier(path)) as (tmp, dest), locked(dest.with_name(f".lock-{dest.name}")):
            try:
                current: str | None = _version(dest.stat())
            except FileNotFoundError:
                current = None
            if current != version:
                return None
            return _publish(tmp, dest)


def _copier(path: Path) -> Callable[[BinaryIO], None]:
    def copy(fh: BinaryIO) -> None:
        with path.open("rb") as src:
            shutil.copyfileobj(src, fh)

    return copy


def _publish(tmp: Path, dest: Path) -> str:
    """Rename `tmp` onto `dest`, stamped later than what it replaces; the new version."""
    try:
        previous = dest.stat().st_mtime_ns
    except FileNotFoundError:
        previous = 0
    mtime = max(time.time_ns(), previous + 1)
    os.utime(tmp, ns=(mtime, mtime))
    version = _version(tmp.stat())
    os.replace(tmp, dest)
    return version
