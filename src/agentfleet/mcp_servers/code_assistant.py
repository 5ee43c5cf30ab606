"""The code assistant MCP server: code intelligence over one checkout, read with tree-sitter.

A repository map, a file's outline, a symbol's definitions and its references, for Python,
JavaScript, TypeScript (.ts, .tsx) and Go. It only reads: every path stays inside the workspace,
no link is followed, files are read bounded (a big or binary file is skipped with a note), and
what .gitignore ignores is left out. Runs beside the workspace server (over stdio, on the same
checkout) or as a service (streamable HTTP).

    python -m agentfleet.mcp_servers.code_assistant --root DIR [--transport stdio|streamable-http]
"""

from __future__ import annotations

import argparse
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from agentfleet.errors import AgentFleetError
from agentfleet.mcp_servers.transport import add_transport_args, serve
from agentfleet.runtime import code_symbols
from agentfleet.runtime.code_symbols import Symbol, language_of
from agentfleet.runtime.files import open_regular
from agentfleet.runtime.filewalk import entry, iter_files, relative
from agentfleet.runtime.paths import PathEscapeError, resolve_in_workspace

MAX_PARSE_BYTES = 1 << 20
"""A bigger file is not parsed (listed with a note)."""
MAX_WALK_FILES = 20_000
MAP_PAGE_FILES = 200
MAX_MAP_SYMBOLS = 30
MAX_DEFINITIONS = 20
MAX_DEFINITION_LINES = 150
MAX_REFERENCES = 300
MAX_OUTPUT_CHARS = 60_000
MAX_LINE_CHARS = 200
CACHE_FILES = 4096
SUPPORTED = "Python (.py), JavaScript (.js, .jsx, .mjs), TypeScript (.ts, .tsx) and Go (.go)"
_SYMBOL = re.compile(r"[#$\w]+(?:\.[#$\w]+)*")

INSTRUCTIONS = (
    "Code intelligence for one workspace (read-only), for " + SUPPORTED + ". Paths are relative to "
    "the workspace root. `repo_map` lists files with their top-level symbols, `outline` a file's "
    "classes, functions and methods with line ranges, `find_definition` and `find_references` a "
    "symbol's definition source and its uses (identifiers only: not strings or comments)."
)


class NotReadError(AgentFleetError, ValueError):
    """A file that is not parsed: not a regular file, too big or binary; the message says which."""


@dataclass(frozen=True)
class Source:
    rel: str
    language: str
    data: bytes
    key: tuple[str, int, int, int]


