"""The start of the files a reader opens first, for the prompt of a profile that wants it.

A small model asked what a project does tends to answer from the file list alone; shown the
README and the head of the main source files, it answers from what they say. The files are read
on the host as data only: regular files reached by the workspace walk (which never follows a
link), opened without following a link, a bounded number of bytes each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from agentfleet.runtime.files import looks_binary, open_regular

README = re.compile(r"^readme(\.(md|rst|txt|markdown))?$", re.IGNORECASE)
SOURCE_SUFFIXES = {".py", ".js", ".mjs", ".ts", ".go", ".rs", ".java", ".rb", ".sh", ".c", ".h", ".cpp", ".php"}
DATA_SUFFIXES = {".csv", ".log", ".ini", ".toml", ".yaml", ".yml", ".json", ".cfg"}
_TESTS = re.compile(r"(^|/)(tests?|docs?|examples?|benchmarks?)/|(^|/)(test_[^/]*|[^/]*_test\.\w+|conftest\.py)$")
_ENTRY = re.compile(r"(^|/)(main|__main__|cli|app|server|__init__|index|core)\.\w+$")
_BUILD = {"setup.py", "noxfile.py", "fabfile.py", "tasks.py"}
FILE_LINES = 40
FILE_CHARS = 1200
README_CHARS = 1500
MORE = "\n[…]"
"""Ends a file's head when the file goes on."""


def _rank(rel: str) -> tuple[int, int, int] | None:
    """Where a file comes in the excerpt (lower first), or None to leave it out."""
    name = rel.rsplit("/", 1)[-1]
    depth = rel.count("/")
    if README.match(name):
        return (0, depth, 0)
    suffix = Path(name).suffix.lower()
    if _TESTS.search(rel) or name in _BUILD:
        return None
    if suffix in SOURCE_SUFFIXES:
        return (1, depth, 0 if _ENTRY.search(rel) else 1)
    if suffix in DATA_SUFFIXES and depth <= 1:
        return (2, depth, 0)
    return None


def _head(path: Path, limit_chars: int) -> str | None:
    """The first FILE_LINES lines of a regular text file, numbered as `cat -n` does, at most
    `limit_chars`; None for anything else."""
    fh = open_regular(path)
    if fh is None:
        return None
    with fh:
        if looks_binary(fh):
            return None
        data = fh.read(limit_chars * 4 + 4)
    lines = data.decode("utf-8", "replace").splitlines()
    numbered = [f"{n:>4}  {line}" for n, line in enumerate(lines[:FILE_LINES], 1)]
    head = "\n".join(numbered)[:limit_chars]
    more = len(lines) > FILE_LINES or len(head) < len("\n".join(numbered))
    return head + (MORE if more else "")


def excerpt(root: Path, files: Iterable[Path], budget: int) -> str:
    """The heads of the README and the main source files among `files` (walked from `root`), within
    `budget` characters in all; empty when there is nothing to show."""
    ranked = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        rank = _rank(rel)
        if rank is not None and not path.is_symlink():
            ranked.append((rank, rel, path))
    ranked.sort()
    parts: list[str] = []
    left = budget
    for rank, rel, path in ranked:
        title = f"--- {rel} ---\n"
        room = left - len(title) - len(MORE) - 1  # the title, the "more" mark, the newline joining parts
        limit = min(room, README_CHARS if rank[0] == 0 else FILE_CHARS)
        if limit < 200:
            break
        head = _head(path, limit)
        if not head or not head.strip():
            continue
        part = title + head
        parts.append(part)
        left -= len(part) + 1
    return "\n".join(parts)
