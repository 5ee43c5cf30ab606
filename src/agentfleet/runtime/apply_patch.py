"""Apply patches in the `*** Begin Patch` format that Codex and gpt-oss models write.

Operations: `*** Add File: P` (then `+` lines), `*** Delete File: P`, `*** Update File: P`
(optionally `*** Move to: Q`) with hunks: `@@` or `@@ line to find first`, then lines starting
with ' ' (context), '-' (remove) or '+' (add), optionally closed by `*** End of File`.

The whole patch is parsed and every path checked before anything is touched; operations then
apply in order, and one that fails leaves the earlier ones applied (as Codex does). Lines match
exactly first, then ignoring trailing whitespace, then surrounding whitespace, then reading
typographic dashes, quotes and spaces as ASCII. Matched context lines keep the file's text.

One unit, over ~300 lines: the patch format's parser, applier and fuzzy seek, as Codex's own
implementation splits them, small enough to read together.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from agentfleet.errors import AgentFleetError
from agentfleet.runtime.paths import PathEscapeError, resolve_in_workspace

BEGIN, END, EOF_MARKER = "*** Begin Patch", "*** End Patch", "*** End of File"
HUNK_LINES = "lines starting with ' ' (context), '-' (remove) or '+' (add)"
QUOTED_LINES = 6
MAX_EDIT_BYTES = 16 << 20
"""The largest file apply_patch edits (it reads the whole file into memory)."""
_FILE_HEADER = re.compile(r"\*\*\* (Add|Delete|Update) File:(.*)")
_MOVE_TO = re.compile(r"\*\*\* Move to:(.*)")
_HEREDOC = re.compile(r"(?:apply_patch\s+)?<<\s*['\"]?(\w+)['\"]?")
_UNIFIED_RANGE = re.compile(r"-\d+(?:,\d+)? \+\d+(?:,\d+)? @@\s*")  # `@@ -1,3 +1,4 @@` from diff habits
_PUNCTUATION = str.maketrans(
    dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-")
    | dict.fromkeys("\u2018\u2019\u201a\u201b", "'")
    | dict.fromkeys("\u201c\u201d\u201e\u201f", '"')
    | dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " ")
)


class PatchError(AgentFleetError, ValueError):
    """A patch that cannot be parsed or applied; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class FileChange:
    op: Literal["add", "delete", "update"]
    path: str
    move_to: str | None = None


@dataclass(frozen=True)
class Chunk:
    contexts: tuple[str, ...]  # the text of its `@@ ...` lines, outermost first
    body: tuple[tuple[str, str], ...]  # (" " | "-" | "+", text)
    at_eof: bool = False

    @property
    def old(self) -> tuple[str, ...]:
        return tuple(text for kind, text in self.body if kind != "+")

    @property
    def new(self) -> tuple[str, ...]:
        return tuple(text for kind, text in self.body if kind != "-")


@dataclass(frozen=True)
class AddFile:
    path: str
    contents: str


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class UpdateFile:
    path: str
    move_to: str | None
    chunks: tuple[Chunk, ...]


Operation = AddFile | DeleteFile | UpdateFile
Notify = Callable[[Path], None]


def parse_patch(text: str) -> list[Operation]:
    """Parse a whole patch; raise PatchError naming the patch line of the first syntax error."""
    first = text[: len(text) - len(text.lstrip())].count("\n") + 1
    lines = re.split(r"\r?\n", text.strip())
    heredoc = _HEREDOC.fullmatch(lines[0].strip())
    if heredoc and len(lines) > 2 and lines[-1].strip() == heredoc.group(1):
        lines, first = lines[1:-1], first + 1
    if lines[0].strip() != BEGIN:
        raise PatchError(f"patch line {first}: a patch must start with '{BEGIN}', got {lines[0]!r}")
    if len(lines) < 2 or lines[-1].strip() != END:
        raise PatchError(f"patch line {first + len(lines) - 1}: a patch must end with '{END}'")
    return _Parser(lines[1:-1], first + 1).operations()