class CodeAssistant:
    """The operations behind the tools, usable without MCP."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._symbols: OrderedDict[tuple[str, int, int, int], list[Symbol]] = OrderedDict()
        self._lock = threading.Lock()  # the SDK runs each call of a sync tool in a worker thread

    # --- the tools -------------------------------------------------------------------------------

    def repo_map(self, path: str = ".", page: int = 1) -> str:
        base = self._existing(path)
        files, capped = self._files(base)
        pages = max(1, -(-len(files) // MAP_PAGE_FILES))
        if not 1 <= page <= pages:
            raise ToolError(f"page {page} does not exist: {path} has {pages} page(s) of {MAP_PAGE_FILES} files")
        counts: dict[str, int] = {}
        for file in files:
            language = language_of(file.name) or "other"
            counts[language] = counts.get(language, 0) + 1
        summary = ", ".join(f"{lang} {n}" for lang, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        where = relative(self.root, base) or "."
        out = [f"# {where}: {len(files)} files ({summary or 'none'}), page {page} of {pages}"]
        shown = files[(page - 1) * MAP_PAGE_FILES : page * MAP_PAGE_FILES]
        size = len(out[0])
        for n, file in enumerate(shown):
            out.append(self._map_line(file))
            size += len(out[-1]) + 1
            if size > MAX_OUTPUT_CHARS and n + 1 < len(shown):
                out.append(f"… [cut after {n + 1} of this page's {len(shown)} files; map a subdirectory]")
                break
        if page < pages:
            out.append(f"… [more files: repo_map(path={path!r}, page={page + 1})]")
        if capped:
            out.append(f"… [stopped listing at {MAX_WALK_FILES} files; map a subdirectory]")
        return "\n".join(out)

    def outline(self, path: str) -> str:
        target = self._existing(path)
        if target.is_dir():
            raise ToolError(f"{path} is a directory; outline takes a file (repo_map lists a directory)")
        source = self._source_or_error(target, path)
        symbols = self._parsed(source)
        lines = source.data.count(b"\n") + (not source.data.endswith(b"\n") and bool(source.data))
        head = f"{source.rel} ({source.language}, {lines} lines)"
        if not symbols:
            return head + ": no classes, functions, methods or top-level variables"
        body = [f"{'  ' * s.depth}{s.kind} {_shown_name(s)} ({_lines(s)}): {s.header}" for s in symbols]
        return _bounded("\n".join([head, *body]), "outline is cut; read the file for the rest")

    def find_definition(self, symbol: str, path: str = ".") -> str:
        wanted = _checked_symbol(symbol)
        base = self._existing(path)
        found: list[tuple[Source, Symbol]] = []
        scan = self._scan(base, wanted.rsplit(".", 1)[-1])
        for source in scan:
            found += [(source, s) for s in self._parsed(source) if wanted in (s.qualified, s.name)]
            if len(found) > MAX_DEFINITIONS:
                break
        if not found:
            raise ToolError(
                f"no definition of {symbol!r} in {scan.parsed} {SUPPORTED} files under {path}{scan.note()}. "
                "Names are case-sensitive; outline or repo_map shows the names a file defines, "
                "find_references where a name is used."
            )
        parts = [_definition_text(source, s) for source, s in found[:MAX_DEFINITIONS]]
        if len(found) > MAX_DEFINITIONS:
            parts.append(f"… [stopped at {MAX_DEFINITIONS} definitions; give a path to narrow]")
        return _bounded("\n\n".join(parts), "cut; ask for one file with path=") + scan.note("\n")

    def find_references(self, symbol: str, path: str = ".") -> str:
        name = _checked_symbol(symbol).rsplit(".", 1)[-1]
        hits: list[str] = []
        scan = self._scan(self._existing(path), name)
        files = 0
        for source in scan:
            found = self._references_in(source, name, MAX_REFERENCES + 1 - len(hits))
            hits += found
            files += bool(found)
            if len(hits) > MAX_REFERENCES:
                hits[MAX_REFERENCES:] = [f"… [stopped at {MAX_REFERENCES}; give a path to narrow]"]
                break
        if not hits:
            raise ToolError(
                f"no identifier {name!r} in {scan.parsed} {SUPPORTED} files under {path}{scan.note()} "
                "(strings and comments are not references). Names are case-sensitive; repo_map and "
                "outline show the names defined."
            )
        head = f"{min(len(hits), MAX_REFERENCES)} occurrences of {name} in {files} files"
        return _bounded("\n".join([head, *hits]), "cut; give a path to narrow") + scan.note("\n")

    def _references_in(self, source: Source, name: str, budget: int) -> list[str]:
        defined = {s.line for s in self._parsed(source) if s.name == name}
        lines = _lines_of(source.data)
        hits = []
        for node in code_symbols.occurrences(source.language, code_symbols.parse(source.language, source.data), name):
            row, col = node.start_point.row, node.start_point.column
            mark = " (definition)" if row + 1 in defined else ""
            hits.append(f"{source.rel}:{row + 1}:{col + 1}:{mark} {lines[row].strip()[:MAX_LINE_CHARS]}")
            if len(hits) >= budget:
                break
        return hits

    # --- files -----------------------------------------------------------------------------------

    def _existing(self, rel: str) -> Path:
        try:
            target = resolve_in_workspace(self.root, rel)
        except PathEscapeError as exc:
            raise ToolError(str(exc)) from exc
        if not target.exists():
            raise ToolError(f"{rel} does not exist in the workspace; repo_map lists the files")
        return target

    def _files(self, base: Path) -> tuple[list[Path], bool]:
        if not base.is_dir():
            return [base], False
        files: list[Path] = []
        for file in iter_files(self.root, base):
            if len(files) >= MAX_WALK_FILES:
                return files, True
            files.append(file)
        return files, False

    def _scan(self, base: Path, name: str) -> _Scan:
        return _Scan(self, self._files(base)[0], name.encode())

    def source(self, file: Path) -> Source:
        """`file` read for parsing (bounded), or NotReadError saying why not."""
        rel = relative(self.root, file)
        language = language_of(file.name)
        if language is None:
            raise NotReadError(f"{rel}: no grammar for {file.suffix or 'files without an extension'}")
        fh = open_regular(file)  # never through a link, never a FIFO
        if fh is None:
            raise NotReadError(f"{rel} is not a regular file (links are not followed)")
        with fh:
            stat = os.fstat(fh.fileno())
            if stat.st_size > MAX_PARSE_BYTES:
                raise NotReadError(f"{rel} is {_size(stat.st_size)}, over the {_size(MAX_PARSE_BYTES)} parse limit")
            data = fh.read(MAX_PARSE_BYTES + 1)
        if len(data) > MAX_PARSE_BYTES:
            raise NotReadError(f"{rel} grew past the {_size(MAX_PARSE_BYTES)} parse limit")
        if b"\x00" in data[:8192]:
            raise NotReadError(f"{rel} looks binary (a NUL byte)")
        return Source(rel, language, data, (rel, stat.st_size, stat.st_mtime_ns, stat.st_ino))

    def _source_or_error(self, file: Path, path: str) -> Source:
        if language_of(file.name) is None:
            kind = file.suffix or "no extension"
            raise ToolError(f"{path}: unsupported language ({kind}); outline reads {SUPPORTED}")
        try:
            return self.source(file)
        except NotReadError as exc:
            raise ToolError(f"{exc}; read_file (the workspace server) shows it as text") from exc

    def _parsed(self, source: Source) -> list[Symbol]:
        with self._lock:
            if (cached := self._symbols.get(source.key)) is not None:
                self._symbols.move_to_end(source.key)
                return cached
        symbols = code_symbols.symbols(source.language, source.data)
        with self._lock:
            self._symbols[source.key] = symbols
            while len(self._symbols) > CACHE_FILES:
                self._symbols.popitem(last=False)
        return symbols

    def _map_line(self, file: Path) -> str:
        if file.is_symlink():
            return f"{entry(self.root, file)}  (link, not followed)"
        rel, language = relative(self.root, file), language_of(file.name)
        size = _size(file.lstat().st_size)
        if language is None:
            return f"{rel}  {size}"
        try:
            top = [s for s in self._parsed(self.source(file)) if s.depth == 0]
        except NotReadError as exc:
            return f"{rel}  {language}  {size}  (not parsed: {str(exc).removeprefix(rel).strip(': ')})"
        names = ", ".join(f"{s.kind} {s.qualified}" for s in top[:MAX_MAP_SYMBOLS])
        more = f", … +{len(top) - MAX_MAP_SYMBOLS} more (outline {rel})" if len(top) > MAX_MAP_SYMBOLS else ""
        return f"{rel}  {language}  {size}  {names}{more}".rstrip()


class _Scan:
    """The supported files under a path that hold `name`'s bytes, read one at a time; what was
    not read is counted for the note."""

    def __init__(self, assistant: CodeAssistant, files: list[Path], name: bytes) -> None:
        self.assistant, self.files, self.name = assistant, files, name
        self.parsed = 0
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[Source]:
        for file in self.files:
            if language_of(file.name) is None or file.is_symlink():
                continue
            try:
                source = self.assistant.source(file)
            except NotReadError as exc:
                self.skipped.append(str(exc))
                continue
            self.parsed += 1
            if self.name in source.data:
                yield source

    def note(self, lead: str = "") -> str:
        if not self.skipped:
            return ""
        shown = "; ".join(self.skipped[:3]) + ("; …" if len(self.skipped) > 3 else "")
        return f"{lead} ({len(self.skipped)} files not read: {shown})"


def _checked_symbol(symbol: str) -> str:
    symbol = symbol.strip()
    if not _SYMBOL.fullmatch(symbol):
        raise ToolError(f"{symbol!r} is not a symbol name: give an identifier such as parse or Class.method")
    return symbol


def _shown_name(symbol: Symbol) -> str:
    return symbol.qualified if symbol.depth == 0 else symbol.name


def _lines(symbol: Symbol) -> str:
    return f"line {symbol.start}" if symbol.start == symbol.end else f"lines {symbol.start}-{symbol.end}"


def _definition_text(source: Source, symbol: Symbol) -> str:
    lines = _lines_of(source.data)[symbol.start - 1 : symbol.end]
    shown = [f"{symbol.start + i:>6}\t{line}" for i, line in enumerate(lines)]
    if len(shown) > MAX_DEFINITION_LINES:
        cut = len(shown) - MAX_DEFINITION_LINES
        shown[MAX_DEFINITION_LINES:] = [f"… [{cut} more lines; read_file {source.rel} for them]"]
    head = f"{source.rel}:{symbol.start}-{symbol.end} {symbol.kind} {symbol.qualified} ({source.language})"
    return "\n".join([head, *shown])


def _lines_of(data: bytes) -> list[str]:
    """The lines as tree-sitter counts them (a row ends at each newline)."""
    return [line.removesuffix(b"\r").decode("utf-8", "replace") for line in data.split(b"\n")]


def _bounded(text: str, hint: str) -> str:
    return text if len(text) <= MAX_OUTPUT_CHARS else text[:MAX_OUTPUT_CHARS] + f"\n… [{hint}]"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def build_server(root: Path | CodeAssistant, name: str = "code") -> MCPServer:
    """The MCP server over the checkout at `root`."""
    assistant = root if isinstance(root, CodeAssistant) else CodeAssistant(root)
    server: MCPServer = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(structured_output=False)
    def repo_map(path: str = ".", page: int = 1) -> str:
        """Map the repository (or a subdirectory): each file with its language, size and top-level
        symbols (classes, functions, types, variables). Long listings come in pages of 200 files."""
        return assistant.repo_map(path, page)

    @server.tool(structured_output=False)
    def outline(path: str) -> str:
        """Outline one source file: its classes, functions, methods, types and top-level variables,
        nested as in the file, each with its line range and first line."""
        return assistant.outline(path)

    @server.tool(structured_output=False)
    def find_definition(symbol: str, path: str = ".") -> str:
        """Find where a symbol is defined (`parse`, or `Class.method` for one class's method) under
        `path`, with the definition's source and its line range."""
        return assistant.find_definition(symbol, path)

    @server.tool(structured_output=False)
    def find_references(symbol: str, path: str = ".") -> str:
        """Find every use of a name under `path` as file:line:column: line, from the syntax tree
        (identifiers only, not strings or comments); definitions are marked. For `Class.method`
        the last part is searched."""
        return assistant.find_references(symbol, path)

    return server


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentfleet-code-assistant-mcp", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="workspace root directory")
    add_transport_args(parser, port=8766)
    parser.add_argument("--owner-pid", type=int, help="end when this process, the agent, ends")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from agentfleet.runtime.capture import end_with

    args = _parse_args(argv)
    if not args.root.is_dir():
        raise SystemExit(f"--root {args.root} is not a directory")
    if args.owner_pid is not None:
        end_with(args.owner_pid)
    server = build_server(args.root)
    serve(server, args)


if __name__ == "__main__":
    main()
