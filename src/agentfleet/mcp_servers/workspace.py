"""The workspace MCP server: the agent's hands inside its checkout.

Runs inside the agent's container (over stdio, launched by the agent), in the agent's process, or
as a service (streamable HTTP). Every path stays inside the workspace; every command runs in the
sandbox: the agent's commands (exec, git_status, git_diff) in one sandbox session per Workspace
(runtime/sandbox.py: one bubblewrap started at the first command, a fork per command, /tmp and
$HOME kept between commands); `Workspace.close` ends it.

    python -m agentfleet.mcp_servers.workspace --root DIR [--transport stdio|streamable-http]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from agentfleet.errors import AgentFleetError
from agentfleet.locks import acquire
from agentfleet.mcp_servers.transport import add_transport_args, serve
from agentfleet.runtime.apply_patch import apply_patch as apply_patch_text
from agentfleet.runtime.apply_patch import summarize
from agentfleet.runtime.capture import end_with
from agentfleet.runtime.files import MAX_LINE_BYTES, count_lines, lines, looks_binary, open_regular
from agentfleet.runtime.filewalk import entry, iter_files, relative
from agentfleet.runtime.paths import resolve_in_workspace
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig

MAX_READ_LINES = 2000
MAX_READ_CHARS = 100_000
MAX_LIST_ENTRIES = 1000
MAX_SEARCH_MATCHES = 200
GIT_TIMEOUT_S = 60
GIT = ("git", "-c", "safe.directory=*", "-c", "core.quotepath=off", "-c", "color.ui=false")

INSTRUCTIONS = (
    "Tools for one git workspace. Paths are relative to the workspace root. "
    "`exec` runs a shell command in a sandbox; `apply_patch` edits files with the "
    "*** Begin Patch format."
)


@contextmanager
def readable_errors() -> Iterator[None]:
    """Our errors as ToolError: the MCP SDK shows the model a ToolError's message, and only a
    generic "Error executing tool" for any other exception (its text stays on the server)."""
    try:
        yield
    except AgentFleetError as exc:
        raise ToolError(str(exc)) from exc


class Workspace:
    """The operations behind the tools, usable without MCP."""

    def __init__(self, root: Path, sandbox: Sandbox, owner: tuple[int, int] | None = None) -> None:
        self.root = root.resolve()
        self.sandbox = sandbox
        self.owner = owner
        # Only the agent's own commands run in the session. Acceptance checks and setup run in a
        # bubblewrap of their own each (Sandbox.run): a command could tamper with the long-lived
        # executor's later answers (kill it, fill /tmp), and a check must not depend on that.
        self.session = sandbox.session()  # the sandbox starts at the first command

    def close(self) -> None:
        """End the sandbox session and everything still running in it."""
        self.session.close()

    def _path(self, rel: str) -> Path:
        with readable_errors():
            return resolve_in_workspace(self.root, rel)

    def _chown(self, path: Path) -> None:
        if self.owner and os.geteuid() == 0:
            os.chown(path, *self.owner, follow_symlinks=False)

    def exec(self, command: str, timeout_s: int = 120) -> str:
        if not command.strip():
            raise ToolError("command is empty")
        with readable_errors():
            return self.session.run(command, timeout_s=max(1, timeout_s)).render()

    async def aexec(self, command: str, timeout_s: int = 120) -> str:
        """As `exec`, on the event loop (no worker thread per command)."""
        if not command.strip():
            raise ToolError("command is empty")
        with readable_errors():
            return (await self.session.arun(command, timeout_s=max(1, timeout_s))).render()

    def apply_patch(self, patch: str) -> str:
        with readable_errors():
            changes = apply_patch_text(patch, self.root, on_write=self._chown)
        return "Done. Changed files:\n" + summarize(changes)

    def read_file(self, path: str, start: int | None = None, end: int | None = None) -> str:
        target = self._path(path)
        fh = open_regular(target)
        if fh is None:
            raise ToolError(f"{path} is not a file; use list_files to see what exists")
        first = max(1, start or 1)
        stop = min(end if end is not None else first + MAX_READ_LINES - 1, first + MAX_READ_LINES - 1)
        shown: list[str] = []
        with fh:
            total, size = 0, 0
            for total, (text, length) in enumerate(lines(fh), 1):
                if total >= first and size <= MAX_READ_CHARS:
                    cut = f" … [line cut: {length} bytes]" if length > MAX_LINE_BYTES else ""
                    shown.append(f"{total:>6}\t{text}{cut}")
                    size += len(shown[-1]) + 1
                if total >= stop:
                    total += count_lines(fh)
                    break
        if first > max(total, 1):
            raise ToolError(f"{path} has {total} lines; start={first} is past the end")
        last = min(stop, total)
        body = "\n".join(shown)
        if len(body) > MAX_READ_CHARS:
            body = body[:MAX_READ_CHARS] + "\n… [truncated; read a smaller range]"
        more = f"\n[lines {first}-{last} of {total}]" if (first > 1 or last < total) else ""
        return body + more

    def list_files(self, path: str = ".") -> str:
        base = self._path(path)
        if not base.is_dir():
            raise ToolError(f"{path} is not a directory")
        entries = []
        for file in iter_files(self.root, base):
            entries.append(entry(self.root, file))
            if len(entries) >= MAX_LIST_ENTRIES:
                entries.append(f"… [stopped at {MAX_LIST_ENTRIES} entries; list a subdirectory]")
                break
        return "\n".join(entries) if entries else "(no files)"

    def search(self, pattern: str, path: str = ".") -> str:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ToolError(f"invalid regular expression {pattern!r}: {exc}") from exc
        base = self._path(path)
        files = [base] if base.is_file() else iter_files(self.root, base)
        hits: list[str] = []
        for file in files:
            hits.extend(_grep(self.root, file, regex, MAX_SEARCH_MATCHES - len(hits)))
            if len(hits) >= MAX_SEARCH_MATCHES:
                hits.append(f"… [stopped at {MAX_SEARCH_MATCHES} matches; narrow the pattern or path]")
                break
        return "\n".join(hits) if hits else "no matches"

    def git_status(self) -> str:
        return self._each_repo(["status", "--short", "--branch"])

    def git_diff(self) -> str:
        return self._each_repo(["add", "--all", "--intent-to-add"], ["diff", "HEAD"]) or "no changes"

    def _each_repo(self, *commands: list[str]) -> str:
        """Run a git command in each repository of the workspace, inside the sandbox.

        The `.git` of a checkout is the agent's to write (config, hooks, attributes, links to
        elsewhere), so git on it runs where the agent's own commands run: as the sandbox user,
        with no secrets, seeing nothing of the host but the workspace."""
        repos = (
            [self.root]
            if _has_git(self.root)
            else sorted(p for p in self.root.iterdir() if not p.is_symlink() and _has_git(p))
        )
        if not repos:
            raise ToolError("the workspace holds no git repository")
        out = []
        for repo in repos:
            where = repo.relative_to(self.root).as_posix() or "."
            script = " && ".join([shlex.join(["cd", "--", where]), *(shlex.join([*GIT, *args]) for args in commands)])
            with readable_errors():
                result = self.session.run(script, timeout_s=GIT_TIMEOUT_S)
            if result.exit_code != 0:
                raise ToolError(f"git failed in {repo.name}: {result.render()[-2000:]}")
            text = result.output
            out.append(text if repo == self.root else f"# {repo.name}\n{text}")
        return "\n".join(out).strip()


def _has_git(path: Path) -> bool:
    git = path / ".git"
    return git.is_symlink() or git.exists()


def _grep(root: Path, file: Path, regex: re.Pattern[str], budget: int) -> Iterator[str]:
    fh = open_regular(file)  # never through a link (it may point out), never a FIFO (it blocks)
    if fh is None:
        return
    with fh:
        if looks_binary(fh):
            return
        rel = relative(root, file)
        for n, (line, _) in enumerate(lines(fh), 1):
            if budget <= 0:
                return
            if regex.search(line):
                budget -= 1
                yield f"{rel}:{n}: {line[:300]}"


def build_server(workspace: Workspace, name: str = "workspace") -> MCPServer:
    """The MCP server exposing a Workspace's operations as tools."""
    server: MCPServer = MCPServer(name, instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(name="exec", structured_output=False)
    async def exec_(command: str, timeout_s: int = 120) -> str:
        """Run a shell command (bash) in the workspace root, inside a sandbox.

        Returns the combined stdout/stderr (long output keeps its head and tail) and the exit code.
        """
        return await workspace.aexec(command, timeout_s)

    @server.tool(structured_output=False)
    def apply_patch(patch: str) -> str:
        """Edit files with a patch in the format:
        *** Begin Patch
        *** Update File: path/to/file.py
        @@ def some_function
         context line
        -old line
        +new line
        *** End Patch
        Also: `*** Add File: path` (every line starts with +), `*** Delete File: path`,
        `*** Move to: new/path` after an Update File line, `*** End of File` after a final hunk.
        """
        return workspace.apply_patch(patch)

    @server.tool(structured_output=False)
    def read_file(path: str, start: int | None = None, end: int | None = None) -> str:
        """Read a text file with line numbers; `start` and `end` (1-based, inclusive) pick a range."""
        return workspace.read_file(path, start, end)

    @server.tool(structured_output=False)
    def list_files(path: str = ".") -> str:
        """List the files under a directory, recursively, skipping what .gitignore ignores."""
        return workspace.list_files(path)

    @server.tool(structured_output=False)
    def search(pattern: str, path: str = ".") -> str:
        """Search file contents for a Python regular expression; prints path:line: text."""
        return workspace.search(pattern, path)

    @server.tool(structured_output=False)
    def git_status() -> str:
        """Show the git status of the workspace (short format)."""
        return workspace.git_status()

    @server.tool(structured_output=False)
    def git_diff() -> str:
        """Show every change made in the workspace so far, new files included."""
        return workspace.git_diff()

    return server


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentfleet-workspace-mcp", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="workspace root directory")
    add_transport_args(parser)
    parser.add_argument("--network", action="store_true", help="allow network access to commands")
    parser.add_argument(
        "--sandbox", type=SandboxConfig.model_validate_json, help="the sandbox as JSON (default: from the settings)"
    )
    parser.add_argument(
        "--owner-pid", type=int, help="end (and kill every running command) when this process, the agent, ends"
    )
    parser.add_argument(
        "--hold-lock", type=Path, help="hold a shared lock on this file while alive (the workspace is in use)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from agentfleet.settings import Settings

    args = _parse_args(argv)
    if args.hold_lock is not None:
        acquire(args.hold_lock, shared=True, timeout_s=30)  # held until this process ends
    if args.owner_pid is not None:
        end_with(args.owner_pid)
    config = args.sandbox or SandboxConfig.from_settings(Settings(), network=args.network)
    sandbox = Sandbox(args.root, config)
    owner = (config.uid, config.gid) if config.mode == "bwrap" else None
    workspace = Workspace(args.root, sandbox, owner)
    try:
        serve(build_server(workspace), args)
    finally:
        workspace.close()


if __name__ == "__main__":
    main()