class _Parser:
    def __init__(self, lines: list[str], first_number: int) -> None:
        self.lines, self.first, self.pos = lines, first_number, 0

    def error(self, message: str, pos: int | None = None) -> PatchError:
        return PatchError(f"patch line {self.first + (self.pos if pos is None else pos)}: {message}")

    def peek(self) -> str | None:
        return self.lines[self.pos] if self.pos < len(self.lines) else None

    def operations(self) -> list[Operation]:
        ops: list[Operation] = []
        while (line := self.peek()) is not None:
            if line.strip():
                ops.append(self.operation(line.strip()))
            else:
                self.pos += 1
        if not ops:
            raise PatchError(
                "the patch has no operations; put '*** Add File:', '*** Delete File:' or "
                f"'*** Update File:' sections between '{BEGIN}' and '{END}'"
            )
        return ops

    def operation(self, header: str) -> Operation:
        match = _FILE_HEADER.fullmatch(header)
        if not match or not match.group(2).strip():
            raise self.error(
                f"{header!r} is not a valid operation header; use '*** Add File: PATH', "
                "'*** Delete File: PATH' or '*** Update File: PATH'"
            )
        kind, path = match.group(1), match.group(2).strip()
        header_pos, self.pos = self.pos, self.pos + 1
        if kind == "Add":
            return AddFile(path, self.added_lines())
        if kind == "Delete":
            return DeleteFile(path)
        move_to = None
        if (line := self.peek()) is not None and (move := _MOVE_TO.fullmatch(line.strip())):
            if not (move_to := move.group(1).strip()):
                raise self.error("'*** Move to:' names no file")
            self.pos += 1
        if not (chunks := self.chunks()):
            raise self.error(
                f"'*** Update File: {path}' has no hunks; follow it with '@@' and {HUNK_LINES}", header_pos
            )
        return UpdateFile(path, move_to, chunks)

    def added_lines(self) -> str:
        out: list[str] = []
        while (line := self.peek()) is not None and line.startswith("+"):
            out.append(line[1:] + "\n")
            self.pos += 1
        return "".join(out)

    def chunks(self) -> tuple[Chunk, ...]:
        chunks: list[Chunk] = []
        while (line := self.peek()) is not None and not line.startswith("***"):
            if line.strip():
                chunks.append(self.chunk(first=not chunks))
            else:
                self.pos += 1
        return tuple(chunks)

    def chunk(self, first: bool) -> Chunk:
        contexts: list[str] = []
        headers = 0
        while (line := self.peek()) is not None and (line.rstrip() == "@@" or line.startswith("@@ ")):
            context = _UNIFIED_RANGE.sub("", line[2:].strip(), count=1)
            contexts += [context] if context else []
            headers, self.pos = headers + 1, self.pos + 1
        if not headers and not first:
            raise self.error(f"expected a '@@' hunk header or {HUNK_LINES}, got {line!r}")
        body: list[tuple[str, str]] = []
        while (line := self.peek()) is not None and line[:1] in ("", " ", "-", "+"):
            body.append((line[:1] or " ", line[1:]))
            self.pos += 1
        at_eof = line is not None and line.rstrip() == EOF_MARKER
        if not body:
            raise self.error(f"a hunk needs {HUNK_LINES}; got {'nothing' if at_eof else repr(line)}")
        self.pos += at_eof
        return Chunk(tuple(contexts), tuple(body), at_eof)


def apply_patch(text: str, root: Path, *, on_write: Notify | None = None) -> list[FileChange]:
    """Apply `text` inside `root`; return what changed. `on_write` sees each file and directory made."""
    operations = parse_patch(text)
    root = root.resolve()
    targets = {rel: _resolve(root, rel) for op in operations for rel in _paths(op)}
    notify = on_write or (lambda _path: None)
    changes: list[FileChange] = []
    for op in operations:
        try:
            changes.append(_apply(op, root, targets, notify))
        except (PatchError, OSError) as exc:
            message = str(exc) if isinstance(exc, PatchError) else f"{op.path}: {exc.strerror or exc}"
            if changes:
                message += "\nThese earlier operations were applied and stay applied:\n" + summarize(changes)
            raise PatchError(message) from exc
    return changes


