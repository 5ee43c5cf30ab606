"""Walking a workspace the way git sees it: .gitignore files (and the byproducts every
checkout ignores) respected, .git skipped, symlinks listed as links and never followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec

from agentfleet.runtime.files import read_small
from agentfleet.runtime.git import BYPRODUCTS

ALWAYS_SKIPPED = {".git", ".hg", ".svn"}
MAX_IGNORE_BYTES = 1 << 20
"""A bigger .gitignore is not read (the listing then shows what it would have hidden)."""
_BYPRODUCTS = GitIgnoreSpec.from_lines(BYPRODUCTS)


def _load_ignore(directory: Path) -> GitIgnoreSpec | None:
    data = read_small(directory / ".gitignore", MAX_IGNORE_BYTES)
    return None if data is None else GitIgnoreSpec.from_lines(data.decode("utf-8", "replace").splitlines())


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
    yield from _walk(base, [(root, _BYPRODUCTS), *_specs_above(root, base)])


def entry(root: Path, path: Path) -> str:
    """How a listing shows `path`: relative to `root`, and a symlink as `link -> target`."""
    rel = relative(root, path)
    if path.is_symlink():
        try:
            return f"{rel} -> {os.readlink(path)}"
        except OSError:
            return f"{rel} -> ?"
    return rel


def relative(root: Path, path: Path) -> str:
    """`path` relative to `root`, a symlink's own name (never what it points to)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:  # `path` spelled through a link of its parents: resolve those, not it
        return (path.parent.resolve() / path.name).relative_to(root.resolve()).as_posix()


def _walk(directory: Path, specs: list[tuple[Path, GitIgnoreSpec]]) -> Iterator[Path]:
    own = _load_ignore(directory)
    if own:
        specs = [*specs, (directory, own)]
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for item in entries:
        path = Path(item.path)
        if item.name in ALWAYS_SKIPPED:
            continue
        if item.is_symlink():  # listed as itself, never followed
            if not _ignored(path, False, specs):
                yield path
            continue
        is_dir = item.is_dir()
        if _ignored(path, is_dir, specs):
            continue
        if is_dir:
            yield from _walk(path, specs)
        else:
            yield path
