"""Making and reusing a checkout: the history crosses once, a warm task runs few git commands and
hashes no file anew, and the speed costs nothing in safety: a change the agent hid in the stat
data is still undone, and no command in the sandbox can reach the mirror through the checkout."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from agentfleet.agent.workspace import PreparedWorkspace, prepare_workspace, write_changes
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.names import workspace_id
from agentfleet.runtime.git import run_git
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, grant_workspace
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.repos import commit_files, git

IS_ROOT = os.geteuid() == 0
NOT_ROOT = "not running as root: there is no chown to the sandbox user to test"
WARM_GIT_BUDGET = 4
"""git processes a warm prepare starts (each with its children) after a new commit upstream: ls-remote
(the remote's refs and HEAD; symbolic-ref only when HEAD moved), the mirror's fetch (only when the
refs moved), checkout and clean; the checkout's refs are written and the mirror's new object files
copied, not fetched, and the branch's commit is read from the mirror's refs. It was 6 (a rev-parse
and the checkout's fetch). With children: test_workspace_catch_up.py."""
FILES = {f"src/file{n}.txt": f"file {n}\n" * 40 for n in range(30)}


def prepare(settings: Settings, origin: Path) -> PreparedWorkspace:
    """A task's workspace as work.py leaves it for the agent: prepared, then handed to the sandbox user."""
    task = Task(request=TaskRequest(query="do it", repo_url=str(origin)))
    store = LocalArtifactStore(settings.artifacts_dir)
    workspace = prepare_workspace(task, settings, store, emit=lambda kind, data: None, run_setup=None)
    grant_workspace(workspace.root, settings.sandbox_uid, settings.sandbox_gid)
    return workspace


def finish(workspace: PreparedWorkspace) -> bytes:
    """What the task's finish does with the checkout: the patch (through the host's index)."""
    patch = io.BytesIO()
    write_changes(workspace.repos[0], patch, limit=1 << 20)
    return patch.getvalue()


def git_processes(trace: Path) -> list[tuple[str, str]]:
    """(name, sid) of each git process a GIT_TRACE2_EVENT file recorded, children included."""
    events = [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []
    return [(e["name"], e["sid"]) for e in events if e["event"] == "cmd_name"]


@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every git the host runs writes its trace2 events here (run_git passes the environment on)."""
    trace = tmp_path / "trace2.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    return trace


@pytest.fixture
def origin(repo_factory) -> Path:
    return repo_factory(FILES, name="project")


def test_the_first_task_transfers_the_history_once_and_copies_it_for_the_checkout(origin, settings, traced) -> None:
    prepare(settings, origin)
    names = [name for name, _ in git_processes(traced)]
    assert names.count("pack-objects") == 1 and names.count("index-pack") == 1, names  # one pack, made once
    assert names.count("clone") == 1 and "fetch" not in names, names  # the mirror's; the checkout's .git is a copy
    assert sorted(names) == ["checkout", "clone", "index-pack", "pack-objects", "rev-list", "upload-pack"], names
    mirror = settings.mirrors_dir / f"{workspace_id(str(origin))}.git"
    assert "url" not in (mirror / "config").read_text(), "the mirror keeps no URL (it may hold credentials)"


def test_a_warm_prepare_starts_few_git_processes_and_hashes_no_file_again(origin, settings, traced) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT)
    first = prepare(settings, origin)
    finish(first)  # the host's index now holds the stat data of every file as the agent left it
    tracked = {name: (first.root / name).stat() for name in FILES}
    new_head = commit_files(origin, {"src/file3.txt": "changed upstream\n"}, "upstream work")
    traced.unlink()
    second = prepare(settings, origin)
    top_level = [name for name, sid in git_processes(traced) if "/" not in sid]
    assert len(top_level) <= WARM_GIT_BUDGET, top_level
    checkout = second.repos[0]
    assert checkout.base_commit == new_head
    # the files git did not rewrite kept their stat data through the chown (a chown sets the
    # ctime, which git compares): nothing had to be hashed again, nor will be at the next command
    touched = [
        name
        for name, was in tracked.items()
        if ((now := (checkout.path / name).stat()).st_ino, now.st_ctime_ns) != (was.st_ino, was.st_ctime_ns)
    ]
    assert touched == ["src/file3.txt"], touched
    index = checkout.index
    assert index is not None
    stale = run_git(checkout.path, "diff-files", "--name-only", index=index).stdout.split()
    assert stale == ["src/file3.txt"], stale
    finish(second)
    assert run_git(checkout.path, "diff-files", "--name-only", index=index).stdout.split() == []


@pytest.mark.parametrize("finished", [True, False], ids=["after-its-finish", "after-a-crash"])
def test_a_change_the_agent_hid_in_the_stat_data_is_undone_by_the_next_task(origin, settings, finished) -> None:
    first = prepare(settings, origin)
    path = first.repos[0].path
    target = path / "src" / "file1.txt"
    before = target.stat()
    forged = "FORGED!\n" + FILES["src/file1.txt"][8:]  # the same size, written in the same second
    assert len(forged) == before.st_size
    target.write_text(forged)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # and its mtime put back
    (path / "src" / "file2.txt").unlink()
    (path / "stray.txt").write_text("left by the agent\n")
    if finished:
        assert b"FORGED!" in finish(first)
    second = prepare(settings, origin)
    checkout = second.repos[0]
    for name, text in FILES.items():
        assert (checkout.path / name).read_text() == text, name
    assert not (checkout.path / "stray.txt").exists()
    tree = git(checkout.path, "ls-tree", "-r", "--format=%(objectname) %(path)", checkout.base_commit)
    index = checkout.index
    assert index is not None
    staged = run_git(checkout.path, "ls-files", "--format=%(objectname) %(path)", index=index).stdout
    assert staged.strip() == tree.strip()
    assert finish(second) == b"", "the next task's patch holds nothing the earlier agent did"


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Each file under `folder`: its content hash and mode."""
    found = {}
    for base, _, files in os.walk(folder):
        for name in files:
            full = Path(base, name)
            found[str(full.relative_to(folder))] = (hashlib.sha256(full.read_bytes()).hexdigest(), full.stat().st_mode)
    return found


def test_a_sandboxed_command_cannot_change_the_mirror_through_the_checkout(origin, settings) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT)
    workspace = prepare(settings, origin)
    mirror = settings.mirrors_dir / f"{workspace_id(str(origin))}.git"
    before = fingerprint(mirror)
    mirror_inodes = {(p.stat().st_dev, p.stat().st_ino) for p in mirror.rglob("*") if p.is_file()}
    gitdir = workspace.root / ".git"
    shared = [p for p in gitdir.rglob("*") if p.is_file() and (p.stat().st_dev, p.stat().st_ino) in mirror_inodes]
    assert shared == [], "the checkout shares files with the mirror"
    attack = (
        'find .git/objects -type f | while read f; do chmod u+w "$f"; printf CORRUPT > "$f"; done; '
        "find .git/objects -type f | head -1 | xargs cat"
    )
    result = Sandbox(workspace.root, SandboxConfig.from_settings(settings, network=False)).run(attack)
    assert result.exit_code == 0 and result.output.startswith("CORRUPT"), result.output
    assert fingerprint(mirror) == before
    again = prepare(settings, origin)  # the damaged checkout is made again from the intact mirror
    assert (again.repos[0].path / "src" / "file1.txt").read_text() == FILES["src/file1.txt"]


def test_a_checkout_whose_git_folder_was_replaced_is_cloned_again_among_the_files_left(
    origin, settings, tmp_path
) -> None:
    path = prepare(settings, origin).root
    remove = tmp_path / "elsewhere"
    (path / ".git").rename(remove)
    (path / ".git").symlink_to(remove)
    (path / "src" / "file1.txt").write_text("edited\n")
    (path / "stray.txt").write_text("left behind\n")
    again = prepare(settings, origin).repos[0]
    assert (again.path / ".git").is_dir() and not (again.path / ".git").is_symlink()
    assert (again.path / "src" / "file1.txt").read_text() == FILES["src/file1.txt"]
    assert not (again.path / "stray.txt").exists() and not (again.path / ".agentfleet-clone").exists()
    refs = git(again.path, "for-each-ref", "--format=%(refname)").split()
    assert refs == ["refs/remotes/origin/main"], "the refs a fetch would leave: no local branch, no origin/HEAD"
    assert git(again.path, "status", "--porcelain") == ""
