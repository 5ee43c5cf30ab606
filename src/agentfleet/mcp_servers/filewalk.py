"""Walking a workspace the way git sees it: .gitignore files respected, .git skipped,
symlinks never followed out of the tree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec

ALWAYS_SKIPPED = {".git", ".hg", ".svn"}


def _load_ignore(directory: Path) -> GitIgnoreSpec | None:
    file = directory / ".gitignore"
    try:
        return GitIgnoreSpec.from_lines(file.read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return None


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, GitIgnoreSpec]]) -> bool:
    for base, spec in specs:
        rel = path.relative_to(base).as_posix() + ("/" if is_dir else "")
        if spec.match_file(rel):
            return True
    return False


def _specs_above(root: Path, base: Path) -> list[tuple[Path, GitIgnoreSpec]]:
    """The .gitignore files of `base`'s ancestors inside the workspace."""
    specs = []
    for directory in reversed(base.parents):
        if directory == root or root in directory.parents:
            spec = _load_ignore(directory)
            if spec:
                specs.append((directory, spec))
    return specs


def iter_files(root: Path, base: Path) -> Iterator[Path]:
    """Files under `base` (inside `root`) in sorted order, skipping ignored ones."""
    root, base = root.resolve(), base.resolve()
    yield from _walk(base, _specs_above(root, base))


def _walk(directory: Path, specs: list[tuple[Path, GitIgnoreSpec]]) -> Iterator[Path]:
    own = _load_ignore(directory)
    if own:
        specs = [*specs, (directory, own)]
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name in ALWAYS_SKIPPED or entry.is_symlink():
            if entry.is_symlink() and not _ignored(path, False, specs):
                yield path
            continue
        is_dir = entry.is_dir()
        if _ignored(path, is_dir, specs):
            continue
        if is_dir:
            yield from _walk(path, specs)
        else:
            yield path