def summarize(changes: Sequence[FileChange]) -> str:
    """One line per change: `A path`, `D path`, `M path` or `M old -> new`."""
    marks = {"add": "A", "delete": "D", "update": "M"}
    return "\n".join(f"{marks[c.op]} {c.path}" + (f" -> {c.move_to}" if c.move_to else "") for c in changes)


def _paths(op: Operation) -> list[str]:
    return [op.path, op.move_to] if isinstance(op, UpdateFile) and op.move_to else [op.path]


def _resolve(root: Path, rel: str) -> Path:
    try:
        return resolve_in_workspace(root, rel)
    except PathEscapeError as exc:
        reason = str(exc)
        if "outside the workspace" not in reason:
            reason = f"path {rel!r} points outside the workspace ({reason})"
        raise PatchError(f"{reason}; nothing was changed. Use paths relative to the workspace root.") from exc
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise PatchError(f"path {rel!r} cannot be resolved ({exc}); nothing was changed") from exc


def _apply(op: Operation, root: Path, targets: dict[str, Path], notify: Notify) -> FileChange:
    path, posix = targets[op.path], PurePosixPath(op.path).as_posix()
    if isinstance(op, AddFile):
        _write(op.path, path, op.contents, notify, mode_from=path)
        return FileChange("add", posix)
    if isinstance(op, DeleteFile):
        if not path.is_file() or path.is_dir():
            problem = "is a directory; it removes one file" if path.is_dir() else "names no existing file"
            raise PatchError(f"cannot delete {op.path}: '*** Delete File: {op.path}' {problem}")
        _entry(root, op.path, path).unlink()
        return FileChange("delete", posix)
    if not path.is_file():
        problem = "it is a directory" if path.is_dir() else "it does not exist; use '*** Add File:' to create it"
        raise PatchError(f"cannot update {op.path}: {problem}")
    size = path.stat().st_size
    if size > MAX_EDIT_BYTES:
        raise PatchError(
            f"cannot update {op.path}: it is {size:,} bytes and apply_patch edits files up to {MAX_EDIT_BYTES:,}; "
            "edit it with a command (exec) instead"
        )
    updated = _updated_text(op, path.read_bytes().decode("utf-8", "surrogateescape"))
    destination = targets[op.move_to] if op.move_to else path
    _write(op.move_to or op.path, destination, updated, notify, mode_from=path)
    if destination != path:
        _entry(root, op.path, path).unlink()
    return FileChange("update", posix, PurePosixPath(op.move_to).as_posix() if op.move_to else None)


def _entry(root: Path, rel: str, resolved: Path) -> Path:
    """The directory entry `rel` names: the link itself when it is a symlink, else `resolved`."""
    pure = PurePosixPath(rel)
    if pure.name in ("", ".", ".."):
        return resolved
    link = resolve_in_workspace(root, str(pure.parent)) / pure.name
    return link if link.is_symlink() else resolved


def _write(rel: str, path: Path, text: str, notify: Notify, mode_from: Path) -> None:
    """Write atomically (a temporary file in the same directory, then os.replace), keeping the mode."""
    if path.is_dir():
        raise PatchError(f"cannot write {rel}: it is a directory")
    _make_parents(rel, path.parent, notify)
    temp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8", "surrogateescape"))
        if mode_from.is_file():
            os.chmod(temp, stat.S_IMODE(mode_from.stat().st_mode))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    notify(path)


def _make_parents(rel: str, directory: Path, notify: Notify) -> None:
    missing: list[Path] = []
    while not directory.exists() and not directory.is_symlink():
        missing.append(directory)
        directory = directory.parent
    if not directory.is_dir():
        raise PatchError(f"cannot write {rel}: {directory.name!r} on its path is not a directory")
    for created in reversed(missing):
        created.mkdir(exist_ok=True)
        notify(created)


def _updated_text(op: UpdateFile, original: str) -> str:
    eol = "\r\n" if 2 * original.count("\r\n") > original.count("\n") else "\n"
    lines = original.split(eol)
    if lines[-1] == "":
        lines.pop()
    for start, length, new in reversed(_edits(op.path, lines, op.chunks)):
        lines[start : start + length] = new
    return eol.join(lines) + eol if lines else ""


