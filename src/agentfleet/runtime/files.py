"""Files the agent wrote, handled by the host: read with bounded memory (only regular files are
opened, never a FIFO that blocks or a link; nothing is read whole; a long line is cut at
MAX_LINE_BYTES), and replaced or removed without following a link."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MAX_LINE_BYTES = 4000
"""The most of one line that is kept; the rest is skipped (and counted)."""
_CHUNK = 1 << 20


def open_regular(path: Path) -> BinaryIO | None:
    """`path` opened for reading when it is a regular file (a symlink is not followed); else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def read_small(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes; None for anything else (missing,
    a link, a FIFO, a folder, or bigger)."""
    fh = open_regular(path)
    if fh is None:
        return None
    with fh:
        data = fh.read(limit + 1)
    return data if len(data) <= limit else None


def looks_binary(fh: BinaryIO) -> bool:
    """A NUL byte in the first 8 KiB, as git decides; the file position is kept."""
    where = fh.tell()
    head = fh.read(8192)
    fh.seek(where)
    return b"\x00" in head


def lines(fh: BinaryIO) -> Iterator[tuple[str, int]]:
    """Each line, without its line ending, cut to MAX_LINE_BYTES and decoded; with its whole length
    in bytes (more than MAX_LINE_BYTES: the line was cut)."""
    while chunk := fh.readline(MAX_LINE_BYTES):
        ended = chunk.endswith(b"\n")
        length = len(chunk) - ended
        if not ended and len(chunk) == MAX_LINE_BYTES:  # a long line: count the rest, keep none of it
            while rest := fh.readline(_CHUNK):
                ended = rest.endswith(b"\n")
                length += len(rest) - ended
                if ended:
                    break
        yield chunk.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", "replace"), length


def count_lines(fh: BinaryIO) -> int:
    """The lines from the current position to the end, counted in chunks (memory stays bounded)."""
    count, last = 0, b"\n"
    while chunk := fh.read(_CHUNK):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (last != b"\n")


# --- replacing and removing ---------------------------------------------------------------


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


def copy_new(src: Path, dest: Path) -> None:
    """Replace `dest` by a new regular file with `src`'s bytes; a symlink there is removed, not followed."""
    remove_path(dest)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out, src.open("rb") as data:
        shutil.copyfileobj(data, out)
