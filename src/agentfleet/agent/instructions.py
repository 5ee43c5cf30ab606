"""The repository's own instructions for agents: `AGENTS.md` files (the convention Codex and Jules
follow), read into the prompt.

Which folders: known before the loop starts, from the task alone: each checkout's root, and each
folder the query names (a path in the query, such as `src/api/routes.py` or `docs/`, that is a file
or folder of a checkout), with every folder between the checkout's root and it, root first (a
deeper file refines the ones above it). At most MAX_FOLDERS folders.

Everything in a checkout is hostile, and this runs on the host: a folder counts only when each of
its parts below the checkout's root is a real folder (no symlink is followed, no `..`, no `.git`);
`AGENTS.md` is opened through runtime/files.py's one hardened path (no symlink followed, a regular
file only, so a FIFO or device is skipped without blocking) and read as data, at most
MAX_FILE_BYTES of each and MAX_TOTAL_BYTES in all; what was cut or skipped is said in the prompt
and in the event.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from agentfleet.runtime.files import open_regular

FILE_NAME = "AGENTS.md"
MAX_FILE_BYTES = 8 * 1024
MAX_TOTAL_BYTES = 16 * 1024
MAX_FOLDERS = 8
_PATHLIKE = re.compile(r"[\w@+-][\w.@+/-]*")


@dataclass
class Instructions:
    """What was read: the prompt's text, and for the event each file read or skipped."""

    text: str = ""
    read: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def event(self) -> dict[str, Any]:
        return {"step": "instructions", "read": self.read, "skipped": self.skipped}


def _real_folder(base: Path, parts: tuple[str, ...]) -> Path | None:
    """`base/parts…` when every part is a real folder (lstat: a symlink is not one); else None."""
    folder = base
    for part in parts:
        if part in ("", ".", "..", ".git") or "/" in part:  # never an absolute part
            return None
        folder = folder / part
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return None
        except OSError:
            return None
    return folder


def _named_folders(query: str, root: Path, checkout: Path) -> list[tuple[str, ...]]:
    """The folders (parts below `checkout`) that paths in `query` name, with their parents."""
    prefix = checkout.relative_to(root).parts
    found: list[tuple[str, ...]] = []
    for token in _PATHLIKE.findall(query):
        token = token.rstrip(".")
        if "/" not in token and "." not in token:
            continue
        parts = PurePosixPath(token).parts
        if prefix and parts[: len(prefix)] == prefix:
            parts = parts[len(prefix) :]
        while parts and _real_folder(checkout, parts) is None:  # a file, or not there: its folder
            parts = parts[:-1]
        for depth in range(1, len(parts) + 1):
            if parts[:depth] not in found:
                found.append(parts[:depth])
    return found


def folders(query: str, root: Path, checkouts: list[Path]) -> list[tuple[Path, tuple[str, ...]]]:
    """The folders whose AGENTS.md the task reads: (checkout, parts below it), root first."""
    chosen: list[tuple[Path, tuple[str, ...]]] = []
    for checkout in checkouts:
        for parts in [(), *_named_folders(query, root, checkout)]:
            if (checkout, parts) not in chosen:
                chosen.append((checkout, parts))
    return chosen[:MAX_FOLDERS]


def read_instructions(query: str, root: Path, checkouts: list[Path]) -> Instructions:
    """The AGENTS.md files of the task's folders, bounded, as a prompt section."""
    found = Instructions()
    sections: list[str] = []
    budget = MAX_TOTAL_BYTES
    for checkout, parts in folders(query, root, checkouts):
        folder = _real_folder(checkout, parts)
        if folder is None:
            continue
        path = folder / FILE_NAME
        shown = path.relative_to(root).as_posix()
        why = _not_readable(path)
        if why is not None:
            if why:
                found.skipped.append({"path": shown, "why": why})
            continue
        if budget <= 0:
            found.skipped.append({"path": shown, "why": f"over the {MAX_TOTAL_BYTES:,} bytes shown in all"})
            continue
        text, size, cut = _read(path, min(MAX_FILE_BYTES, budget))
        if text is None:
            found.skipped.append({"path": shown, "why": "not a regular file"})
            continue
        budget -= len(text.encode())
        found.read.append({"path": shown, "bytes": size, "cut": cut})
        note = f"\n[cut: {shown} is {size:,} bytes; the first part is shown, read_file shows the rest]" if cut else ""
        sections.append(f"--- {shown} ---\n{text.strip()}{note}")
    found.text = "\n".join(sections)
    return found


def _not_readable(path: Path) -> str | None:
    """None when `path` may be read; '' when there is nothing there; else why it is skipped."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "a symlink (not followed)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _read(path: Path, most: int) -> tuple[str | None, int, bool]:
    """(the first `most` bytes decoded, the file's size, whether it was cut); None when the file is
    no longer a regular one (replaced between the check and the open)."""
    fh = open_regular(path)
    if fh is None:
        return None, 0, False
    with fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(most + 1)
    cut = len(data) > most or size > most
    return data[:most].decode("utf-8", "replace"), size, cut
