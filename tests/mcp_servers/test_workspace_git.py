"""The workspace server's git tools act on agent-written `.git` folders: git runs in the sandbox.

Each plant below made host git run a program as root before git_status and git_diff moved into
the sandbox; now the program runs (if at all) as the sandbox user, where it sees neither the
host's files nor its processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from agentfleet.mcp_servers.workspace import Workspace, build_server
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, grant_workspace
from agentfleet.testing.repos import git, make_repo
from tests.hostile import PLANTS, SECRET_KEY, fired, marker_dir, plant

FILES = {"app.py": "print('hi')\n", "README.md": "# demo\n"}


OPENED: list[Workspace] = []


@pytest.fixture(autouse=True)
def _close_workspaces() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()  # its sandbox session


def workspace_at(root: Path) -> Workspace:
    grant_workspace(root, 65534, 65534)
    OPENED.append(Workspace(root, Sandbox(root, SandboxConfig())))
    return OPENED[-1]


def call(workspace: Workspace, tool: str) -> tuple[str, bool]:
    async def go() -> tuple[str, bool]:
        async with Client(build_server(workspace)) as client:
            result = await client.call_tool(tool, {})
            return "\n".join(getattr(b, "text", "") for b in result.content), bool(result.is_error)

    return anyio.run(go)


@pytest.mark.parametrize("name", PLANTS)
def test_a_planted_git_program_never_runs_on_the_host_nor_sees_the_agents_key(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_API_KEY", SECRET_KEY)  # the agent process holds it
    root = make_repo(tmp_path / "ws", FILES)
    markers = marker_dir(tmp_path)
    plant(root, name, markers)
    (root / "app.py").write_text("print('changed')\n")
    workspace = workspace_at(root)
    status, _ = call(workspace, "git_status")
    diff, _ = call(workspace, "git_diff")
    assert fired(markers) == [], f"{name}: a payload ran where it could write outside the workspace"
    assert SECRET_KEY not in status + diff


def test_the_git_tools_still_show_the_agents_changes(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "ws", FILES)
    (root / "app.py").write_text("print('changed')\n")
    (root / "new.txt").write_text("new\n")
    workspace = workspace_at(root)
    status, is_error = call(workspace, "git_status")
    assert not is_error and " M app.py" in status and "new.txt" in status
    diff, is_error = call(workspace, "git_diff")
    assert not is_error and "+print('changed')" in diff and "+new" in diff


def test_a_worktree_pointed_at_a_host_folder_shows_nothing_of_it(tmp_path: Path) -> None:
    host = tmp_path / "host-home"
    host.mkdir()
    (host / "host-secret-file.txt").write_text("secret\n")
    host.chmod(0o755)
    root = make_repo(tmp_path / "ws", FILES)
    with (root / ".git" / "config").open("a") as fh:
        fh.write(f"[core]\n\tworktree = {host}\n")
    status, _ = call(workspace_at(root), "git_status")
    assert "host-secret-file" not in status


def test_a_git_link_to_another_workspace_neither_shows_nor_changes_it(tmp_path: Path) -> None:
    other = make_repo(tmp_path / "other-ws", {"other-secret.py": "x = 1\n"})
    (other / "untracked-in-other.txt").write_text("u\n")
    index_before = (other / ".git" / "index").read_bytes()
    root = tmp_path / "ws"
    root.mkdir()
    (root / "file.txt").write_text("mine\n")
    os.symlink(other / ".git", root / ".git")
    workspace = workspace_at(root)
    status, _ = call(workspace, "git_status")
    diff, _ = call(workspace, "git_diff")
    assert "other-secret" not in status + diff and "untracked-in-other" not in status + diff
    assert (other / ".git" / "index").read_bytes() == index_before
    assert git(other, "status", "--porcelain") == "?? untracked-in-other.txt"
