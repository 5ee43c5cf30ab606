"""The workspace MCP server, exercised in-process through the official MCP client."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import anyio
import pytest
from mcp import Client

from agentfleet.mcp_servers.workspace import Workspace, build_server
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, grant_workspace
from tests.mcp_servers.servers import http_server

FILES = {
    "README.md": "# Demo\n",
    "src/app.py": "def greet(name):\n    return 'hello ' + name\n\n\ndef main():\n    print(greet('x'))\n",
    "src/util.py": "VALUE = 42\n",
    ".gitignore": "build/\n*.log\n",
    "build/out.txt": "generated greet\n",
    "debug.log": "greet noise\n",
}


@pytest.fixture
def workspace(repo_factory) -> Iterator[Workspace]:
    root = repo_factory(FILES)
    grant_workspace(root, 65534, 65534)  # as the runner does: the sandbox user owns the checkout
    workspace = Workspace(root, Sandbox(root, SandboxConfig()))
    yield workspace
    workspace.close()


def call(workspace: Workspace, tool: str, **arguments: object) -> tuple[str, bool]:
    async def go() -> tuple[str, bool]:
        async with Client(build_server(workspace)) as client:
            result = await client.call_tool(tool, arguments)
            return "\n".join(getattr(b, "text", "") for b in result.content), bool(result.is_error)

    return anyio.run(go)


def test_the_server_offers_the_documented_tools_with_their_signatures(workspace) -> None:
    async def go() -> dict:
        async with Client(build_server(workspace)) as client:
            return {t.name: t.input_schema for t in (await client.list_tools()).tools}

    tools = anyio.run(go)
    assert set(tools) == {
        "exec",
        "apply_patch",
        "read_file",
        "list_files",
        "search",
        "git_status",
        "git_diff",
    }
    assert tools["exec"]["required"] == ["command"]
    assert tools["exec"]["properties"]["timeout_s"]["default"] == 120
    assert set(tools["read_file"]["properties"]) == {"path", "start", "end"}
    assert tools["list_files"]["properties"]["path"]["default"] == "."
    assert set(tools["search"]["properties"]) == {"pattern", "path"}


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "src/../../x", "~/.bashrc"])
def test_a_path_outside_the_workspace_is_a_tool_error(workspace, path) -> None:
    text, is_error = call(workspace, "read_file", path=path)
    assert is_error
    assert "outside the workspace" in text or "absolute" in text


def test_a_symlink_pointing_out_is_refused_and_nothing_is_touched(workspace, tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, workspace.root / "link.txt")
    text, is_error = call(workspace, "read_file", path="link.txt")
    assert is_error and "outside the workspace" in text
    patch = "*** Begin Patch\n*** Update File: link.txt\n@@\n-top secret\n+changed\n*** End Patch"
    text, is_error = call(workspace, "apply_patch", patch=patch)
    assert is_error and secret.read_text() == "top secret"
    text, _ = call(workspace, "search", pattern="top secret")
    assert text == "no matches"


def test_read_file_returns_numbered_line_ranges(workspace) -> None:
    text, is_error = call(workspace, "read_file", path="src/app.py", start=2, end=3)
    assert not is_error
    assert text.splitlines()[0].split("\t") == ["     2", "    return 'hello ' + name"]
    assert "[lines 2-3 of 6]" in text


def test_list_files_and_search_respect_gitignore(workspace) -> None:
    listing, _ = call(workspace, "list_files")
    assert listing.splitlines() == [".gitignore", "README.md", "src/app.py", "src/util.py"]
    hits, _ = call(workspace, "search", pattern=r"greet\(")
    assert hits.splitlines() == ["src/app.py:1: def greet(name):", "src/app.py:6:     print(greet('x'))"]
    bad, is_error = call(workspace, "search", pattern="(")
    assert is_error and "invalid regular expression" in bad


def test_apply_patch_then_git_status_and_diff_show_the_change(workspace) -> None:
    patch = (
        "*** Begin Patch\n*** Update File: src/util.py\n@@\n-VALUE = 42\n+VALUE = 43\n"
        "*** Add File: NEW.md\n+new\n*** End Patch"
    )
    text, is_error = call(workspace, "apply_patch", patch=patch)
    assert not is_error and "M src/util.py" in text and "A NEW.md" in text
    status, _ = call(workspace, "git_status")
    assert "src/util.py" in status and "NEW.md" in status
    diff, _ = call(workspace, "git_diff")
    assert "+VALUE = 43" in diff and "+new" in diff


def test_exec_runs_in_the_workspace_and_reports_the_exit_code(workspace) -> None:
    text, is_error = call(workspace, "exec", command="cat src/util.py; exit 3")
    assert not is_error
    assert "VALUE = 42" in text and "exit code 3" in text


def test_the_server_runs_over_stdio_as_a_subprocess(workspace) -> None:
    import sys

    from mcp import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentfleet.mcp_servers.workspace", "--root", str(workspace.root)],
        env={"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else None,
    )

    async def go() -> str:
        async with Client(params) as client:
            result = await client.call_tool("read_file", {"path": "src/util.py"})
            return result.content[0].text  # type: ignore[union-attr]

    assert "VALUE = 42" in anyio.run(go)


def test_the_server_runs_over_streamable_http(workspace, tmp_path) -> None:
    async def go(url: str) -> str:
        async with Client(url) as client:
            result = await client.call_tool("read_file", {"path": "src/util.py"})
            return result.content[0].text  # type: ignore[union-attr]

    with http_server("workspace", "--root", str(workspace.root)) as url:
        assert "VALUE = 42" in anyio.run(go, url)


def test_a_link_out_of_the_tree_is_listed_as_a_link_and_breaks_nothing(workspace) -> None:
    (workspace.root / ".venv" / "bin").mkdir(parents=True)  # python3 -m venv, with .venv not in .gitignore
    os.symlink("/usr/bin/python3", workspace.root / ".venv" / "bin" / "python")
    os.symlink("/usr/bin/python3", workspace.root / "src" / "python")
    listing, is_error = call(workspace, "list_files")
    assert not is_error, listing
    assert "src/python -> /usr/bin/python3" in listing.splitlines()
    assert ".venv" not in listing, "environments are ignored in every checkout, as git ignores them"
    hits, is_error = call(workspace, "search", pattern="VALUE")
    assert not is_error and hits == "src/util.py:1: VALUE = 42"


def test_reading_and_searching_a_huge_one_line_file_keeps_memory_bounded(workspace) -> None:
    import tracemalloc

    with (workspace.root / "huge.min.js").open("wb") as fh:
        for _ in range(64):
            fh.write(b"x" * (1 << 20))  # 64 MiB on one line
        fh.write(b"\nsecond line VALUE\n")
    tracemalloc.start()
    try:
        text = workspace.read_file("huge.min.js")
        hits = workspace.search("VALUE", "huge.min.js")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak:,} bytes"
    first, second = text.splitlines()[:2]
    assert first.endswith(f"… [line cut: {(64 << 20)} bytes]") and len(first) < 5000
    assert second == "     2\tsecond line VALUE"
    assert hits == "huge.min.js:2: second line VALUE"


def test_a_fifo_in_the_workspace_blocks_no_tool(workspace) -> None:
    os.mkfifo(workspace.root / "src" / "pipe")
    hits, is_error = call(workspace, "search", pattern="VALUE")
    assert not is_error and hits == "src/util.py:1: VALUE = 42"
    text, is_error = call(workspace, "read_file", path="src/pipe")
    assert is_error and "not a file" in text


def test_the_agents_commands_share_one_sandbox_started_at_the_first_and_ended_by_close(workspace) -> None:
    """The budget of a step: no bwrap until the first command, one for all of them, one fork each
    (bash's pid in the sandbox's own pid namespace goes up by one a command)."""
    assert workspace.session.starts == 0 and workspace.session.pid is None
    pids = [int(workspace.exec("echo $$").split("\n")[0]) for _ in range(2)]
    pids += [int(call(workspace, "exec", command="echo $$")[0].split("\n")[0]) for _ in range(2)]  # arun
    assert workspace.git_status().startswith("## ")
    assert [b - a for a, b in itertools.pairwise(pids)] == [1, 1, 1]
    assert workspace.session.starts == 1 and workspace.session.forks == 5
    assert workspace.exec("echo kept > /tmp/f; cat /tmp/f").startswith("kept\n")
    workspace.close()
    assert workspace.session.pid is None
    assert workspace.exec("cat /tmp/f").startswith("cat: /tmp/f: No such file or directory")
    assert workspace.session.starts == 2