def _edits(rel: str, lines: list[str], chunks: Sequence[Chunk]) -> list[tuple[int, int, list[str]]]:
    """(start, lines covered, replacement) for each hunk, found in order through the file."""
    edits: list[tuple[int, int, list[str]]] = []
    cursor = 0
    for number, chunk in enumerate(chunks, 1):
        for context in chunk.contexts:
            if (found := _seek_context(lines, context, cursor)) is None:
                raise PatchError(
                    f"{rel}: hunk {number} does not apply: its '@@ {context}' line was not "
                    f"found{_after(cursor)}. Re-read the file; nothing in {rel} was changed."
                )
            cursor = found + 1
        if not chunk.old:  # pure addition: below the @@ line, else at the end
            edits.append((len(lines) if chunk.at_eof or not chunk.contexts else cursor, 0, list(chunk.new)))
            continue
        body, start = chunk.body, _seek(lines, chunk.old, cursor, chunk.at_eof)
        while start is None and len(body) > 1 and body[-1] == (" ", ""):  # blank lines between hunks
            body = body[:-1]
            start = _seek(lines, [text for kind, text in body if kind != "+"], cursor, chunk.at_eof)
        if start is None:
            raise PatchError(_not_found(rel, number, lines, chunk, cursor))
        covered, replacement = _rebuild(body, iter(lines[start:]))
        edits.append((start, covered, replacement))
        cursor = start + covered
    return sorted(edits, key=lambda edit: edit[0])


def _rebuild(body: Sequence[tuple[str, str]], matched: Iterator[str]) -> tuple[int, list[str]]:
    """How many file lines a hunk covers, and what replaces them; context keeps the file's text."""
    covered, out = 0, []
    for kind, text in body:
        if kind == "+":
            out.append(text)
            continue
        original, covered = next(matched), covered + 1
        if kind == " ":
            out.append(original)
    return covered, out


def _not_found(rel: str, number: int, lines: list[str], chunk: Chunk, cursor: int) -> str:
    quoted = "\n".join(f"    {line}" for line in chunk.old[:QUOTED_LINES])
    more = f"\n    … ({len(chunk.old) - QUOTED_LINES} more)" if len(chunk.old) > QUOTED_LINES else ""
    absent = next((line for line in chunk.old if _seek(lines, [line], cursor) is None), None)
    detail = f"{absent!r} is not in the file{_after(cursor)}" if absent is not None else "not in this order"
    return (
        f"{rel}: hunk {number} does not apply: these context/removed lines were not found"
        f"{' at the end of the file' if chunk.at_eof else _after(cursor)}:\n{quoted}{more}\n({detail}.) "
        f"Re-read the file and copy the ' ' and '-' lines as they are now; nothing in {rel} was changed."
    )


def _after(cursor: int) -> str:
    return f" after line {cursor}" if cursor else ""


def _normalise(line: str) -> str:
    return line.translate(_PUNCTUATION).strip()


_LEVELS: tuple[Callable[[str], str], ...] = (lambda line: line, str.rstrip, str.strip, _normalise)


def _seek(lines: list[str], pattern: Sequence[str], start: int, at_eof: bool = False) -> int | None:
    """First index >= start where `pattern` matches, trying each looser comparison only if all fail."""
    last = len(lines) - len(pattern)
    if last < start:
        return None
    candidates = range(last, last + 1) if at_eof else range(start, last + 1)
    for level in _LEVELS:
        want, have = [level(line) for line in pattern], [level(line) for line in lines]
        for index in candidates:
            if have[index : index + len(want)] == want:
                return index
    return None


def _seek_context(lines: list[str], context: str, start: int) -> int | None:
    """Find an `@@` line: as a whole line first, else a line it begins (`@@ def foo` → `def foo(x):`)."""
    found, want = _seek(lines, [context], start), _normalise(context)
    if found is not None or not want:
        return found
    for index in range(start, len(lines)):
        line = _normalise(lines[index])
        following = line[len(want) : len(want) + 1]
        if line.startswith(want) and not (want[-1].isalnum() and (following.isalnum() or following == "_")):
            return index
    return None
